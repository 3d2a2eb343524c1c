"""Wavelet vs baseline, side by side: the paper's claim measured on the user's own data.

Every variant trains with the same data order, seed, config and step budget. The speed-up
(docs/wavelet.md, "How the speed-up is measured"): with ``L*`` the baseline's lowest validation
loss and ``N*`` the step where it got there, it is ``N*`` divided by the first step at which the
variant's validation loss is at or below ``L*``, interpolating linearly between evaluations. A
baseline trained past its best (overfitting) therefore cannot flatter the variant. The step-time
ratio compares median ``tokens_per_s``; the speed-up in time is the same ratio as the speed-up, on
the runs' own clocks (``elapsed_s``).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wgpt.config import ModelConfig, TrainConfig
from wgpt.curves import best_point, overfit, steps_to_reach
from wgpt.errors import WgptError
from wgpt.io import write_atomic, write_json
from wgpt.plot import plot_curves
from wgpt.report import ReportOptions, SampleOptions, write_report
from wgpt.training import OVERFIT_PATIENCE, read_metrics, train

VARIANTS = {"baseline": "none", "haar": "haar", "learnable": "learnable", "larger": "none"}
BENCH_EVAL_TOKENS = 50_000  # validation tokens per run in the bench's report.html: bits per unit in about a second on a CPU


def speedup(baseline: list[dict[str, Any]], variant: list[dict[str, Any]]) -> float | None:
    """``N* / S``: the baseline's step at its best loss over the variant's (interpolated) step to reach it; None if never."""
    target, n = best_point(baseline)
    reached = steps_to_reach(variant, target)
    return None if not reached else n / reached


def speedup_in_time(baseline: list[dict[str, Any]], variant: list[dict[str, Any]]) -> float | None:
    """The same ratio on the runs' own clocks (``elapsed_s``, evaluations included): the baseline's
    seconds to its best loss over the variant's (interpolated) seconds to reach it; None if never."""
    if not all("elapsed_s" in r for r in baseline + variant):  # metrics written before runs kept a clock
        return None
    target, n = best_point(baseline)
    seconds = next(r["elapsed_s"] for r in baseline if r["step"] == n)
    reached = steps_to_reach(variant, target, x="elapsed_s")
    return None if not reached else seconds / reached


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
    data: Path,
    out: Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    variants: list[str],
    seeds: list[int],
    **train_options: Any,
) -> list[BenchRun]:
    """Every variant for every seed; ``train_options`` go to each ``train`` (show_progress, loggers, log_audio)."""
    runs = []
    for seed in seeds:
        for variant in variants:
            cfg = larger_config(model_cfg) if variant == "larger" else replace(model_cfg, wavelet=VARIANTS[variant])
            path = out / f"{variant}-seed{seed}"
            result = train(data, path, cfg, replace(train_cfg, seed=seed), **train_options)
            if result.interrupted:  # Ctrl-C stops the whole comparison, not just one run
                raise WgptError(f"interrupted during {variant} (seed {seed}); finished runs are under {out}")
            runs.append(BenchRun(variant, seed, path, result.params, read_metrics(path / "metrics.jsonl")))
    return runs


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(runs: list[BenchRun], variants: list[str], seeds: list[int]) -> dict[str, Any]:
    """Per-variant means and spreads over seeds, and each run's own figures, all from the runs' metrics rows."""
    by = {(r.variant, r.seed): r for r in runs}
    summary: dict[str, Any] = {
        "steps": runs[0].rows[-1]["step"],
        "target": "the baseline's best validation loss",
        "seeds": seeds,
        "variants": {},
    }
    for variant in variants:
        per_run, ups, time_ups = [], [], []
        for seed in seeds:
            base, run = by[("baseline", seed)].rows, by[(variant, seed)].rows
            best, best_step = best_point(run)
            base_best, _ = best_point(base)
            up = 1.0 if variant == "baseline" else speedup(base, run)  # the reference, by definition
            up_time = 1.0 if variant == "baseline" else speedup_in_time(base, run)
            ratio = statistics.median(r["tokens_per_s"] for r in base) / statistics.median(r["tokens_per_s"] for r in run)
            per_run.append({
                "seed": seed,
                "path": str(by[(variant, seed)].path),
                "best_val_loss": best,
                "best_step": best_step,
                "final_val_loss": run[-1]["val_loss"],
                "epochs": run[-1].get("epoch"),
                "overfit": overfit(run, OVERFIT_PATIENCE),
                "best_gap": base_best - best,  # > 0: the variant's best is lower than the baseline's
                "speedup": up,
                "speedup_time": up_time,
                "step_time_ratio": ratio,
            })  # fmt: skip
            if up is not None:
                ups.append(up)
            if up_time is not None:
                time_ups.append(up_time)
        best, best_sd = _mean_std([r["best_val_loss"] for r in per_run])
        final, final_sd = _mean_std([r["final_val_loss"] for r in per_run])
        up, up_sd = _mean_std(ups)
        summary["variants"][variant] = {
            "params": by[(variant, seeds[0])].params,
            "best_val_loss": best,
            "best_val_loss_std": best_sd,
            "final_val_loss": final,
            "final_val_loss_std": final_sd,
            "best_gap": statistics.fmean(r["best_gap"] for r in per_run),
            "speedup": up,
            "speedup_std": up_sd,
            "speedup_time": _mean_std(time_ups)[0],
            "speedup_reached": f"{len(ups)}/{len(seeds)}",
            "step_time_ratio": statistics.fmean(r["step_time_ratio"] for r in per_run),
            "overfit": f"{sum(r['overfit'] for r in per_run)}/{len(seeds)}",
            "runs": [r["path"] for r in per_run],
            "per_run": per_run,
        }
    return summary


def markdown_table(summary: dict[str, Any]) -> str:
    lines = [
        f"Steps: {summary['steps']}; seeds: {', '.join(map(str, summary['seeds']))}. "
        "Speed-up: steps the baseline took to its best validation loss, over the steps the variant took to reach it; "
        "in time: the same on the runs' own clocks (seconds, evaluations included). Step time: the baseline's median tokens/s over the variant's.",
        "",
        "| variant | params | best val loss | final val loss | best vs baseline's best | speed-up (reached) | speed-up in time | step time vs baseline | overfit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, v in summary["variants"].items():
        up = "-" if v["speedup"] is None else f"{v['speedup']:.2f}x ± {v['speedup_std']:.2f}"
        up_time = "-" if v["speedup_time"] is None else f"{v['speedup_time']:.2f}x"
        lines.append(
            f"| {name} | {v['params']:,} | {v['best_val_loss']:.4f} ± {v['best_val_loss_std']:.4f} "
            f"| {v['final_val_loss']:.4f} ± {v['final_val_loss_std']:.4f} | {0.0 - v['best_gap']:+.4f} "
            f"| {up} ({v['speedup_reached']}) | {up_time} | {v['step_time_ratio']:.3f} | {v['overfit']} |"
        )
    never = [name for name, v in summary["variants"].items() if v["speedup"] is None]
    if never:
        lines += ["", f"Never reached the baseline's best loss: {', '.join(never)} (see the best-loss gap)."]
    return "\n".join(lines) + "\n"


def bench(
    data: Path,
    out: Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    variants: list[str],
    seeds: list[int],
    **train_options: Any,
) -> dict[str, Any]:
    """Train every variant for every seed; write summary.json, summary.md, val_loss.png and report.html to ``out``.

    ``train_options`` are ``train``'s (show_progress, loggers, log_audio): each run logs into its own folder."""
    if "baseline" not in variants:
        variants = ["baseline", *variants]
    runs = run_variants(data, out, model_cfg, train_cfg, variants, seeds, **train_options)
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
    best = {f"{r.variant} (seed {r.seed})": best_point(r.rows)[::-1] for r in runs}  # (step, loss): a star on each curve
    title = f"validation loss, {data.name} (stars: best)"
    plot_curves(curves, out / "val_loss.png", title, ylabel="val loss (nats/token)", styles=styles, points=best)
    # The page without samples: curves, speed-ups and evaluation cost seconds; `wgpt report OUT` adds samples.
    report = ReportOptions(SampleOptions(count=0, device=train_cfg.device), eval_tokens=BENCH_EVAL_TOKENS)
    write_report([out], out / "report.html", report)
    return summary
