from __future__ import annotations

import json
from pathlib import Path

import pytest

from wgpt.benchmark import bench, speedup, steps_to_reach
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare


def rows(pairs):
    return [{"step": s, "val_loss": v, "tokens_per_s": 100.0} for s, v in pairs]


def test_speedup_interpolates_between_evaluations():
    base = rows([(10, 3.0), (20, 2.5), (30, 2.0), (40, 1.8)])
    wave = rows([(10, 2.6), (20, 2.0), (30, 1.6), (40, 1.5)])
    # target 1.8 is crossed between step 20 (2.0) and 30 (1.6): at 25
    assert steps_to_reach(wave, 1.8) == pytest.approx(25.0)
    assert speedup(base, wave) == pytest.approx(40 / 25)
    assert speedup(base, base) == pytest.approx(1.0)
    assert speedup(base, rows([(10, 3.0), (40, 2.0)])) is None  # never reaches the target


def test_first_evaluation_below_target_counts_from_step_zero():
    assert steps_to_reach(rows([(10, 1.0)]), 2.0) == 10.0


def test_bench_summary_agrees_with_its_metrics_files(corpus_dir: Path, tmp_path: Path, tiny_model, tiny_train):
    prepare(TextModality(), [corpus_dir], tmp_path / "data", workers=1, show_progress=False)
    summary = bench(tmp_path / "data", tmp_path / "bench", tiny_model, tiny_train, ["baseline", "haar"], [1, 2], show_progress=False)
    saved = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert (tmp_path / "bench" / "val_loss.png").stat().st_size > 1000
    assert "| haar |" in (tmp_path / "bench" / "summary.md").read_text()
    for variant in ("baseline", "haar"):
        finals = []
        for run in saved["variants"][variant]["runs"]:
            lines = (Path(run) / "metrics.jsonl").read_text().splitlines()
            finals.append(json.loads(lines[-1])["val_loss"])
        assert saved["variants"][variant]["final_val_loss"] == pytest.approx(sum(finals) / len(finals))

    def metrics(run: str) -> list[dict]:
        return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]

    ups = [
        speedup(metrics(b), metrics(h))
        for b, h in zip(saved["variants"]["baseline"]["runs"], saved["variants"]["haar"]["runs"], strict=False)
    ]
    reached = [u for u in ups if u is not None]
    assert saved["variants"]["haar"]["speedup_reached"] == f"{len(reached)}/2"
    if reached:
        assert saved["variants"]["haar"]["speedup"] == pytest.approx(sum(reached) / len(reached))
    assert saved["variants"]["baseline"]["speedup"] == pytest.approx(1.0)
