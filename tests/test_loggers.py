"""Loggers get the rows metrics.jsonl gets: read back from metrics.csv and TensorBoard's event files."""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from wgpt.config import ModelConfig, TrainConfig
from wgpt.errors import WgptError
from wgpt.loggers import check_loggers
from wgpt.modalities.audio import AudioModality
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.training import read_metrics, train

MODEL = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32)
TRAIN = TrainConfig(steps=4, batch_size=4, warmup=2, eval_interval=2, eval_batches=1, device="cpu")
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason='needs pip install "wgpt[tensorboard]"')


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def text_data(tmp_path_factory: pytest.TempPathFactory, milton: str) -> Path:
    root = tmp_path_factory.mktemp("loggers")
    (root / "corpus.txt").write_text(milton[:30_000], encoding="utf-8")
    prepare(TextModality(), [root / "corpus.txt"], root / "data", workers=1, show_progress=False)
    return root / "data"


@needs_tensorboard
def test_csv_and_tensorboard_hold_the_rows_of_metrics_jsonl_across_a_resume(text_data: Path, tmp_path: Path):
    run = tmp_path / "run"
    train(text_data, run, MODEL, TRAIN, show_progress=False, loggers=["csv", "tensorboard"])
    train(text_data, run, MODEL, replace(TRAIN, steps=6), resume=True, show_progress=False, loggers=["csv", "tensorboard"])
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == [2, 4, 6]
    with open(run / "metrics.csv", newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [{k: float(v) for k, v in r.items()} for r in table] == [{k: float(v) for k, v in r.items()} for r in rows]
    logged = scalars(run / "tensorboard")
    assert set(logged) == set(rows[0]) - {"step"}
    for tag, points in logged.items():  # TensorBoard keeps float32
        assert points == [(r["step"], pytest.approx(r[tag], rel=1e-6)) for r in rows], tag


@needs_tensorboard
def test_an_audio_run_logs_a_sample_of_the_asked_length_at_each_evaluation(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    prepare(AudioModality(), [Path(__file__).parent / "assets/audio"], tmp_path / "data", workers=1, show_progress=False)
    train(tmp_path / "data", tmp_path / "run", MODEL, TRAIN, show_progress=False, loggers=["tensorboard"], log_audio=0.05)
    events = EventAccumulator(str(tmp_path / "run/tensorboard"), size_guidance={"audio": 0})
    events.Reload()
    assert [(a.step, a.length_frames, a.sample_rate) for a in events.Audio("sample")] == [(2, 800, 16000), (4, 800, 16000)]


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason='needs pip install "wgpt[wandb]"')
def test_wandb_runs_offline_unless_told_otherwise(text_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    train(text_data, tmp_path / "run", MODEL, replace(TRAIN, steps=2), show_progress=False, loggers=["wandb"])
    (offline,) = (tmp_path / "run/wandb").glob("offline-run-*")
    assert list(offline.glob("*.wandb"))


def test_an_unknown_logger_or_a_missing_package_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(WgptError, match="unknown --logger 'mlflow': choose csv, tensorboard or wandb"):
        check_loggers(["csv", "mlflow"])
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WgptError, match=r'--logger tensorboard needs the tensorboard package: pip install "wgpt\[tensorboard\]"'):
        check_loggers(["tensorboard"])


def test_bench_gives_every_run_its_own_log(text_data: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from wgpt.cli import app

    small = ["--layers", "1", "--width", "32", "--heads", "2", "--ffn", "64", "--context", "32", "--batch-size", "4"]
    args = ["bench", "--data", str(text_data), "--out", str(tmp_path / "b"), "--steps", "4", "--eval-interval", "2", "--eval-batches", "1"]
    result = CliRunner().invoke(app, [*args, *small, "--seeds", "1", "--logger", "csv", "-q"])
    assert result.exit_code == 0, result.output
    for name in ("baseline-seed1", "haar-seed1"):
        with open(tmp_path / "b" / name / "metrics.csv", newline="", encoding="utf-8") as f:
            logged = [float(r["val_loss"]) for r in csv.DictReader(f)]
        assert logged == [r["val_loss"] for r in read_metrics(tmp_path / "b" / name / "metrics.jsonl")]
