"""The small-data study: does the wavelet structure overfit sooner, and does dropout keep its gain?

For every prepared data folder and every dropout, one `wgpt bench` of baseline, haar and
learnable over the seeds asked, with the same steps; then one JSON of all the summaries and one
markdown table of them. Benches run one thread each (`OMP_NUM_THREADS=1`), `--jobs` at a time,
each pinned to its own core: the losses do not depend on it (CPU training is deterministic),
the clocks do, so the time column of runs that shared a machine is only indicative.

    python benchmarks/small_data.py data/folk-small data/shakes-small --steps 375 --seeds 1,2,3 \\
        --dropouts 0,0.1 --out runs/small-data --jobs 2 --json docs/figures/small_data.json
    python benchmarks/small_data.py data/folk-small --collect --out runs/small-data   # table only

Each bench keeps its runs in OUT/DATA-dropoutP; `--collect` reads those summaries without training.
The JSON keeps every run's evaluations (step, epoch, train and val loss, clock), so a table can
be recomputed from it under another definition. `--variants` and `--larger` are passed to the
benches: docs/results.md's 300-step tables are this script with `--dropouts 0`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def bench_folder(out: Path, data: Path, dropout: str) -> Path:
    return out / f"{data.name}-dropout{dropout}"


def run_benches(data: list[Path], dropouts: list[str], args: argparse.Namespace) -> None:
    """Every (data, dropout) bench, ``args.jobs`` at a time, each on one thread pinned to a core."""
    queue = [(d, p) for d in data for p in dropouts]
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    free = sorted(cores)
    running: dict[int, subprocess.Popen] = {}  # core -> the bench pinned to it
    while queue or running:
        while queue and len(running) < args.jobs:
            folder, dropout = queue.pop(0)
            core = next(c for c in free if c not in running) if len(free) > len(running) else free[0]
            command = [
                *(["taskset", "-c", str(core)] if sys.platform == "linux" else []),
                *(["wgpt", "bench", "--variants", args.variants, "-q", *(["--larger"] if args.larger else [])]),
                *("--data", str(folder), "--out", str(bench_folder(args.out, folder, dropout))),
                *("--steps", str(args.steps), "--seeds", args.seeds, "--dropout", dropout),
            ]
            print(" ".join(command), flush=True)
            running[core] = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
        done = _wait_any(running)
        bench = running.pop(done)
        if bench.returncode:
            raise SystemExit(f"a bench failed (exit {bench.returncode}): {' '.join(bench.args)}")


def _wait_any(running: dict[int, subprocess.Popen]) -> int:
    """The core of the first bench to finish (so its core goes to the next one, not a busy one)."""
    while True:
        for core, bench in running.items():
            if bench.poll() is not None:
                return core
        time.sleep(1.0)


def collect(data: list[Path], dropouts: list[str], out: Path) -> list[dict]:
    sets = []
    for folder in data:
        meta = json.loads((folder / "meta.json").read_text())
        for dropout in dropouts:
            summary = json.loads((bench_folder(out, folder, dropout) / "summary.json").read_text())
            for variant in summary["variants"].values():
                for run in variant["per_run"]:
                    run["curve"] = _curve(Path(run["path"]) / "metrics.jsonl")
            sets.append({
                "data": folder.name,
                "modality": meta["modality"]["name"],
                "train_tokens": meta["splits"]["train"]["tokens"],
                "val_tokens": meta["splits"]["val"]["tokens"],
                "dropout": float(dropout),
                "summary": summary,
            })  # fmt: skip
    return sets


def _curve(metrics: Path) -> dict[str, list]:
    """The run's evaluations, column by column: enough to recompute any speed-up from the JSON alone."""
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("val_loss") is not None]
    keys = ("step", "epoch", "train_loss", "val_loss", "elapsed_s", "tokens_per_s")
    return {k: [r.get(k) for r in rows] for k in keys}


def _mean_sd(values: list[float], digits: int) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {sd:.{digits}f}"


def table(sets: list[dict]) -> str:
    """One row per data set, dropout and variant: means ± sd over seeds, from the runs' own rows."""
    lines = [
        "| data (train tokens) | dropout | variant | best val loss | best at step (epoch) | final val loss | final - best | overfit | speed-up in steps (reached) | speed-up in time |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in sets:
        steps = s["summary"]["steps"]
        for name, v in s["summary"]["variants"].items():
            runs = v["per_run"]
            best_steps = [r["best_step"] for r in runs]
            epochs = [r["best_step"] / steps * r["epochs"] for r in runs if r["epochs"] is not None]
            rise = [r["final_val_loss"] - r["best_val_loss"] for r in runs]
            ups = [r["speedup"] for r in runs if r["speedup"] is not None]
            times = [r["speedup_time"] for r in runs if r["speedup_time"] is not None]
            up = (
                "1 (reference)"
                if name == "baseline"
                else (f"{_mean_sd(ups, 2)}x ({len(ups)}/{len(runs)})" if ups else f"never (0/{len(runs)})")
            )
            up_time = "" if name == "baseline" else (f"{statistics.fmean(times):.2f}x" if times else "-")
            lines.append(
                f"| {s['data']} ({s['train_tokens']:,}) | {s['dropout']:g} | {name} | {_mean_sd([r['best_val_loss'] for r in runs], 4)} "
                f"| {statistics.fmean(best_steps):.0f} ({statistics.fmean(epochs):.1f}) | {_mean_sd([r['final_val_loss'] for r in runs], 4)} "
                f"| {statistics.fmean(rise):+.4f} | {v['overfit']} | {up} | {up_time} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="+", type=Path, help="Prepared data folders (`wgpt prepare`).")
    parser.add_argument("--out", type=Path, default=Path("runs/small-data"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--dropouts", default="0,0.1")
    parser.add_argument("--variants", default="baseline,haar,learnable")
    parser.add_argument("--larger", action="store_true", help="Add bench's larger baseline (twice the blocks, 1.5x the width).")
    parser.add_argument("--jobs", type=int, default=1, help="Benches at once, each pinned to its own core.")
    parser.add_argument("--collect", action="store_true", help="Only read the benches already in --out.")
    parser.add_argument("--json", type=Path, help="Write every summary here, with the command and the machine.")
    args = parser.parse_args()
    dropouts = [p.strip() for p in args.dropouts.split(",")]
    if not args.collect:
        run_benches(args.data, dropouts, args)
    sets = collect(args.data, dropouts, args.out)
    print(table(sets))
    if args.json:
        record = {
            "command": "python benchmarks/small_data.py " + " ".join(sys.argv[1:]),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads_per_bench": 1, "jobs": args.jobs},
            "sets": sets,
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
