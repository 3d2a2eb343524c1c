"""Run folders that can't be clobbered, checkpoints that can't be silently wrong, crafted files
that end in one line (docs/reliability.md, sections 7-9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import wgpt
from wgpt.checkpoint import load_checkpoint, save_checkpoint, state_digest
from wgpt.cli import app
from wgpt.config import ModelConfig, TrainConfig
from wgpt.errors import WgptError
from wgpt.lock import LOCK_NAME, holder, run_lock
from wgpt.training import train

runner = CliRunner()
MODEL = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32)
TRAIN = TrainConfig(steps=4, batch_size=4, lr=3e-3, warmup=2, eval_interval=2, eval_batches=2, device="cpu")
TINY = ["--layers", "1", "--width", "32", "--heads", "2", "--ffn", "64", "--context", "32", "--batch-size", "4"]
TINY += ["--eval-batches", "2", "--warmup", "2", "--device", "cpu", "-q"]


@pytest.fixture(scope="module")
def trained(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 4-step run; read-only for every test here (copy what you damage)."""
    run = tmp_path_factory.mktemp("run")
    train(shards, run, MODEL, TRAIN, show_progress=False)
    return run


def one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def cli(*args: str):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})


# -- 7. one process per run folder ----------------------------------------------------------------
def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_holder_and_touches_nothing(shards, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 2}\n')
    with run_lock(run):
        assert holder(run)["pid"] == os.getpid()
        for extra in ([], ["--overwrite"], ["--resume"]):
            result = cli("train", "--data", shards, "--out", run, "--steps", "4", *TINY, *extra)
            one_line_error(result, f"{run} is in use by another wgpt run (PID {os.getpid()}", "pass another --out")
        with pytest.raises(WgptError, match="in use"):  # the library refuses too, not only the CLI
            train(shards, run, MODEL, TRAIN, show_progress=False)
    assert (run / "metrics.jsonl").read_text() == '{"step": 2}\n'  # nothing cleared, nothing appended
    assert holder(run) is None and not (run / LOCK_NAME).exists()


def test_a_lock_left_by_a_dead_process_is_stale_and_taken_over(shards, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7, "host": "gone", "started": "yesterday"}))
    assert holder(run) is None  # a file, but no process holds a lock on it
    result = train(shards, run, MODEL, TRAIN, show_progress=False)
    assert result.step == TRAIN.steps and not (run / LOCK_NAME).exists()


def test_the_lock_is_released_when_training_fails(shards, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()  # a folder it did not make is kept

    def crash(self, step):
        raise RuntimeError("a bug")

    monkeypatch.setattr("wgpt.training.Runner.train_step", crash)
    with pytest.raises(RuntimeError):
        train(shards, run, MODEL, TRAIN, show_progress=False)
    assert holder(run) is None and not (run / LOCK_NAME).exists()
    with run_lock(run):  # free to take
        pass
    with pytest.raises(RuntimeError):
        train(shards, tmp_path / "new", MODEL, TRAIN, show_progress=False)
    assert not (tmp_path / "new").exists()  # failed before its first checkpoint: no half-made folder


def test_a_refused_run_leaves_no_folder_behind(shards, tmp_path, monkeypatch):
    run = tmp_path / "new-run"
    result = cli("train", "--data", shards, "--out", run, *TINY, "--context", "100000")
    one_line_error(result, "fewer than context + 1")
    assert not run.exists()

    def refuse(path, obj, durable=True):
        raise WgptError(f"cannot write {path}: refused")

    monkeypatch.setattr("wgpt.training.write_json", refuse)  # refused after the folder was made and locked
    one_line_error(cli("train", "--data", shards, "--out", run, *TINY), "refused")
    assert not run.exists()


def _wgpt(args: list[str], cwd: Path) -> subprocess.Popen:
    package_root = str(Path(wgpt.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_root, "COLUMNS": "1000"}
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "wgpt", *args], cwd=cwd, env=env, stdout=out, stderr=err)


def test_two_processes_on_one_folder_the_second_is_refused_and_the_first_finishes_intact(shards, tmp_path):
    run = tmp_path / "run"
    first = _wgpt(["train", "--data", str(shards), "--out", str(run), "--steps", "100000", "--eval-interval", "2", *TINY], tmp_path)
    try:
        deadline = time.monotonic() + 180
        while not (run / "last.pt").exists():
            assert first.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        config = (run / "config.json").read_bytes()
        second = subprocess.run(
            [sys.executable, "-m", "wgpt", "train", "--data", str(shards), "--out", str(run), "--overwrite", "--steps", "4", *TINY],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(wgpt.__file__).resolve().parents[1]), "COLUMNS": "1000"},
            timeout=180,
        )
        assert second.returncode == 2, second.stderr
        assert f"in use by another wgpt run (PID {first.pid}" in second.stderr and "Traceback" not in second.stderr
        assert (run / "config.json").read_bytes() == config
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 130
    step = load_checkpoint(run / "last.pt")["step"]
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] <= step  # one run's rows, in order
    result = cli("train", "--out", run, "--resume", "--steps", str(step + 2), "-q")
    assert result.exit_code == 0, result.output  # the lock went with the process


# -- 8. checkpoints carry a checksum ----------------------------------------------------------------
def _flip_byte_in_weights(path: Path) -> None:
    """Flip one byte inside the largest tensor's data record of a torch zip archive."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    header = info.header_offset
    name_len, extra_len = int.from_bytes(raw[header + 26 : header + 28], "little"), int.from_bytes(raw[header + 28 : header + 30], "little")
    start = header + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("name", ["best.pt", "last.pt"])
def test_a_flipped_byte_in_a_weight_is_refused_by_every_command(trained, tmp_path, name):
    ckpt = tmp_path / name
    ckpt.write_bytes((trained / name).read_bytes())
    _flip_byte_in_weights(ckpt)
    assert torch.load(ckpt, weights_only=True)["sha256"]  # still loads as a pickle: only the checksum can tell
    for args in (["eval", "--ckpt", ckpt, "--samples", "0"], ["sample", "--ckpt", ckpt, "--tokens", "3", "-q"]):
        one_line_error(cli(*args), f"{ckpt} is corrupt: its contents differ from the checksum")


def test_the_digest_is_the_same_after_a_round_trip_and_sees_every_part(trained):
    ckpt = torch.load(trained / "last.pt", weights_only=True)
    assert ckpt["sha256"] == state_digest(ckpt)
    for key, change in (("step", 5), ("best_val_loss", 1.0), ("data", "elsewhere")):
        assert state_digest({**ckpt, key: change}) != ckpt["sha256"], key
    optimizer = ckpt["optimizer"]
    moment = next(iter(optimizer["state"].values()))["exp_avg"]
    moment.view(-1)[0] += 1e-3
    assert state_digest(ckpt) != ckpt["sha256"]  # the optimiser's state is covered too


def test_an_export_with_a_flipped_weight_is_refused(trained, tmp_path):
    result = cli("export", trained, "--out", tmp_path / "exp")
    assert result.exit_code == 0, result.output
    weights = tmp_path / "exp" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-7] ^= 0x01  # inside the last tensor's data
    weights.write_bytes(bytes(raw))
    one_line_error(cli("sample", "--ckpt", tmp_path / "exp", "--tokens", "3", "-q"), "is corrupt: its weights differ from the checksum")


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/2: file write failed"),
        OSError(28, "No space left on device"),
    ],
)
def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(trained, tmp_path, monkeypatch, error):
    import shutil

    from wgpt.checkpoint import model_from_checkpoint

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = (run / "last.pt").read_bytes()
    ckpt = load_checkpoint(run / "last.pt")
    model = model_from_checkpoint(ckpt)

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10 << 30, 10 << 30, 0))
    with pytest.raises(
        WgptError, match=r"last\.pt \(the disk is full\); the previous last\.pt is unchanged: free some space, then .*--resume"
    ):
        save_checkpoint(run / "last.pt", model, ckpt["modality"], step=9)
    assert (run / "last.pt").read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temporary file left


# -- 9. damaged or crafted contents: one line ------------------------------------------------------
def _crafted(trained: Path, tmp_path: Path, change, name: str = "last.pt", checksum: bool = True) -> Path:
    """A copy of the run with ``change`` applied to its checkpoint, re-checksummed (a crafted file, not a damaged one)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run, dirs_exist_ok=True)
    ckpt = torch.load(run / name, weights_only=True)
    change(ckpt)
    if checksum:
        ckpt["sha256"] = state_digest(ckpt)
    torch.save(ckpt, run / name)
    return run


CRAFTED = {
    "no-modality": lambda c: c.pop("modality"),
    "unknown-modality": lambda c: c.update(modality={"name": "video"}),
    "nan-weight": lambda c: c["model"]["tok_emb.weight"].view(-1).__setitem__(0, float("nan")),
    "inf-weight": lambda c: c["model"]["lm_norm.weight" if False else sorted(c["model"])[-1]].view(-1).__setitem__(3, float("inf")),
    "weights-a-list": lambda c: c.update(model=[1, 2]),
    "config-a-string": lambda c: c.update(model_config="big"),
    "config-wrong-type": lambda c: c["model_config"].update(n_layer="ten"),
    "config-unknown-key": lambda c: c["model_config"].update(layers=3),
    "chars-empty-table": lambda c: c.update(modality={"name": "text", "tokenizer": "chars", "chars": ""}),
    "bpe-garbage": lambda c: c.update(modality={"name": "text", "tokenizer": "bpe", "bpe_json": "{not json"}),
    "midi-class-outside-allow-list": lambda c: c.update(
        modality={"name": "midi", "tokenizer": "REMI", "miditok": {"tokenization": "__loader__", "config": {}}}
    ),
}


@pytest.mark.parametrize("kind", list(CRAFTED))
def test_a_crafted_checkpoint_is_one_line_for_eval_and_sample(trained, tmp_path, kind):
    run = _crafted(trained, tmp_path, CRAFTED[kind], "best.pt")
    for args in (["eval", "--ckpt", run / "best.pt", "--samples", "0"], ["sample", "--ckpt", run / "best.pt", "--tokens", "3", "-q"]):
        line = one_line_error(cli(*args))
        assert any(word in line for word in ("damaged", "NaN or infinite", "not one wgpt uses", "must be", "unknown setting")), line


RESUME_DAMAGE = {
    "optimizer-missing": lambda c: c.pop("optimizer"),
    "optimizer-garbage": lambda c: c.update(optimizer={"state": 5, "param_groups": "x"}),
    "rng-garbage": lambda c: c.update(rng={"torch": torch.zeros(3)}),
    "step-a-string": lambda c: c.update(step="7"),
    "step-negative": lambda c: c.update(step=-3),
    "interval-short": lambda c: c.update(interval=[1.0]),
    "data-missing": lambda c: c.pop("data"),
    "train-config-garbage": lambda c: c.update(train_config={"lr": "fast"}),
    "train-config-out-of-range": lambda c: c["train_config"].update(beta2=5.0),
}


@pytest.mark.parametrize("kind", list(RESUME_DAMAGE))
def test_resume_from_a_damaged_last_pt_is_one_line(trained, tmp_path, kind):
    run = _crafted(trained, tmp_path, RESUME_DAMAGE[kind])
    line = one_line_error(cli("train", "--out", run, "--resume", "--steps", "6", "-q"))
    assert "last.pt" in line or "beta2" in line or "lr must be" in line, line
    assert not (run / LOCK_NAME).exists()


def test_meta_json_whose_tokenizer_disagrees_with_its_vocabulary_is_refused(shards, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shards, data)
    meta = json.loads((data / "meta.json").read_text())
    meta["modality"] = {"name": "text", "tokenizer": "chars", "chars": "ab"}  # 2 ids, but 256 stated
    (data / "meta.json").write_text(json.dumps(meta))
    one_line_error(cli("train", "--data", data, "--out", tmp_path / "r", *TINY), "tokenizer has 2 ids but it states a vocabulary of 256")
    meta["modality"] = {"name": "text", "tokenizer": "chars", "chars": ""}
    (data / "meta.json").write_text(json.dumps(meta))
    one_line_error(cli("train", "--data", data, "--out", tmp_path / "r", *TINY), "character table is damaged")
    assert not (tmp_path / "r").exists()


def test_shards_with_ids_beyond_the_stated_vocabulary_are_one_line(shards, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(shards, data)
    meta = json.loads((data / "meta.json").read_text())
    chars = "".join(chr(c) for c in range(32, 32 + 100))
    meta.update(vocab_size=100, modality={"name": "text", "tokenizer": "chars", "chars": chars})  # the shards hold bytes up to 255
    (data / "meta.json").write_text(json.dumps(meta))
    one_line_error(cli("train", "--data", data, "--out", tmp_path / "r", "--no-verify", *TINY), "outside the vocabulary of 100")


def test_a_checkpoint_whose_config_describes_more_than_it_holds_is_refused_before_allocating(trained, tmp_path):
    run = _crafted(trained, tmp_path, lambda c: c["model_config"].update(n_layer=1000, d_model=8192, n_head=8, d_ff=32768), "best.pt")
    one_line_error(cli("sample", "--ckpt", run / "best.pt", "--tokens", "3", "-q"), "its config describes", "but it holds")


# -- 10. sizes: refused before they are allocated ----------------------------------------------------
def test_under_a_memory_limit_a_model_too_big_is_one_line_not_a_crash(shards, tmp_path):
    """``ulimit -v 3 GiB``: 300M parameters need 4.8 GB for weights, gradients and AdamW alone."""
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY)); "
        "sys.argv = ['wgpt'] + sys.argv[1:]; from wgpt.cli import run; run()"
    )
    args = ["train", "--data", str(shards), "--out", str(tmp_path / "big"), "--layers", "24", "--width", "1024", "--ffn", "4096"]
    args += ["--heads", "8", "--context", "32", "--batch-size", "4", "--device", "cpu", "-q"]
    package_root = str(Path(wgpt.__file__).resolve().parents[1])
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": package_root, "COLUMNS": "1000", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs at least" in lines[0] and "more than the" in lines[0] and "available" in lines[0], done.stderr
    assert not (tmp_path / "big").exists()


def test_an_audio_file_with_an_absurd_sample_rate_is_skipped_and_counted(tmp_path):
    import wave

    import numpy as np

    src = tmp_path / "src"
    src.mkdir()
    for name, rate in (("one-hertz.wav", 1), ("fine.wav", 8000)):
        with wave.open(str(src / name), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes((np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes())  # 32 KB: 4.4 hours at 1 Hz
    result = cli("prepare", "audio", src, "--out", tmp_path / "data", "-q", "--val-fraction", "0.5")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "data" / "report.json").read_text())
    reasons = {Path(s["path"]).name: s["reason"] for s in report["skipped"]}
    assert "a sample rate of 1 Hz" in reasons["one-hertz.wav"]


def test_a_prompt_that_cannot_be_encoded_is_one_line(trained):
    one_line_error(
        cli("sample", "--ckpt", trained / "best.pt", "--prompt", "abc\udcff", "--tokens", "3", "-q"), "--prompt is not valid UTF-8"
    )


def test_eval_json_is_strict_json_and_never_nan():
    from wgpt.io import json_safe

    assert json.dumps(json_safe({"loss": float("nan"), "stats": [float("inf"), 1.5], "n": 3}), allow_nan=False) == (
        '{"loss": null, "stats": [null, 1.5], "n": 3}'
    )


def test_eval_json_parses_without_nan_constants(trained):
    result = cli("eval", "--ckpt", trained / "best.pt", "--json", "--samples", "0")
    assert result.exit_code == 0, result.output

    def refuse(name):
        raise AssertionError(f"bare {name} in eval --json")

    parsed = json.loads(result.output, parse_constant=refuse)
    assert parsed["loss"] > 0 and parsed["bits_per_byte"] > 0
