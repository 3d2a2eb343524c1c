from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from wgpt.batches import batch_offsets
from wgpt.checkpoint import load_checkpoint
from wgpt.config import ModelConfig, TrainConfig
from wgpt.errors import WgptError
from wgpt.modalities import modality_from_spec
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.shards import open_shards, open_training_data
from wgpt.training import Runner, lr_at, train


@pytest.fixture
def shards(corpus_dir: Path, tmp_path: Path) -> Path:
    prepare(TextModality(), [corpus_dir], tmp_path / "data", workers=1, show_progress=False)
    return tmp_path / "data"


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_checkpoints_metrics_and_plot(shards, tmp_path, tiny_model, tiny_train):
    result = train(shards, tmp_path / "run", tiny_model, tiny_train, show_progress=False)
    run = tmp_path / "run"
    metrics = rows(run)
    assert [r["step"] for r in metrics] == [4, 8, 12]
    for key in ("tokens_seen", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s"):
        assert all(r[key] is not None for r in metrics), key
    assert metrics[-1]["tokens_seen"] == 12 * 4 * 32
    assert metrics[-1]["val_loss"] < metrics[0]["val_loss"]  # it learns
    assert (run / "loss.png").stat().st_size > 1000
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["step"] == min(metrics, key=lambda r: r["val_loss"])["step"]
    last = load_checkpoint(run / "last.pt")
    assert last["step"] == 12 and last["modality"] == {"name": "text", "tokenizer": "bytes"}
    assert {"model", "optimizer", "rng", "model_config", "train_config"} <= set(last)
    assert result.best_val_loss == min(r["val_loss"] for r in metrics)


def interrupt_after(monkeypatch, stop_step: int) -> None:
    """Send this process SIGINT during step ``stop_step``, as Ctrl-C would."""
    original = Runner.train_step

    def step(self, i):
        if i + 1 == stop_step:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, i)

    monkeypatch.setattr(Runner, "train_step", step)


@pytest.mark.parametrize("stop_step", [6, 8])  # between evaluations, and on one
def test_interrupt_then_resume_reproduces_the_uninterrupted_run(shards, tmp_path, tiny_model, tiny_train, monkeypatch, stop_step):
    train(shards, tmp_path / "full", tiny_model, tiny_train, show_progress=False)
    with monkeypatch.context() as m:
        interrupt_after(m, stop_step)
        stopped = train(shards, tmp_path / "split", tiny_model, tiny_train, show_progress=False)
    assert stopped.interrupted and stopped.step == stop_step
    assert load_checkpoint(tmp_path / "split" / "last.pt")["step"] == stop_step
    train(shards, tmp_path / "split", tiny_model, tiny_train, resume=True, show_progress=False)
    full, split = rows(tmp_path / "full"), rows(tmp_path / "split")
    assert [r["step"] for r in split] == [4, 8, 12]
    for a, b in zip(full, split, strict=False):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6)


def test_baseline_and_wavelet_share_parameters_and_batches(shards, tmp_path, tiny_model, tiny_train):
    base = train(shards, tmp_path / "b", tiny_model, tiny_train, show_progress=False)
    haar = train(shards, tmp_path / "h", replace(tiny_model, wavelet="haar"), tiny_train, show_progress=False)
    assert base.params == haar.params
    assert rows(tmp_path / "b")[0]["val_loss"] != rows(tmp_path / "h")[0]["val_loss"]  # the structure is active


def test_gradient_accumulation_matches_the_full_batch(shards, tmp_path, tiny_model, tiny_train):
    train(shards, tmp_path / "full", tiny_model, tiny_train, show_progress=False)
    train(shards, tmp_path / "accum", tiny_model, replace(tiny_train, micro_batch=2), show_progress=False)
    for a, b in zip(rows(tmp_path / "full"), rows(tmp_path / "accum"), strict=False):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)


def test_schedule_warms_up_then_decays(tiny_train):
    cfg = replace(tiny_train, steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 99))


def test_nan_loss_stops_with_a_clear_message(shards, tmp_path, tiny_model, tiny_train):
    with pytest.raises(WgptError, match="diverged"):
        train(shards, tmp_path / "nan", tiny_model, replace(tiny_train, lr=1e30, grad_clip=0.0), show_progress=False)


def test_context_longer_than_the_data_is_a_clear_error(shards, tmp_path, tiny_model, tiny_train):
    with pytest.raises(WgptError, match="lower --context"):
        train(shards, tmp_path / "r", replace(tiny_model, context=100_000), tiny_train, show_progress=False)


def test_resume_without_a_run_is_a_clear_error(shards, tmp_path, tiny_model, tiny_train):
    with pytest.raises(WgptError, match="nothing to resume"):
        train(shards, tmp_path / "none", tiny_model, tiny_train, resume=True, show_progress=False)


# -- several prepared folders as one training set ------------------------------------------------
@pytest.fixture
def two_parts(milton: str, tmp_path: Path) -> tuple[Path, Path]:
    """Two halves of a corpus prepared apart as chars, the second with the first's tokenizer."""
    for name, text in (("a", milton[:60_000]), ("b", milton[60_000:120_000])):
        (tmp_path / f"src-{name}").mkdir()
        for i in range(3):
            (tmp_path / f"src-{name}" / f"{i}.txt").write_text(text[i * 20_000 : (i + 1) * 20_000], encoding="utf-8")
    prepare(TextModality("chars"), [tmp_path / "src-a"], tmp_path / "a", workers=1, show_progress=False)
    tokenizer = modality_from_spec(open_shards(tmp_path / "a").modality_spec)
    prepare(tokenizer, [tmp_path / "src-b"], tmp_path / "b", workers=1, show_progress=False, fit_tokenizer=False)
    return tmp_path / "a", tmp_path / "b"


def test_two_folders_train_as_one_set(two_parts, tmp_path, tiny_model, tiny_train):
    a, b = two_parts
    data = open_training_data([a, b])
    assert len(data.train) == len(open_shards(a).train) + len(open_shards(b).train)
    assert np.array_equal(np.asarray(data.train), np.concatenate([np.asarray(open_shards(p).train) for p in (a, b)]))
    train(two_parts, tmp_path / "run", tiny_model, tiny_train, show_progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["data"] == [str(a.resolve()), str(b.resolve())] and ckpt["data_weights"] is None
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"] == ckpt["data"]


def test_weighed_folders_are_sampled_by_weight_and_never_across(two_parts):
    a, b = two_parts
    data = open_training_data([a, b], weights=[3, 1])
    sizes, context = data.train_sizes, 32
    offsets = torch.cat([batch_offsets(data, context, 64, seed=0, step=s) for s in range(60)])
    from_a = offsets < sizes[0]
    assert 0.70 < from_a.float().mean().item() < 0.80  # 3:1
    assert bool((offsets[from_a] + context < sizes[0]).all()) and bool((offsets[~from_a] + context < sum(sizes)).all())
    assert torch.equal(offsets[:64], batch_offsets(data, context, 64, seed=0, step=0))  # a pure function of (seed, step)
    only_b = open_training_data([a, b], weights=[0, 1])
    assert bool((batch_offsets(only_b, context, 256, seed=1, step=3) >= sizes[0]).all())


def test_folders_with_another_tokenizer_or_bad_weights_are_refused(two_parts, corpus_dir, tmp_path):
    prepare(TextModality("bytes"), [corpus_dir], tmp_path / "bytes", workers=1, show_progress=False)
    with pytest.raises(WgptError, match=r"another modality or tokenizer.*--tokenizer-from"):
        open_training_data([two_parts[0], tmp_path / "bytes"])
    with pytest.raises(WgptError, match=r"2 weight\(s\) for 3"):
        open_training_data([*two_parts, tmp_path / "bytes"], weights=[1, 2])
    with pytest.raises(WgptError, match="at least one above 0"):
        open_training_data(list(two_parts), weights=[0, 0])
    with pytest.raises(WgptError, match="given twice"):
        open_training_data([two_parts[0], two_parts[0]])


# Validation and training losses of six steps on three parts of Paradise Lost (bytes), evaluated
# every two steps, per variant: they pin initialisation, batches, schedule and optimiser together.
GOLDEN_RUN = {
    "none": ([5.33329, 5.03568, 4.92584], [5.51942, 5.28068, 5.02933]),
    "haar": ([5.28326, 5.00193, 4.89274], [5.51005, 5.23659, 4.99939]),
    "learnable": ([5.28258, 5.00193, 4.89297], [5.50994, 5.23608, 4.99923]),
}


@pytest.mark.parametrize("kind", sorted(GOLDEN_RUN))
def test_a_fixed_seed_run_gives_the_golden_losses(kind: str, shards: Path, tmp_path: Path):
    model = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32, wavelet=kind)
    config = TrainConfig(steps=6, batch_size=4, lr=3e-3, warmup=2, eval_interval=2, eval_batches=2, device="cpu")
    train(shards, tmp_path / "run", model, config, show_progress=False)
    got = rows(tmp_path / "run")
    val, train_loss = GOLDEN_RUN[kind]
    assert [r["val_loss"] for r in got] == pytest.approx(val, abs=1e-4)
    assert [r["train_loss"] for r in got] == pytest.approx(train_loss, abs=1e-4)


def scripted_val_losses(monkeypatch, losses: list[float]) -> None:
    """Validation losses in the given order, one per evaluation, whatever the model learns."""
    it = iter(losses)
    monkeypatch.setattr("wgpt.training.estimate_loss", lambda *a, **k: next(it))


def test_early_stop_ends_the_run_keeps_the_best_and_resumes(shards, tmp_path, tiny_model, tiny_train, monkeypatch, capsys):
    scripted_val_losses(monkeypatch, [3.0, 2.5, 2.6, 2.7, 2.8, 2.9])
    cfg = replace(tiny_train, steps=40, early_stop=2)
    result = train(shards, tmp_path / "run", tiny_model, cfg, show_progress=False)
    assert (result.step, result.stopped_early, result.best_step, result.best_val_loss) == (16, True, 8, 2.5)
    assert [r["step"] for r in rows(tmp_path / "run")] == [4, 8, 12, 16]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == 8
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 16
    assert "--early-stop 2" in capsys.readouterr().err
    scripted_val_losses(monkeypatch, [2.4, 2.45, 2.5])  # resumed without early stopping: runs to --steps
    result = train(shards, tmp_path / "run", tiny_model, replace(cfg, steps=28, early_stop=0), resume=True, show_progress=False)
    assert (result.step, result.stopped_early, result.best_step) == (28, False, 20)


def test_metrics_carry_epochs_and_the_run_says_when_it_passes_one_and_overfits(
    shards, tmp_path, tiny_model, tiny_train, monkeypatch, capsys
):
    n_train = len(open_training_data(shards).train)
    per_step = tiny_train.batch_size * tiny_model.context
    steps = 4 * (n_train // per_step // 4 + 1) + 16  # past one epoch, then four more evaluations
    n_evals = steps // 4
    scripted_val_losses(monkeypatch, [3.0 - 0.01 * i for i in range(n_evals - 4)] + [5.0] * 4)
    monkeypatch.setattr(Runner, "train_step", lambda self, step: 3.0 - 0.001 * step)  # training loss keeps falling
    train(shards, tmp_path / "run", tiny_model, replace(tiny_train, steps=steps), show_progress=True)  # --quiet silences the notices
    metrics = rows(tmp_path / "run")
    assert [r["epoch"] for r in metrics] == pytest.approx([r["step"] * per_step / n_train for r in metrics])
    err = capsys.readouterr().err
    assert err.count("passed one epoch") == 1
    assert err.count("has not improved") == 1 and f"best.pt keeps step {steps - 16}" in err


def test_a_torn_last_metrics_line_does_not_block_resume(shards, tmp_path, tiny_model, tiny_train):
    run = tmp_path / "run"
    train(shards, run, tiny_model, replace(tiny_train, steps=8), show_progress=False)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 12, "val_lo')  # a crash mid-write
    result = train(shards, run, tiny_model, tiny_train, resume=True, show_progress=False)
    assert result.step == 12
    assert [r["step"] for r in rows(run)] == [4, 8, 12]


def test_a_run_folder_without_last_pt_is_not_replaced_silently(tmp_path):
    from wgpt.runs import plan_run

    out = tmp_path / "run"
    out.mkdir()
    (out / "best.pt").write_bytes(b"weights someone may want")
    with pytest.raises(WgptError, match=r"holds best\.pt from an earlier run"):
        plan_run("text", None, out, "tiny", None, {}, {})
    plan = plan_run("text", None, out, "tiny", None, {}, {}, overwrite=True)
    assert plan.out == out and (out / "best.pt").exists()  # planning writes nothing: train clears it, holding the lock


def test_keep_every_keeps_weights_to_sample_and_a_fresh_run_clears_them(shards, tmp_path, tiny_model, tiny_train):
    from wgpt.runs import clear_run, step_checkpoints

    run = tmp_path / "run"
    train(shards, run, tiny_model, replace(tiny_train, keep_every=4), show_progress=False)
    kept = step_checkpoints(run)
    assert list(kept) == [4, 8, 12]
    ckpt = load_checkpoint(kept[8])
    assert ckpt["step"] == 8 and "optimizer" not in ckpt and ckpt["modality"] == load_checkpoint(run / "last.pt")["modality"]
    clear_run(run)
    assert step_checkpoints(run) == {}


def test_init_from_another_modality_says_how_to_prepare_data_for_the_checkpoint(tmp_path: Path):
    """The hint names the checkpoint's modality: `prepare midi` for a MIDI model, not the data's `prepare text`."""
    from types import SimpleNamespace

    from wgpt.checkpoint import save_checkpoint
    from wgpt.modalities.midi import MidiModality
    from wgpt.modalities.text import TextModality
    from wgpt.model import GPT
    from wgpt.training import initial_weights

    midi = MidiModality()
    save_checkpoint(
        tmp_path / "m.pt", GPT(ModelConfig(vocab_size=midi.vocab_size, n_layer=1, n_head=2, d_model=32, d_ff=64, context=16)), midi.spec()
    )
    with pytest.raises(WgptError, match=r"trained on midi data, not text: .*\(wgpt prepare midi \.\.\. --tokenizer-from"):
        initial_weights(tmp_path / "m.pt", SimpleNamespace(modality_spec=TextModality().spec()))
