"""A fuzzing harness: mutated checkpoints, meta.json, config files, MIDI and WAV bytes through the
loaders and the CLI. Every case ends in success, a ``WgptError`` (one line, exit 2) or, for a
source file, a ``SkipFile`` reason: never another exception, never memory beyond a bound
(``RLIMIT_AS`` is lowered to what this process maps plus ``HEADROOM`` during each case, so an
absurd allocation fails the test instead of the machine). ``WGPT_FUZZ_EXAMPLES`` sets the cases
per test (60 by default). docs/reliability.md, section 11.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import struct
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from wgpt.checkpoint import load_checkpoint, modality_of, model_from_checkpoint, state_digest
from wgpt.cli import app
from wgpt.config import ModelConfig, TrainConfig, load_config_file
from wgpt.errors import WgptError
from wgpt.modalities.audio import AudioModality
from wgpt.modalities.base import SkipFile
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.runs import plan_run
from wgpt.shards import open_training_data
from wgpt.training import train

ASSETS = Path(__file__).parent / "assets"
HEADROOM = 1 << 30  # 1 GiB beyond what the process maps when a case starts
MODEL = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32)
TRAIN = TrainConfig(steps=2, batch_size=4, lr=3e-3, warmup=1, eval_interval=2, eval_batches=2, device="cpu")
EXAMPLES = int(os.environ.get("WGPT_FUZZ_EXAMPLES", "60"))  # per test; raise it for a longer hunt
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
runner = CliRunner()


@contextlib.contextmanager
def memory_bound() -> Iterator[None]:
    """Cap this process's address space for the ``with`` block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (mapped + HEADROOM, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def outcome(call: Any, *args: Any) -> str:
    """``ok``, or the kind of refusal; any other exception (MemoryError included) fails the test."""
    with memory_bound():
        try:
            call(*args)
        except WgptError as err:
            assert "\n" not in str(err), str(err)
            return "refused"
        except SkipFile:
            return "skipped"
    return "ok"


def cli_outcome(*args: Any) -> str:
    with memory_bound():
        result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "1000"})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), result.output
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.output
        return "refused"
    return "ok"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, milton: str) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz")
    src = root / "src"
    src.mkdir()
    for i in range(2):
        (src / f"part{i}.txt").write_text(milton[i * 10_000 : (i + 1) * 10_000], encoding="utf-8")
    prepare(TextModality(), [src], root / "data", workers=1, show_progress=False)
    train(root / "data", root / "run", MODEL, TRAIN, show_progress=False)
    return {"root": root, "data": root / "data", "run": root / "run"}


def mutations() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Byte edits: flip one byte, cut the file, or insert bytes, at relative positions."""
    edit = st.tuples(st.sampled_from(["flip", "cut", "insert", "zero"]), st.integers(0, 10_000), st.integers(1, 255))
    return st.lists(edit, min_size=1, max_size=4)


def mutate(raw: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(raw)
    for kind, where, value in edits:
        at = where * max(1, len(data)) // 10_001
        if kind == "flip" and data:
            data[at] ^= value
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = bytes([value]) * (value % 7 + 1)
        elif kind == "zero" and data:
            data[at : at + value] = bytes(len(data[at : at + value]))
    return bytes(data)


JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from([0, -1, 1 << 40, "", "bpe", "chars", "midi", "REMI", "__import__"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def replace_at(obj: Any, path: list[int], value: Any) -> Any:
    """``obj`` with the entry that ``path`` picks (indices into sorted keys, taken modulo) set to ``value``."""
    if not path or not isinstance(obj, (dict, list)) or not obj:
        return value
    keys = sorted(obj, key=str) if isinstance(obj, dict) else list(range(len(obj)))
    key = keys[path[0] % len(keys)]
    copy = dict(obj) if isinstance(obj, dict) else list(obj)
    copy[key] = replace_at(obj[key], path[1:], value)
    return copy


def load_everything(path: Path) -> None:
    ckpt = load_checkpoint(path)
    model_from_checkpoint(ckpt)
    modality_of(ckpt, path)


# -- checkpoints -----------------------------------------------------------------------------------
@FUZZ
@given(edits=mutations())
def test_mutated_checkpoint_bytes_load_or_are_refused(world, edits):
    raw = (world["run"] / "best.pt").read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.pt"
        path.write_bytes(mutate(raw, edits))
        result = outcome(load_everything, path)
        if result == "ok":  # a mutation that left the contents as they were (e.g. in zip padding)
            assert state_digest(torch.load(path, weights_only=True)) == torch.load(world["run"] / "best.pt", weights_only=True)["sha256"]


@FUZZ
@given(where=st.lists(st.integers(0, 50), min_size=1, max_size=4), value=JUNK)
def test_crafted_checkpoint_values_load_or_are_refused(world, where, value):
    """Any value anywhere in the checkpoint's dict, checksummed again (a crafted file, not a damaged one)."""
    ckpt = torch.load(world["run"] / "best.pt", weights_only=True)
    crafted = replace_at(ckpt, where, value)
    crafted["sha256"] = state_digest(crafted)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "best.pt"
        torch.save(crafted, path)
        outcome(load_everything, path)


@settings(
    max_examples=max(1, EXAMPLES // 3), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(where=st.lists(st.integers(0, 50), min_size=1, max_size=4), value=JUNK)
def test_resuming_a_crafted_last_pt_resumes_or_is_one_line(world, where, value):
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(world["run"], run)
        ckpt = torch.load(run / "last.pt", weights_only=True)
        crafted = replace_at(ckpt, where, value)
        crafted["sha256"] = state_digest(crafted)
        torch.save(crafted, run / "last.pt")
        cli_outcome("train", "--out", run, "--resume", "--steps", "3", "--eval-interval", "3", "-q")


# -- meta.json ----------------------------------------------------------------------------------------
@FUZZ
@given(where=st.lists(st.integers(0, 50), min_size=1, max_size=5), value=JUNK)
def test_crafted_meta_json_opens_or_is_refused(world, where, value):
    meta = json.loads((world["data"] / "meta.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(world["data"], data)
        (data / "meta.json").write_text(json.dumps(replace_at(meta, where, value)))
        outcome(open_training_data, data)


@FUZZ
@given(edits=mutations())
def test_mutated_meta_json_bytes_open_or_are_refused(world, edits):
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(world["data"], data)
        (data / "meta.json").write_bytes(mutate((world["data"] / "meta.json").read_bytes(), edits))
        outcome(open_training_data, data)


# -- config files ----------------------------------------------------------------------------------------
CONFIG_VALUES = st.dictionaries(
    st.sampled_from(["preset", "model", "train", "data", "data_weights", "extra"]),
    JUNK | st.dictionaries(st.sampled_from(["steps", "lr", "n_layer", "d_model", "context", "beta2", "seed", "dropout", "wavelet"]), JUNK),
    max_size=4,
)


@FUZZ
@given(config=CONFIG_VALUES, kind=st.sampled_from(["json", "yaml", "toml"]))
def test_crafted_config_files_plan_a_run_or_are_refused(world, config, kind):
    import yaml

    text = {"json": lambda c: json.dumps(c), "yaml": lambda c: yaml.safe_dump(c)}.get(kind, _toml)(config)
    if text is None:
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"run.{kind}"
        path.write_text(text, encoding="utf-8")
        outcome(plan_run, "text", [world["data"]], Path(tmp) / "run", None, path, {}, {})


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode), kind=st.sampled_from(["json", "yaml", "toml"]))
def test_random_config_bytes_are_read_or_refused(raw, kind):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"run.{kind}"
        path.write_bytes(raw)
        outcome(load_config_file, path)


def _toml(config: dict[str, Any]) -> str | None:
    """Tables of numbers and strings as TOML; None for what TOML cannot say (null, nesting)."""
    lines = []
    for section, body in config.items():
        if not isinstance(body, dict) or not all(isinstance(v, (int, float, str, bool)) for v in body.values()):
            return None
        lines.append(f"[{section}]")
        lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not np.isfinite(value):
        return "nan" if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return json.dumps(value)


# -- source files: MIDI and WAV bytes -----------------------------------------------------------------------
def _midi_modality():
    from wgpt.modalities.midi import MidiModality

    return MidiModality()


def _encode_source(modality: Any, path: Path) -> None:
    """What preparation does with one file, in this process: plan, then encode it whole."""
    from wgpt.modalities.base import Piece

    start, stop = modality.plan(path)
    modality.encode(Piece(path, start, stop))


@FUZZ
@given(edits=mutations(), source=st.sampled_from(sorted((ASSETS / "midi" / "good").glob("*.mid"))))
def test_mutated_midi_files_encode_or_are_skipped(edits, source):
    modality = _midi_modality()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "song.mid"
        path.write_bytes(mutate(source.read_bytes(), edits))
        outcome(_encode_source, modality, path)
        outcome(modality.encode_prompt, None, path)  # a prompt file: one line at worst


def _wav(rate: int, channels: int, width: int, frames: int, declared: int | None) -> bytes:
    """A WAV whose header may lie: any rate, channel count, sample width, and data size."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((np.sin(np.arange(frames) / 3) * 9000).astype("<i2").tobytes())
    raw = bytearray(buffer.getvalue())
    struct.pack_into("<HIIHH", raw, 22, channels, rate, (rate * channels * width) & 0xFFFFFFFF, channels * width, 8 * width)
    if declared is not None:
        struct.pack_into("<I", raw, 40, declared)
    return bytes(raw)


@FUZZ
@given(
    rate=st.sampled_from([0, 1, 7, 999, 8000, 16000, 44100, 192000, 768_001, 2**31 - 1]),
    channels=st.sampled_from([0, 1, 2, 7, 255]),
    width=st.sampled_from([1, 2, 3, 4]),
    frames=st.integers(0, 3000),
    declared=st.none() | st.integers(0, 2**32 - 1),
    edits=st.none() | mutations(),
)
def test_crafted_wav_headers_encode_or_are_skipped(rate, channels, width, frames, declared, edits):
    raw = _wav(rate, channels, width, frames, declared)
    modality = AudioModality()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "take.wav"
        path.write_bytes(raw if edits is None else mutate(raw, edits))
        outcome(_encode_source, modality, path)
        outcome(modality.encode_prompt, None, path)


def test_a_folder_of_fuzzed_sources_prepares_counting_each_skip(tmp_path):
    """Through ``wgpt prepare`` itself: broken files are skipped and counted, the good ones used."""
    src = tmp_path / "src"
    src.mkdir()
    good = sorted((ASSETS / "midi" / "good").glob("*.mid"))
    for i, edits in enumerate([[("cut", 20, 1)], [("flip", 5, 255)], [("zero", 0, 200)], [("insert", 50, 9)]]):
        (src / f"broken{i}.mid").write_bytes(mutate(good[0].read_bytes(), edits))
    for path in good:
        shutil.copy(path, src / path.name)
    assert cli_outcome("prepare", "midi", src, "--out", tmp_path / "data", "-q", "--workers", "1") == "ok"
    report = json.loads((tmp_path / "data" / "report.json").read_text())
    assert report["files_used"] + len(report["skipped"]) == len(good) + 4
    assert report["files_used"] >= len(good)
