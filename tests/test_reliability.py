"""Nothing lost, nothing executed: crafted checkpoints, hard kills, signals, interrupted preparation,
diverging runs, and property tests of shards and tokenizers (docs/reliability.md).

Real processes where the guarantee is about a process: ``python -m wgpt train`` killed with
SIGKILL or stopped with SIGTERM. Everything else runs in this process on tiny configs. Rows marked
``pending`` wait for a fix outside tests/ and are strict xfails.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import pickletools
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import wgpt
from wgpt.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from wgpt.cli import app
from wgpt.config import ModelConfig, TrainConfig
from wgpt.errors import WgptError
from wgpt.modalities import modality_from_spec
from wgpt.modalities.base import Modality, Piece
from wgpt.modalities.text import UNKNOWN_CHAR, TextModality
from wgpt.preparation import prepare
from wgpt.shards import META, open_shards
from wgpt.training import Runner, train

# the modules themselves: ``wgpt.training`` and ``wgpt.preparation`` are also the names of functions in ``wgpt``
train_module = importlib.import_module("wgpt.training")
prepare_module = importlib.import_module("wgpt.preparation")

runner = CliRunner()
TINY = ["--layers", "1", "--width", "32", "--heads", "2", "--ffn", "64", "--context", "32", "--batch-size", "4"]
TINY += ["--eval-batches", "2", "--warmup", "5", "--device", "cpu", "-q"]
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")


def pending(fix: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason=f"pending fix: {fix}", strict=True)


class HardKill(BaseException):
    """Stands in for SIGKILL inside this process: nothing catches it, no handler saves anything."""


# One block, checkpoints every 2 steps, 6 steps: every kill and NaN below has a checkpoint before and after it.
MODEL = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32)
TRAIN = TrainConfig(steps=6, batch_size=4, lr=3e-3, warmup=2, eval_interval=2, eval_batches=2, device="cpu")


@pytest.fixture(scope="module")
def uninterrupted(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The metrics of MODEL trained for TRAIN.steps without a break: what every resumed run must equal."""
    run = tmp_path_factory.mktemp("uninterrupted")
    train(shards, run, MODEL, TRAIN, show_progress=False)
    return rows(run)


def rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(got: list[dict[str, Any]], expected: list[dict[str, Any]], tolerance: float) -> None:
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for a, b in zip(got, expected, strict=True):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=tolerance), a["step"]


def wgpt_process(args: list[str], cwd: Path) -> subprocess.Popen:
    """``python -m wgpt ARGS`` on this very package, output to files (no pipe to fill up)."""
    package_root = str(Path(wgpt.__file__).resolve().parents[1])
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "1000"}  # messages unwrapped
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:  # the child keeps its own copies
        return subprocess.Popen([sys.executable, "-m", "wgpt", *args], cwd=cwd, env=env, stdout=out, stderr=err)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path.name} appeared: {(path.parent.parent / 'stderr.txt').read_text()}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.01)


# -- 1. checkpoints load only through a safe path -------------------------------------------------
def _evil_files(folder: Path, marker: Path) -> dict[str, Path]:
    """Checkpoints that run code when unpickled, in every container torch.load accepts."""
    command = f"touch {shlex.quote(str(marker))}"

    class System:
        def __reduce__(self):
            return (os.system, (command,))

    class Exec:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('pwned')",))

    files = {name: folder / f"{name}.pt" for name in ("torch-zip", "raw-pickle", "legacy-torch", "hand-made-zip", "nested")}
    torch.save({"format": "wgpt-checkpoint", "version": 1, "model": System()}, files["torch-zip"])
    files["raw-pickle"].write_bytes(pickle.dumps({"format": "wgpt-checkpoint", "payload": System()}, protocol=2))
    torch.save({"format": "wgpt-checkpoint", "x": System()}, files["legacy-torch"], _use_new_zipfile_serialization=False)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:  # laid out like torch's own archives
        z.writestr("last/data.pkl", pickle.dumps(Exec(), protocol=2))
        z.writestr("last/byteorder", "little")
        z.writestr("last/version", "3\n")
    files["hand-made-zip"].write_bytes(archive.getvalue())
    weights = {"w": torch.zeros(2), "inner": [1, {"deep": Exec()}]}
    torch.save({"format": "wgpt-checkpoint", "version": 1, "model_config": {}, "model": weights}, files["nested"])
    return files


@posix_only
def test_crafted_checkpoints_are_refused_by_every_command_and_nothing_runs(tmp_path: Path, shards: Path):
    marker = tmp_path / "PWNED"
    files = _evil_files(tmp_path, marker)
    assert not marker.exists()
    for name, evil in files.items():
        run = tmp_path / f"run-{name}"
        run.mkdir()
        (run / "last.pt").write_bytes(evil.read_bytes())
        for shown, args in (
            (evil, ["eval", "--ckpt", str(evil)]),
            (evil, ["sample", "--ckpt", str(evil), "--out", str(tmp_path / "s.txt")]),
            (run / "last.pt", ["train", "--data", str(shards), "--out", str(run), "--resume", "--steps", "8", "-q"]),
        ):
            result = runner.invoke(app, args)
            assert result.exit_code == 2 and isinstance(result.exception, SystemExit), (name, args, result.output)
            assert len(result.output.strip().splitlines()) == 1 and str(shown) in result.output, result.output
            assert re.search(r"refusing|not a wgpt checkpoint", result.output), result.output
            assert not marker.exists(), f"{name} ran code through `wgpt {args[0]}`"
    assert not (tmp_path / "s.txt").exists()
    # the payloads are live: an unsafe load would have run them
    torch.load(files["torch-zip"], weights_only=False)
    assert marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_data(shards: Path, tmp_path: Path):
    """Nothing in a checkpoint is code: its pickle names only torch's tensor rebuilders and OrderedDict,
    and everything but the tensors is JSON (the tokenizer included)."""
    train(shards, tmp_path / "run", MODEL, replace(TRAIN, steps=2), show_progress=False)
    path = tmp_path / "run" / "last.pt"
    with zipfile.ZipFile(path) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    names = {arg for op, arg, _ in pickletools.genops(data) if op.name in ("GLOBAL", "INST", "STACK_GLOBAL")}
    assert names and all(re.fullmatch(r"torch \w+Storage|torch\._utils _rebuild_tensor_v2|collections OrderedDict", n) for n in names), (
        names
    )

    def plain(value: Any) -> Any:  # tensors out, the rest must survive JSON unchanged
        if isinstance(value, torch.Tensor):
            return None
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        assert value is None or isinstance(value, (str, int, float, bool)), type(value)
        return value

    ckpt = load_checkpoint(path)
    stripped = plain({k: v for k, v in ckpt.items() if k not in ("optimizer", "model", "rng")})
    assert json.loads(json.dumps(stripped)) == stripped
    assert ckpt["modality"] == json.loads((shards / META).read_text())["modality"]


# -- 2. atomic writes and interrupted preparation -------------------------------------------------
def test_a_checkpoint_write_cut_short_keeps_the_previous_file(shards: Path, tmp_path: Path, monkeypatch):
    run = tmp_path / "run"
    train(shards, run, MODEL, replace(TRAIN, steps=2), show_progress=False)
    before = (run / "last.pt").read_bytes()
    ckpt = load_checkpoint(run / "last.pt")

    def cut_short(obj: Any, f: Any) -> None:
        Path(f).write_bytes(before[: len(before) // 3])
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", cut_short)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(run / "last.pt", model_from_checkpoint(ckpt), ckpt["modality"], step=99)
    assert (run / "last.pt").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "last.pt", "loss.png", "metrics.jsonl"]


def interrupt_tokenize(monkeypatch, at_call: int) -> None:
    """Ctrl-C while tokenizing piece number ``at_call`` (train pieces come first)."""
    original, calls = TextModality.encode, [0]

    def encode(self, piece, facts=None):
        calls[0] += 1
        if calls[0] == at_call:
            raise KeyboardInterrupt
        return original(self, piece, facts)

    monkeypatch.setattr(TextModality, "encode", encode)


def test_an_unwritable_sample_output_is_refused_before_generating(tmp_path: Path):
    """Generation can take minutes: where its file would not be writable, say so first, and leave nothing behind."""
    from wgpt.io import check_writable

    (tmp_path / "taken.txt").mkdir()
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(WgptError, match="a folder has that name"):
        check_writable(tmp_path / "taken.txt")
    with pytest.raises(WgptError, match="part of that path is a file"):
        check_writable(tmp_path / "a-file" / "s.txt")
    check_writable(tmp_path / "new" / "s.txt")  # a missing folder is made, as the write would
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == []  # the probe is gone, no output yet


def test_interrupted_prepare_leaves_nothing_train_accepts(corpus_dir: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "data"
    interrupt_tokenize(monkeypatch, at_call=2)  # inside the train split
    result = runner.invoke(app, ["prepare", "text", str(corpus_dir), "-o", str(out), "--workers", "1", "-q"])
    assert result.exit_code == 130 and "interrupted" in result.output
    assert list(out.iterdir()) == []  # no meta.json, no train.bin, no temporary file
    refused = runner.invoke(app, ["train", "--data", str(out), *TINY, "--steps", "2", "-o", str(tmp_path / "run")])
    assert refused.exit_code == 2 and "interrupted" in refused.output


def test_interrupted_re_prepare_over_complete_shards_is_refused(corpus_dir: Path, tmp_path: Path, monkeypatch):
    """meta.json goes first: old metadata never vouches for shards that may be about to change, and
    the new shards stay under temporary names until every split is complete, so an interruption
    leaves the old files as they were, and no meta.json to vouch for them."""
    out = tmp_path / "data"
    prepare(TextModality("bytes"), [corpus_dir], out, workers=1, show_progress=False)
    old = {p.name: p.read_bytes() for p in out.iterdir() if p.suffix == ".bin"}
    interrupt_tokenize(monkeypatch, at_call=3)  # the validation split, after the whole training split
    with pytest.raises(KeyboardInterrupt):
        prepare(TextModality("chars"), [corpus_dir], out, workers=1, show_progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {**old, "report.json": (out / "report.json").read_bytes()}
    with pytest.raises(WgptError, match="interrupted"):
        open_shards(out, verify=False)


def test_meta_json_is_written_after_the_shards_it_describes(corpus_dir: Path, tmp_path: Path, monkeypatch):
    seen: dict[str, int] = {}
    original = prepare_module.write_json

    def write_json(path: Path, obj: Any, **options: Any) -> None:
        if path.name == META:
            seen.update({name: (path.parent / name).stat().st_size for name in ("train-00000.bin", "val-00000.bin")})
            assert obj["splits"]["train"]["tokens"] == seen["train-00000.bin"] // 2  # bytes vocabulary: uint16 ids
        original(path, obj, **options)

    monkeypatch.setattr(prepare_module, "write_json", write_json)
    prepare(TextModality(), [corpus_dir], tmp_path / "data", workers=1, show_progress=False)
    assert seen["train-00000.bin"] > 0 and seen["val-00000.bin"] > 0


# -- 3. interruption and exact resume -------------------------------------------------------------
def _killed_between_checkpoints(shards: Path, tmp_path: Path, expected: list[dict[str, Any]], monkeypatch, kill: str) -> None:
    """Hard-kill a run (checkpoints at 2, 4, 6) as ``kill`` says, resume it: the same run as never killed."""
    original_step, original_save = Runner.train_step, train_module.save_checkpoint

    def step(self, i):
        if kill == "mid-interval" and i == 3:  # step 3 done, not saved: lost
            raise HardKill
        return original_step(self, i)

    def save(path, *args, **kwargs):
        at_4 = Path(path).name == "last.pt" and kwargs["step"] == 4
        if at_4 and kill == "before-last.pt":
            raise HardKill
        original_save(path, *args, **kwargs)
        if at_4 and kill == "after-last.pt":
            raise HardKill

    with monkeypatch.context() as m:
        m.setattr(Runner, "train_step", step)
        m.setattr(train_module, "save_checkpoint", save)
        with pytest.raises(HardKill):
            train(shards, tmp_path / "killed", MODEL, TRAIN, show_progress=False)
    saved = load_checkpoint(tmp_path / "killed" / "last.pt")["step"]
    assert saved == {"mid-interval": 2, "before-last.pt": 2, "after-last.pt": 4}[kill]
    result = train(shards, tmp_path / "killed", MODEL, TRAIN, resume=True, show_progress=False)
    assert result.step == TRAIN.steps and not result.interrupted
    assert_same_run(rows(tmp_path / "killed"), expected, tolerance=1e-6)


@pytest.mark.parametrize("kill", ["mid-interval", "before-last.pt"])
def test_a_hard_kill_loses_only_the_steps_since_the_last_checkpoint(shards, uninterrupted, tmp_path, monkeypatch, kill):
    _killed_between_checkpoints(shards, tmp_path, uninterrupted, monkeypatch, kill)


def test_a_kill_right_after_saving_last_pt_keeps_that_steps_metrics_row(shards, uninterrupted, tmp_path, monkeypatch):
    _killed_between_checkpoints(shards, tmp_path, uninterrupted, monkeypatch, "after-last.pt")


@pytest.mark.slow  # two interpreter starts and 120 steps: 20-80 s on 2 busy cores; the in-process kills above always run
@posix_only
def test_kill_9_after_the_first_checkpoint_then_resume_matches_an_uninterrupted_run(shards: Path, tmp_path: Path):
    """With real processes: SIGKILL once last.pt exists, --resume, the same end as never killed."""
    steps, args = 60, ["--data", str(shards), *TINY, "--eval-interval", "10"]
    reference = runner.invoke(app, ["train", *args, "--steps", str(steps), "-o", str(tmp_path / "full")])
    assert reference.exit_code == 0, reference.output
    work = tmp_path / "proc"
    work.mkdir()
    run = work / "run"
    proc = wgpt_process(["train", *args, "--steps", str(steps), "-o", str(run)], work)
    try:
        wait_for(run / "last.pt", proc)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        proc.kill()
    killed_at = load_checkpoint(run / "last.pt")["step"]
    assert 10 <= killed_at < steps
    resumed = wgpt_process(["train", "--out", str(run), "--resume", "-q"], work)  # model, steps and data from last.pt
    assert resumed.wait(timeout=600) == 0, (work / "stderr.txt").read_text()
    assert "Traceback" not in (work / "stderr.txt").read_text()
    assert load_checkpoint(run / "last.pt")["step"] == steps
    assert_same_run(rows(run), rows(tmp_path / "full"), tolerance=1e-3)


@posix_only
def test_sigterm_saves_last_pt_and_exits_cleanly(shards: Path, tmp_path: Path):
    """SIGTERM (what schedulers and `kill` send) between evaluations: last.pt at the step reached, exit 130."""
    work = tmp_path / "proc"
    work.mkdir()
    run = work / "run"
    args = ["train", "--data", str(shards), *TINY, "--steps", "100000", "--eval-interval", "100000", "-o", str(run)]
    proc = wgpt_process(args, work)
    try:
        wait_for(run / "metrics.jsonl", proc)  # created as the loop starts, just before the handlers go in
        time.sleep(2.0)  # generous: the handlers go in microseconds later, even on a loaded machine
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    stderr = (work / "stderr.txt").read_text()
    assert code == 130, stderr
    assert "Traceback" not in stderr
    stopped = re.search(r"stopped at step (\d+); saved .*last\.pt", stderr.replace("\n", " "))
    assert stopped, stderr
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt["step"] == int(stopped.group(1)) > 0
    assert (run / "loss.png").exists()
    more = runner.invoke(app, ["train", "--out", str(run), "--resume", "--steps", str(ckpt["step"] + 2), "-q"])
    assert more.exit_code == 0, more.output
    assert [r["step"] for r in rows(run)] == [ckpt["step"] + 2]


@posix_only
def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_checkpoint(shards: Path, tmp_path: Path, monkeypatch):
    original = Runner.train_step

    def step(self, i):
        if i + 1 == 3:  # between the checkpoints at 2 and 4
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, i)

    monkeypatch.setattr(Runner, "train_step", step)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(shards), *TINY, "--steps", "6", "--eval-interval", "2", "-o", str(run)])
    assert result.exit_code == 130 and isinstance(result.exception, SystemExit), result.output
    assert result.output.strip() == "interrupted"
    assert load_checkpoint(run / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


# -- 4. NaN and infinite losses -------------------------------------------------------------------
def nan_loss_at(monkeypatch, bad_step: int) -> None:
    original = Runner.train_step

    def step(self, i):
        loss = original(self, i)
        return float("nan") if i + 1 == bad_step else loss

    monkeypatch.setattr(Runner, "train_step", step)


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(shards, tmp_path, monkeypatch):
    nan_loss_at(monkeypatch, bad_step=4)  # step 3 ran after the last checkpoint
    with pytest.raises(WgptError, match="diverged"):
        train(shards, tmp_path / "run", MODEL, TRAIN, show_progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2
    assert load_checkpoint(tmp_path / "run" / "best.pt")["step"] == 2
    assert [r["step"] for r in rows(tmp_path / "run")] == [2]


def test_the_divergence_message_names_the_checkpoint_that_is_kept(shards, tmp_path, monkeypatch):
    nan_loss_at(monkeypatch, bad_step=4)  # step 3 ran after the last checkpoint
    with pytest.raises(WgptError, match=r"last\.pt keeps the last good state \(step 2\)"):
        train(shards, tmp_path / "run", MODEL, TRAIN, show_progress=False)


def test_divergence_before_the_first_checkpoint_says_nothing_was_kept(shards, tmp_path):
    diverging = replace(TRAIN, lr=1e30, grad_clip=0.0, eval_interval=100)
    with pytest.raises(WgptError, match="no checkpoint was written yet"):
        train(shards, tmp_path / "run", MODEL, diverging, show_progress=False)
    assert not (tmp_path / "run").exists()  # nothing was kept, so no half-made folder either


def test_a_nan_validation_loss_never_overwrites_last_pt(shards, tmp_path, monkeypatch):
    original, calls = train_module.estimate_loss, [0]

    def estimate(*args, **kwargs):
        calls[0] += 1
        return float("nan") if calls[0] == 2 else original(*args, **kwargs)

    monkeypatch.setattr(train_module, "estimate_loss", estimate)
    with pytest.raises(WgptError, match="diverged"):
        train(shards, tmp_path / "run", MODEL, TRAIN, show_progress=False)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 2


# -- 6. property tests: shards ---------------------------------------------------------------------
class IdsModality(Modality):
    """Documents stored as .npy arrays of ids: the shard pipeline with no tokenizer in the way.
    The last id is the separator, so the documents can be read back out of a split."""

    name: ClassVar[str] = "ids"
    extensions: ClassVar[tuple[str, ...]] = (".npy",)
    output_extensions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, vocab: int) -> None:
        self.vocab, self.separator = vocab, vocab - 1

    @property
    def vocab_size(self) -> int:
        return self.vocab

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "vocab": self.vocab}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> IdsModality:
        return cls(spec["vocab"])

    def encode(self, piece: Piece, facts: Any = None) -> tuple[np.ndarray, dict[str, int]]:
        payload = np.load(piece.path)
        return payload, {"token": int(payload.size)}

    def encode_prompt(self, text: str | None, path: Path | None) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> list[int]:
        return ids

    def write(self, ids: list[int], path: Path) -> None:
        raise NotImplementedError


def documents_in(split: np.ndarray, separator: int) -> list[tuple[int, ...]]:
    starts = np.flatnonzero(np.asarray(split) == separator).tolist()
    assert not split.size or starts[0] == 0  # every document starts with the separator
    return [tuple(np.asarray(split[a + 1 : b]).tolist()) for a, b in zip(starts, [*starts[1:], len(split)], strict=True)]


@st.composite
def corpora(draw) -> tuple[int, list[list[int]]]:
    vocab = draw(st.sampled_from([2, 3, 256, 65_535, 65_536, 65_537, 1 << 20]))
    ids = st.integers(0, vocab - 2) | st.just(vocab - 2)  # the largest id that is not the separator, often
    return vocab, draw(st.lists(st.lists(ids, max_size=40), min_size=2, max_size=6))


@settings(max_examples=40, deadline=None)
@given(corpora())
def test_prepared_shards_read_back_every_document_whole(corpus):
    vocab, docs = corpus
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for i, doc in enumerate(docs):
            np.save(src / f"doc{i:02d}.npy", np.asarray(doc, dtype=np.int64))
        prepare(IdsModality(vocab), [src], Path(tmp) / "out", workers=1, show_progress=False)
        shards = open_shards(Path(tmp) / "out")
        expected_dtype = np.dtype("<u2") if vocab <= 1 << 16 else np.dtype("<u4")
        assert shards.train.dtype == expected_dtype and shards.meta["dtype"] == expected_dtype.str
        train_docs, val_docs = documents_in(shards.train, vocab - 1), documents_in(shards.val, vocab - 1)
        assert len(val_docs) == 1  # 10% of at most 6 files: one, whole
        assert sorted(train_docs + val_docs) == sorted(tuple(d) for d in docs)
        assert shards.meta["splits"]["train"]["documents"] == len(train_docs)
        assert shards.meta["splits"]["train"]["tokens"] == len(shards.train)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, milton: str) -> Path:
    src = tmp_path_factory.mktemp("src")
    for i in range(2):
        (src / f"part{i}.txt").write_text(milton[i * 3000 : (i + 1) * 3000], encoding="utf-8")
    out = tmp_path_factory.mktemp("shards")
    prepare(TextModality("chars"), [src], out, workers=1, show_progress=False)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["train-00000.bin", "val-00000.bin"]),
    st.sampled_from(["flip", "cut", "extend"]),
    st.integers(0, 1 << 16),
    st.integers(1, 5),
)
def test_any_damage_to_a_shard_is_refused(pristine: Path, name: str, damage: str, position: int, count: int):
    file = pristine / name
    original = file.read_bytes()
    damaged = bytearray(original)
    if damage == "flip":
        damaged[position % len(damaged)] ^= 1 << (count % 8)
    elif damage == "cut":
        del damaged[-count:]
    else:
        damaged += bytes(count)
    try:
        file.write_bytes(bytes(damaged))
        with pytest.raises(WgptError, match="corrupt" if damage == "flip" else "does not match"):
            open_shards(pristine)
    finally:
        file.write_bytes(original)
    assert open_shards(pristine).vocab_size > 0


# -- 6. property tests: tokenizers ----------------------------------------------------------------
@pytest.fixture(scope="module")
def bpe(milton: str) -> TextModality:
    modality = TextModality("bpe", vocab_size=400)
    modality.fit([milton[:30_000]])
    return modality


def through_json(modality: TextModality) -> TextModality:
    """The tokenizer as a checkpoint or meta.json carries it: JSON, rebuilt with no code of its own."""
    return modality_from_spec(json.loads(json.dumps(modality.spec())))


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_bpe_round_trips_any_text_through_its_json_spec(bpe: TextModality, text: str):
    rebuilt = through_json(bpe)
    ids = bpe.tokenize(text)[0].tolist()
    assert rebuilt.tokenize(text)[0].tolist() == ids
    assert rebuilt.decode(ids) == text


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=1), st.text())
def test_chars_round_trip_seen_characters_and_mark_unseen_ones(corpus: str, text: str):
    fitted = TextModality("chars")
    fitted.fit([corpus])
    rebuilt = through_json(fitted)
    ids = rebuilt.tokenize(text)[0].tolist()
    assert ids == fitted.tokenize(text)[0].tolist()
    assert rebuilt.decode(ids) == "".join(c if c in corpus else UNKNOWN_CHAR for c in text)


@pytest.mark.parametrize("tokenizer", ["bytes", "chars", "bpe"])
def test_any_ids_decode_and_write_as_utf8(tokenizer: str, bpe: TextModality, milton: str, tmp_path: Path):
    """An untrained model emits any ids in any order: decoding and writing them never fails."""
    if tokenizer == "bpe":
        modality = bpe
    else:
        modality = TextModality(tokenizer)
        modality.fit([milton[:5000]])

    @settings(max_examples=100, deadline=None)
    @given(st.lists(st.integers(0, modality.vocab_size - 1), max_size=60))
    def check(ids: list[int]) -> None:
        modality.write(ids, tmp_path / "out.txt")
        assert (tmp_path / "out.txt").read_bytes().decode("utf-8") == modality.decode(ids)

    check()
