from __future__ import annotations

import json
from pathlib import Path

import pytest

from wgpt.benchmark import BenchRun, bench, markdown_table, overfit, speedup, steps_to_reach, summarise
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


def test_an_overfit_baseline_is_measured_at_its_best_not_its_end():
    """The baseline bottoms out at step 20 (1.8) and rises; the target is 1.8 at step 20, not its last 2.4."""
    base = rows([(10, 2.2), (20, 1.8), (30, 2.0), (40, 2.4)])
    wave = rows([(10, 2.0), (20, 1.9), (30, 2.1), (40, 2.5)])  # best 1.9: never reaches 1.8
    assert speedup(base, wave) is None
    early = rows([(10, 1.6), (20, 1.7), (30, 1.9), (40, 2.2)])  # below 1.8 at its first evaluation: step 10
    assert speedup(base, early) == pytest.approx(20 / 10)
    between = rows([(10, 2.0), (20, 1.6)])  # crosses 1.8 at step 15
    assert speedup(base, between) == pytest.approx(20 / 15)


def test_monotone_curves_give_the_last_step_target():
    base = rows([(10, 3.0), (20, 2.5), (30, 2.0), (40, 1.8)])
    assert speedup(base, rows([(10, 2.6), (20, 2.0), (30, 1.6), (40, 1.5)])) == pytest.approx(40 / 25)


def test_overfitting_needs_stalled_validation_and_falling_training_loss():
    def curve(vals, trains):
        return [{"step": 10 * (i + 1), "val_loss": v, "train_loss": t} for i, (v, t) in enumerate(zip(vals, trains, strict=True))]

    assert overfit(curve([2.0, 1.8, 1.9, 2.0, 2.1], [2.0, 1.7, 1.5, 1.3, 1.1]))
    assert not overfit(curve([2.0, 1.8, 1.9, 2.0, 1.7], [2.0, 1.7, 1.5, 1.3, 1.1]))  # improved at the end
    assert not overfit(curve([2.0, 1.8, 1.9, 2.0, 2.1], [2.0, 1.7, 1.8, 1.9, 2.0]))  # training loss rose too: not overfitting
    assert not overfit(curve([2.0, 1.8], [2.0, 1.7]))  # too short to say


def test_summary_reports_best_final_and_a_variant_that_never_reaches(tmp_path: Path):
    base = [
        dict(r, train_loss=1.0 - 0.1 * i, tokens_per_s=100.0, elapsed_s=1.0 * r["step"])
        for i, r in enumerate(rows([(10, 2.2), (20, 1.8), (30, 2.0), (40, 2.2), (50, 2.4)]))
    ]
    slow = [dict(r, tokens_per_s=50.0, elapsed_s=2.0 * r["step"]) for r in rows([(10, 2.0), (20, 1.9), (30, 2.1), (40, 2.5), (50, 2.6)])]
    fast = [dict(r, tokens_per_s=50.0, elapsed_s=2.5 * r["step"]) for r in rows([(10, 2.0), (20, 1.6), (30, 1.7), (40, 1.9), (50, 2.0)])]
    runs = [
        BenchRun("baseline", 1, tmp_path / "b", 10, base),
        BenchRun("haar", 1, tmp_path / "h", 10, slow),
        BenchRun("learnable", 1, tmp_path / "l", 11, fast),
    ]
    summary = summarise(runs, ["baseline", "haar", "learnable"], [1])
    b, h, learn = (summary["variants"][k] for k in ("baseline", "haar", "learnable"))
    assert (b["best_val_loss"], b["per_run"][0]["best_step"], b["final_val_loss"]) == (1.8, 20, 2.4)
    assert b["overfit"] == "1/1"
    assert h["speedup"] is None and h["speedup_reached"] == "0/1" and h["best_gap"] == pytest.approx(1.8 - 1.9)
    assert learn["speedup"] == pytest.approx(20 / 15)
    assert learn["step_time_ratio"] == pytest.approx(2.0)  # half the tokens/s: twice the step time
    assert learn["speedup_time"] == pytest.approx(20 / (15 * 2.5))  # 20 s to the baseline's best, 37.5 s on the variant's clock
    assert h["speedup_time"] is None and b["speedup_time"] == 1.0
    table = markdown_table(summary)
    assert "Never reached the baseline's best loss: haar" in table


def test_first_evaluation_below_target_counts_from_step_zero():
    assert steps_to_reach(rows([(10, 1.0)]), 2.0) == 10.0


def test_bench_summary_agrees_with_its_metrics_files(corpus_dir: Path, tmp_path: Path, tiny_model, tiny_train):
    prepare(TextModality(), [corpus_dir], tmp_path / "data", workers=1, show_progress=False)
    summary = bench(tmp_path / "data", tmp_path / "bench", tiny_model, tiny_train, ["baseline", "haar"], [1, 2], show_progress=False)
    saved = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert saved == json.loads(json.dumps(summary))
    assert (tmp_path / "bench" / "val_loss.png").stat().st_size > 1000
    assert "| haar |" in (tmp_path / "bench" / "summary.md").read_text()
    page = (tmp_path / "bench" / "report.html").read_text()
    assert page.count('<polyline class="series"') == 2 * 2 * 2 * 2  # 2 variants x 2 seeds, train and val, by step and by time
    assert "<audio" not in page and "bits per byte" in page
    for variant in ("baseline", "haar"):
        finals, bests = [], []
        for run in saved["variants"][variant]["runs"]:
            losses = [json.loads(line)["val_loss"] for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]
            finals.append(losses[-1])
            bests.append(min(losses))
        assert saved["variants"][variant]["final_val_loss"] == pytest.approx(sum(finals) / len(finals))
        assert saved["variants"][variant]["best_val_loss"] == pytest.approx(sum(bests) / len(bests))

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
    for b, h, row in zip(
        saved["variants"]["baseline"]["runs"], saved["variants"]["haar"]["runs"], saved["variants"]["haar"]["per_run"], strict=True
    ):  # the wall-clock speed-up is the runs' own clocks, not a product of other columns
        target, best_step = min((r["val_loss"], r["step"]) for r in metrics(b))
        seconds = next(r["elapsed_s"] for r in metrics(b) if r["step"] == best_step)
        reach = steps_to_reach(metrics(h), target, x="elapsed_s")
        assert row["speedup_time"] == (None if reach is None else pytest.approx(seconds / reach))
