"""Wavelet vs baseline, side by side: the paper's claim measured on the user's own data.

Every variant trains with the same data order, seed, config and step budget. The speed-up
(docs/wavelet.md, "How the speed-up is measured"): with ``L*`` the baseline's validation loss at
the last step N, it is N divided by the first step at which the variant's validation loss is at or
below ``L*``, interpolating linearly between evaluations. The step-time ratio compares median
``tokens_per_s``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wgpt.config import ModelConfig, TrainConfig
from wgpt.errors import WgptError
from wgpt.io import write_atomic, write_json
from wgpt.plot import plot_curves
from wgpt.runs import clear_run
from wgpt.training import read_metrics, train

VARIANTS = {"baseline": "none", "haar": "haar", "learnable": "learnable", "larger": "none"}


def steps_to_reach(rows: list[dict[str, Any]], target: float) -> float | None:
    """First (interpolated) step at which ``val_loss`` is at or below ``target``; None if never."""
    prev_step, prev_loss = 0, None
    for row in rows:
        step, loss = row["step"], row["val_loss"]
        if loss <= target:
            if prev_loss is None or prev_loss == loss:
                return float(step)
            return prev_step + (prev_loss - target) * (step - prev_step) / (prev_loss - loss)
        prev_step, prev_loss = step, loss
    return None


def speedup(baseline: list[dict[str, Any]], variant: list[dict[str, Any]]) -> float | None:
    """N / steps the variant needs to reach the baseline's final validation loss."""
    target, n = baseline[-1]["val_loss"], baseline[-1]["step"]
    reached = steps_to_reach(variant, target)
    return None if not reached else n / reached


def larger_config(cfg: ModelConfig) -> ModelConfig:
    """The comparison model for "as much as a larger model": twice the blocks, 1.5x the width."""
    width = (int(cfg.d_model * 1.5) // cfg.n_head) * cfg.n_head
    return replace(cfg, n_layer=cfg.n_layer * 2, d_model=width, d_ff=width * 4, wavelet="none")


@dataclass
class BenchRun:
    variant: str
    seed: int
    path: Path
    params: int
    rows: list[dict[str, Any]]


def run_variants(
    data: Path, out: Path, model_cfg: ModelConfig, train_cfg: TrainConfig, variants: list[str], seeds: list[int], show_progress: bool = True
) -> list[BenchRun]:
    runs = []
    for seed in seeds:
        for variant in variants:
            cfg = larger_config(model_cfg) if variant == "larger" else replace(model_cfg, wavelet=VARIANTS[variant])
            path = out / f"{variant}-seed{seed}"
            clear_run(path)
            result = train(data, path, cfg, replace(train_cfg, seed=seed), show_progress=show_progress)
            if result.interrupted:  # Ctrl-C stops the whole comparison, not just one run
                raise WgptError(f"interrupted during {variant} (seed {seed}); finished runs are under {out}")
            runs.append(BenchRun(variant, seed, path, result.params, read_metrics(path / "metrics.jsonl")))
    return runs


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[BenchRun], variants: list[str], seeds: list[int]) -> dict[str, Any]:
    """Per-variant means and spreads over seeds, each computed from the runs' metrics rows."""
    by = {(r.variant, r.seed): r for r in runs}
    summary: dict[str, Any] = {"steps": runs[0].rows[-1]["step"], "seeds": seeds, "variants": {}}
    for variant in variants:
        finals, gaps, ups, ratios = [], [], [], []
        for seed in seeds:
            base, run = by[("baseline", seed)].rows, by[(variant, seed)].rows
            finals.append(run[-1]["val_loss"])
            gaps.append(base[-1]["val_loss"] - run[-1]["val_loss"])
            up = 1.0 if variant == "baseline" else speedup(base, run)  # the reference, by definition
            if up is not None:
                ups.append(up)
            ratios.append(statistics.median(r["tokens_per_s"] for r in base) / statistics.median(r["tokens_per_s"] for r in run))
        final, final_sd = _mean_std(finals)
        up, up_sd = _mean_std(ups)
        summary["variants"][variant] = {
            "params": by[(variant, seeds[0])].params,
            "final_val_loss": final,
            "final_val_loss_std": final_sd,
            "loss_gap": statistics.fmean(gaps),
            "speedup": up,
            "speedup_std": up_sd,
            "speedup_reached": f"{len(ups)}/{len(seeds)}",
            "step_time_ratio": statistics.fmean(ratios),
            "runs": [str(by[(variant, s)].path) for s in seeds],
        }
    return summary


def markdown_table(summary: dict[str, Any]) -> str:
    lines = [
        f"Steps: {summary['steps']}; seeds: {', '.join(map(str, summary['seeds']))}.",
        "",
        "| variant | params | final val loss | gap to baseline | speed-up (reached) | step time vs baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, v in summary["variants"].items():
        up = "-" if v["speedup"] is None else f"{v['speedup']:.2f}x ± {v['speedup_std']:.2f}"
        lines.append(
            f"| {name} | {v['params']:,} | {v['final_val_loss']:.4f} ± {v['final_val_loss_std']:.4f} | {v['loss_gap']:+.4f} "
            f"| {up} ({v['speedup_reached']}) | {v['step_time_ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def bench(
    data: Path, out: Path, model_cfg: ModelConfig, train_cfg: TrainConfig, variants: list[str], seeds: list[int], show_progress: bool = True
) -> dict[str, Any]:
    """Train every variant for every seed; write summary.json, summary.md and val_loss.png to ``out``."""
    if "baseline" not in variants:
        variants = ["baseline", *variants]
    runs = run_variants(data, out, model_cfg, train_cfg, variants, seeds, show_progress)
    summary = summarise(runs, variants, seeds)
    write_json(out / "summary.json", summary)
    write_atomic(out / "summary.md", markdown_table(summary).encode("utf-8"))
    curves = {f"{r.variant} (seed {r.seed})": ([x["step"] for x in r.rows], [x["val_loss"] for x in r.rows]) for r in runs}
    # One colour per variant, one line style per seed: several seeds stay readable.
    dashes = ["-", "--", ":", "-."]
    styles = {
        f"{r.variant} (seed {r.seed})": {
            "color": f"C{variants.index(r.variant) % 10}",
            "linestyle": dashes[seeds.index(r.seed) % len(dashes)],
        }
        for r in runs
    }
    plot_curves(curves, out / "val_loss.png", f"validation loss, {data.name}", ylabel="val loss (nats/token)", styles=styles)
    return summary
