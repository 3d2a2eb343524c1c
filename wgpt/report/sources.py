"""What a report is built from: run folders (``wgpt train``) and bench folders (``wgpt bench``).

A run folder holds ``metrics.jsonl``, ``config.json`` and its checkpoints; a bench folder holds
``summary.json`` and one run folder per variant and seed (``VARIANT-seedN``), which are read
from beside the summary, wherever the bench was run from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgpt.curves import best_point, steps_to_reach
from wgpt.errors import WgptError
from wgpt.training import read_metrics


@dataclass
class Run:
    name: str
    path: Path
    rows: list[dict[str, Any]]
    config: dict[str, Any]  # config.json: model, train, data; {} when the run has none
    variant: str | None = None  # in a bench
    seed: int | None = None


@dataclass
class Reach:
    """Where a bench variant first reaches its baseline's best validation loss (``target``)."""

    run: Run
    target: float
    step: float | None  # interpolated; None: never
    seconds: float | None  # the same point in wall-clock seconds


@dataclass
class Bench:
    path: Path
    summary: dict[str, Any]
    runs: list[Run] = field(default_factory=list)

    def reaches(self) -> list[Reach]:
        """For every run but the baselines, where it reaches the baseline of its own seed's best loss
        (the target ``wgpt bench`` measures its speed-up at, see wgpt/benchmark.py)."""
        baselines = {r.seed: r for r in self.runs if r.variant == "baseline"}
        found = []
        for run in self.runs:
            base = baselines.get(run.seed)
            if run.variant == "baseline" or base is None:
                continue
            target, _ = best_point(base.rows)
            found.append(Reach(run, target, steps_to_reach(run.rows, target), _seconds_to_reach(run.rows, target)))
        return found


def _seconds_to_reach(rows: list[dict[str, Any]], target: float) -> float | None:
    return steps_to_reach(rows, target, x="elapsed_s") if all("elapsed_s" in r for r in rows) else None


def read_run(path: Path, name: str | None = None, variant: str | None = None, seed: int | None = None) -> Run:
    rows = read_metrics(path / "metrics.jsonl")
    if not rows:
        raise WgptError(f"{path} has no metrics rows yet (metrics.jsonl is missing or empty): train it, or pass another run")
    config_path = path / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    except ValueError as err:  # a hand-edited or torn config.json: the curves still stand on their own
        raise WgptError(f"{config_path} is not valid JSON ({err}): repair or delete it") from None
    if not isinstance(config, dict):
        raise WgptError(f"{config_path} is not a run's config (not a JSON object): repair or delete it")
    return Run(name or path.name, path, rows, config, variant, seed)


def read_bench(path: Path) -> Bench:
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        per_variant = [(name, r["seed"], Path(r["path"]).name) for name, v in summary["variants"].items() for r in v["per_run"]]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WgptError(f"{path}/summary.json is damaged ({type(err).__name__}: {err}); run `wgpt bench` again") from None
    runs = []
    for variant, seed, name in per_variant:
        folder = path / name
        if not folder.is_dir():
            raise WgptError(f"bench {path} lists the run {name}, which is not beside its summary.json")
        runs.append(read_run(folder, variant=variant, seed=seed))
    return Bench(path, summary, runs)


def read_sources(paths: list[Path]) -> tuple[list[Run], list[Bench]]:
    """Every run to show, benches' runs included, and the benches; a path that is neither is one line."""
    if not paths:
        raise WgptError("give at least one run or bench folder, e.g. wgpt report runs/text-haar")
    runs: list[Run] = []
    benches: list[Bench] = []
    for path in map(Path, paths):
        if not path.exists():
            raise WgptError(f"{path} does not exist: pass a run folder (`wgpt train --out`) or a bench folder (`wgpt bench --out`)")
        if (path / "summary.json").is_file():
            benches.append(read_bench(path))
            runs += benches[-1].runs
        elif (path / "metrics.jsonl").is_file():
            runs.append(read_run(path))
        else:
            raise WgptError(
                f"{path} is neither a run (no metrics.jsonl) nor a bench (no summary.json): pass a folder `wgpt train` or `wgpt bench` wrote"
            )
    _distinct_names(runs)
    return runs, benches


def _distinct_names(runs: list[Run]) -> None:
    """Runs of the same folder name (two benches' baseline-seed1337) are named by parent/name."""
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.path.parent.name}/{run.path.name}"
