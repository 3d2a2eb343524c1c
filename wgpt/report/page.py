"""One self-contained HTML page for runs and benches: curves, configuration, data, evaluation, samples.

The page has no script and loads nothing: drawings are inline SVG, spectrograms PNG data URIs and
sounds WAV data URIs (``wgpt.report.media``). Every piece of text that comes from a run (sample
text, paths, file names, skip reasons) goes through ``html.escape``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from wgpt import __version__
from wgpt.errors import WgptError
from wgpt.generation import check_sampling
from wgpt.io import check_writable, write_atomic
from wgpt.modalities.base import describe_units
from wgpt.report.media import data_uri, spectrogram_png, wav_bytes
from wgpt.report.samples import RunSamples, SampleOptions, View, checkpoints_to_sample, sample_run
from wgpt.report.sources import Bench, Run, read_sources
from wgpt.report.svg import PALETTE, Chart, Marker, Series, line_chart, piano_roll, waveform

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}
svg,img.spectrogram{width:100%;height:auto;display:block}img.spectrogram{image-rendering:auto;height:110px;object-fit:fill}
.charts,.cards{display:flex;flex-wrap:wrap;gap:14px}.charts>figure{flex:1 1 420px;margin:0;min-width:0}
.card{flex:1 1 300px;min-width:0;border:1px solid #ddd;border-radius:6px;padding:8px}.card h4{margin:0 0 6px}
.card.validation{background:#f7fbff}audio{width:100%}pre.text{white-space:pre-wrap;word-break:break-word;max-height:24em;overflow:auto;
background:#fafafa;padding:6px;margin:0;font-size:13px}
table{border-collapse:collapse;margin:8px 0;font-size:13px;display:block;overflow-x:auto}td,th{border:1px solid #ddd;padding:3px 7px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.differs td{background:#fff6e0}.legend span{margin-right:14px;white-space:nowrap}
.swatch{display:inline-block;width:14px;height:4px;vertical-align:middle;margin-right:4px}.note{color:#666}
"""


@dataclass
class ReportOptions:
    samples: SampleOptions = field(default_factory=SampleOptions)  # count 0: no samples
    eval_tokens: int = 100_000  # validation tokens evaluated per run; 0: no evaluation


def write_report(paths: list[Path], out: Path, opts: ReportOptions | None = None, say: Callable[[str], None] = lambda _line: None) -> Path:
    """Build the page for ``paths`` (run and bench folders) and write it to ``out`` atomically."""
    check_writable(out)  # before sampling, which can take minutes
    write_atomic(Path(out), build_report(paths, opts or ReportOptions(), say).encode("utf-8"))
    return Path(out)


def build_report(paths: list[Path], opts: ReportOptions, say: Callable[[str], None] = lambda _line: None) -> str:
    if opts.eval_tokens < 0:
        raise WgptError(f"--eval-tokens must be 0 (no evaluation) or more, got {opts.eval_tokens}")
    if opts.samples.count < 0:
        raise WgptError(f"--samples must be 0 (none) or more, got {opts.samples.count}")
    runs, benches = read_sources(paths)
    if opts.samples.count:  # before evaluating, which takes a while: a wrong --every or --temperature fails now
        check_sampling(opts.samples.temperature, opts.samples.top_k, None)
        for run in runs:
            checkpoints_to_sample(run.path, opts.samples.every)
    colors = {id(r): PALETTE[i % len(PALETTE)] for i, r in enumerate(runs)}
    body = [
        f"<h1>wgpt report</h1><p class=note>{len(runs)} run(s): {escape(', '.join(str(p) for p in paths))}; "
        f"wgpt {escape(__version__)}, {time.strftime('%Y-%m-%d %H:%M')}</p>",
        curves_section(runs, benches, colors),
        *(speedup_section(b) for b in benches),
        "<h2 id=config>Configuration</h2>" + config_table(runs),
        "<h2 id=data>Data</h2>" + "".join(data_summary(folder) for folder in data_folders(runs)),
    ]
    if opts.eval_tokens:
        body.append("<h2 id=eval>Evaluation</h2>" + evaluation_table(runs, evaluations(runs, opts, say)))
    if opts.samples.count:
        body.append("<h2 id=samples>Samples</h2>")
        body += [samples_section(run, sample_run(run.path, opts.samples, say)) for run in runs]
    return page("wgpt report", "".join(body))


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>{body}</body></html>\n"
    )


# -- curves --------------------------------------------------------------------------------
def curves_section(runs: list[Run], benches: list[Bench], colors: dict[int, str]) -> str:
    """Train (dashed) and validation (solid) loss against steps and against wall-clock seconds;
    for benches, the baseline's best loss as a dotted line and where each variant reaches it."""
    by_step, by_time = [], []
    for run in runs:
        color = colors[id(run)]
        for key, dashed in (("val_loss", False), ("train_loss", True)):
            kept = [r for r in run.rows if r.get(key) is not None]
            by_step.append(Series(f"{run.name} {key}", [r["step"] for r in kept], [r[key] for r in kept], color, dashed))
            if all("elapsed_s" in r for r in kept):
                by_time.append(Series(f"{run.name} {key}", [r["elapsed_s"] for r in kept], [r[key] for r in kept], color, dashed))
    step_chart = Chart(by_step, "step", "loss (nats/token)")
    time_chart = Chart(by_time, "wall-clock seconds (training and evaluation)", "loss (nats/token)")
    for bench in benches:
        ups = _speedups(bench)
        for reach in bench.reaches():
            color = colors[id(reach.run)]
            base = next(r for r in bench.runs if r.variant == "baseline" and r.seed == reach.run.seed)
            for chart in (step_chart, time_chart):
                chart.lines.append((reach.target, colors[id(base)]))
            up = ups.get((reach.run.variant, reach.run.seed))
            if reach.step is not None:
                step_chart.markers.append(Marker(reach.step, reach.target, color, "" if up is None else f"{up:.2f}x"))
            if reach.seconds is not None:
                time_chart.markers.append(Marker(reach.seconds, reach.target, color))
    figures = [f"<figure>{line_chart(step_chart)}<figcaption>against steps</figcaption></figure>"]
    if by_time:
        figures.append(f"<figure>{line_chart(time_chart)}<figcaption>against wall-clock time</figcaption></figure>")
    legend = "".join(f'<span><i class=swatch style="background:{colors[id(r)]}"></i>{escape(r.name)}</span>' for r in runs)
    marks = " Dotted: a baseline's best validation loss; dots: where a variant first reaches it." if benches else ""
    return (
        f"<h2 id=curves>Loss curves</h2><p class=legend>{legend}</p>"
        f"<p class=note>Solid: validation loss; dashed: training loss (mean since the previous evaluation).{marks}</p>"
        f"<div class=charts>{''.join(figures)}</div>"
    )


def _speedups(bench: Bench) -> dict[tuple[str | None, int | None], float | None]:
    return {(name, r["seed"]): r["speedup"] for name, v in bench.summary["variants"].items() for r in v["per_run"]}


def speedup_section(bench: Bench) -> str:
    """The bench's own figures (summary.json), with where each variant reaches its baseline's best."""
    reaches = {(r.run.variant, r.run.seed): r for r in bench.reaches()}
    rows = []
    for name, v in bench.summary["variants"].items():
        for r in v["per_run"]:
            reach = reaches.get((name, r["seed"]))
            at = "-" if reach is None or reach.step is None else f"step {reach.step:,.0f}" + _seconds(reach.seconds)
            rows.append([
                name, r["seed"], _num(r["best_val_loss"]), _num(r["final_val_loss"]), "reference" if name == "baseline" else at,
                _times(r["speedup"]), _times(r["speedup_time"]), _num(r["step_time_ratio"], 3),
            ])  # fmt: skip
    head = [
        "variant",
        "seed",
        "best val loss",
        "final val loss",
        "reaches the baseline's best",
        "speed-up in steps",
        "speed-up in time",
        "step time vs baseline",
    ]
    return (
        f"<h3>Bench {escape(str(bench.path))}</h3><p class=note>Speed-up: the steps the baseline took to its best validation loss, "
        "over the steps the variant took to reach it (interpolated between evaluations); in time, that over the ratio of step times "
        "(median tokens per second). Figures from summary.json.</p>" + table(head, rows)
    )


def _seconds(seconds: float | None) -> str:
    return "" if seconds is None else f", {seconds:,.1f} s"


def _times(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}x"


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:,.{digits}f}" if abs(value) >= 0.01 or value == 0 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(head: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    """An HTML table; cells are escaped, numbers right-aligned."""
    cells = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        tds = "".join(
            f"<td{' class=num' if isinstance(c, (int, float)) and not isinstance(c, bool) else ''}>{escape(_num(c))}</td>" for c in row
        )
        body.append(f"<tr{cls}>{tds}</tr>")
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>"


# -- configuration, data, evaluation ------------------------------------------------------------
def config_table(runs: list[Run]) -> str:
    """Every model and training setting, one column per run. With several runs, the settings in which
    they differ come first, and the full table folds away beneath them."""
    keys = list(dict.fromkeys(f"{part}.{k}" for r in runs for part in ("model", "train") for k in r.config.get(part, {})))
    if not keys:
        return "<p class=note>no config.json in these runs</p>"
    rows, differs = [], []
    for key in [*keys, "data"]:
        part, _, name = key.partition(".")
        values = [r.config.get(part, {}).get(name) if name else _data_text(r.config.get("data")) for r in runs]
        rows.append([key, *values])
        differs.append(len({json.dumps(v) for v in values}) > 1)
    head = ["setting", *(r.name for r in runs)]
    if len(runs) == 1:
        return table(head, rows)
    changed = [row for row, d in zip(rows, differs, strict=True) if d]
    shown = table(head, changed) if changed else "<p class=note>the runs share every setting</p>"
    full = table(head, rows, ["differs" if d else "" for d in differs])
    return f"{shown}<details><summary>all {len(rows)} settings</summary>{full}</details>"


def _data_text(data: Any) -> str:
    return ", ".join(data) if isinstance(data, list) else str(data or "-")


def data_folders(runs: list[Run]) -> list[Path]:
    folders = [Path(p) for r in runs for p in ([r.config["data"]] if isinstance(r.config.get("data"), str) else r.config.get("data") or [])]
    return list(dict.fromkeys(folders))


def data_summary(folder: Path) -> str:
    """A prepared folder's modality, tokens and units per split (meta.json), files used, chosen for
    validation and skipped with their reasons (report.json)."""
    from wgpt.shards import read_meta

    try:
        meta = read_meta(folder)
        report = json.loads((folder / "report.json").read_text(encoding="utf-8")) if (folder / "report.json").is_file() else {}
    except (WgptError, ValueError) as err:
        return f"<h3>{escape(str(folder))}</h3><p class=note>{escape(str(err))}</p>"
    spec = meta["modality"]
    tokenizer = ", ".join(f"{k} {v}" for k, v in spec.items() if k != "name" and isinstance(v, (str, int, float)))
    rows = [["modality", f"{spec.get('name')} ({tokenizer})" if tokenizer else spec.get("name")], ["vocabulary", meta["vocab_size"]]]
    for split in ("train", "val"):
        entry = meta["splits"][split]
        rows.append([f"{split} tokens", f"{entry['tokens']:,} ({describe_units(entry.get('units', {}))})"])
    skipped = report.get("skipped", [])
    rows += [
        ["files used", report.get("files_used", meta.get("files", {}).get("used", "-"))],
        ["files for validation", len(report.get("validation", []))],
    ]
    rows.append(["files skipped", len(skipped)])
    html = f"<h3>{escape(str(folder))}</h3>" + table(["", ""], rows)
    if skipped:
        listed = table(["skipped file", "why"], [[s.get("path"), s.get("reason")] for s in skipped[:200]])
        more = f"<p class=note>... and {len(skipped) - 200} more in report.json</p>" if len(skipped) > 200 else ""
        html += f"<details><summary>{len(skipped)} skipped file(s) and why</summary>{listed}{more}</details>"
    return html


def evaluations(runs: list[Run], opts: ReportOptions, say: Callable[[str], None]) -> list[dict[str, Any] | str]:
    """``wgpt eval`` of each run's best.pt (or last.pt), or why it could not be evaluated."""
    from wgpt.evaluation import evaluate

    results: list[dict[str, Any] | str] = []
    for run in runs:
        ckpt = run.path / "best.pt" if (run.path / "best.pt").is_file() else run.path / "last.pt"
        say(f"evaluating {ckpt} on up to {opts.eval_tokens:,} validation tokens")
        try:
            results.append(evaluate(ckpt, max_tokens=opts.eval_tokens, samples=0, device=opts.samples.device))
        except WgptError as err:  # moved data, no checkpoint: the rest of the page still helps
            results.append(str(err))
    return results


def evaluation_table(runs: list[Run], results: list[dict[str, Any] | str]) -> str:
    """Loss, bits per token and bits per natural unit (byte, char, sample, note), one column per run."""
    keys = list(dict.fromkeys(k for r in results if isinstance(r, dict) for k in r if k not in ("modality", "wavelet")))
    rows = [[k.replace("_", " "), *(r.get(k) if isinstance(r, dict) else "-" for r in results)] for k in keys]
    notes = "".join(
        f"<p class=note>{escape(r.name)}: {escape(res)}</p>" for r, res in zip(runs, results, strict=True) if isinstance(res, str)
    )
    caption = "<p class=note>Of each run's best.pt on its validation split: nats per token, and bits per token and per natural unit.</p>"
    return caption + (table(["", *(r.name for r in runs)], rows) if keys else "") + notes


# -- samples -------------------------------------------------------------------------------------
def samples_section(run: Run, samples: RunSamples) -> str:
    """Each sample beside the validation slice of the same length, then the statistics of both."""
    html = [f"<h3>{escape(run.name)}</h3><p class=note>{samples.tokens:,} new tokens per sample. {escape(samples.note)}</p>"]
    for i in range(len(samples.sets[0].views)):
        cards = [card("validation", samples.validation[i], "validation")] if samples.validation else []
        cards += [card(s.label, s.views[i]) for s in samples.sets]
        html.append(f"<div class=cards>{''.join(cards)}</div>")
    stats = statistics_table(samples)
    return "".join(html) + stats


def card(title: str, view: View, cls: str = "") -> str:
    parts = [f'<div class="card {cls}"><h4>{escape(title)}</h4>']
    if view.text is not None:
        parts.append(f"<pre class=text>{escape(view.text)}</pre>")
    if view.notes is not None:
        parts.append(piano_roll(view.notes))
    if view.audio is not None and not view.audio[0].size:
        parts.append("<p class=note>no sound (nothing in it renders to audio)</p>")
    elif view.audio is not None:
        pcm, rate = view.audio
        parts.append(f'<audio controls preload="auto" src="{data_uri("audio/wav", wav_bytes(pcm, rate))}"></audio>')
        if view.notes is None:  # a rendering of notes needs no picture of its sound: the roll shows it
            parts.append(waveform(pcm))
            alt = f"spectrogram, 0 to {rate // 2:,} Hz bottom to top"
            parts.append(f'<img class=spectrogram alt="{alt}" src="{data_uri("image/png", spectrogram_png(pcm, rate))}">')
        parts.append(f"<p class=note>{pcm.size / rate:.2f} s at {rate:,} Hz</p>")
    parts.append("</div>")
    return "".join(parts)


def statistics_table(samples: RunSamples) -> str:
    """The modality's statistics (``Modality.statistics``): validation's beside each checkpoint's;
    distributions as their total-variation distance from validation's."""
    keys = list(dict.fromkeys(k for s in samples.sets for k in s.statistics))
    if not keys:
        return ""
    rows = []
    for key in keys:
        first = next(s.statistics[key] for s in samples.sets if key in s.statistics)
        validation = first["validation"] if isinstance(first, dict) else "-"
        values = [(v["generated"] if isinstance(v, dict) else v) for v in (s.statistics.get(key) for s in samples.sets)]
        name = key.replace("_distance", " (distance from validation)").replace("_", " ")
        rows.append([name, validation, *values])
    return table(["statistic", "validation", *(s.label for s in samples.sets)], rows)
