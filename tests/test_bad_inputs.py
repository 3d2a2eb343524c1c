"""Bad input to every command and modality: one clear line, a non-zero exit, no traceback.

Each row drives the real app through typer's CliRunner with one thing wrong and asserts on what
a user sees: exit code != 0, a message that names the problem (the substring in the row), and no
exception escaping the command (CliRunner catches escaped exceptions instead of printing their
traceback, so ``result.exception`` is checked rather than the text "Traceback"). Rows marked
``pending`` wait for a fix outside tests/ (listed in docs/reliability.md); they are strict xfails,
so they turn red, as a reminder to drop the mark, once the fix lands.

One module-scoped world holds prepared data of each modality, a 3-step text run, and untrained
audio and MIDI checkpoints (valid files of their modality, which is all that refusing needs).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from wgpt.checkpoint import save_checkpoint
from wgpt.cli import app
from wgpt.config import ModelConfig, TrainConfig
from wgpt.modalities.audio import AudioModality
from wgpt.modalities.midi import MidiModality
from wgpt.modalities.text import TextModality
from wgpt.model import GPT
from wgpt.preparation import prepare
from wgpt.shards import open_shards

runner = CliRunner()
ASSETS = Path(__file__).parent / "assets"
TINY = ["--layers", "1", "--width", "32", "--heads", "2", "--ffn", "64", "--context", "32", "--batch-size", "4", "--steps", "3"]
TINY += ["--eval-interval", "3", "--eval-batches", "1", "--device", "cpu", "-q"]


linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc, a folder nobody can create files in")


def pending(fix: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(reason=f"pending fix: {fix}", strict=True)


def cli(*args: str):
    return runner.invoke(app, list(args))


def assert_clear_error(result, message: str, lines: int | None = 1) -> None:
    """Non-zero exit through typer (no escaped exception), ``message`` shown, ``lines`` lines of output."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert message in result.output, result.output
    if lines is not None:
        assert len([line for line in result.output.splitlines() if line.strip()]) == lines, result.output


# -- the world every row runs against -------------------------------------------------------------
def _bad_files(bad: Path, text_ckpt: Path) -> None:
    """Broken inputs of every kind, made from scratch so every row knows exactly what it holds."""
    bad.mkdir()
    (bad / "latin1.txt").write_bytes("café au lait, s'il vous plaît\n".encode("latin-1") * 20)
    (bad / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (bad / "empty.txt").write_bytes(b"")
    sine = (0.5 * np.sin(np.arange(16_000) * 2 * math.pi * 440 / 16_000)).astype(np.float32)
    sf.write(bad / "ok.wav", sine, 16_000, subtype="PCM_16")
    wav = (bad / "ok.wav").read_bytes()
    (bad / "empty.wav").write_bytes(b"")
    (bad / "cut.wav").write_bytes(wav[:30])  # cut inside the header
    (bad / "header.wav").write_bytes(wav[:44])  # a header and no samples
    (bad / "notes.wav").write_bytes(b"these are my notes, saved as .wav by mistake\n" * 4)
    (bad / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    flac = (ASSETS / "audio" / "speech.flac").read_bytes()
    (bad / "cut.flac").write_bytes(flac[:200])
    (bad / "empty.mid").write_bytes(b"")
    midi = (ASSETS / "midi" / "good" / "multitrack.mid").read_bytes()
    (bad / "cut.mid").write_bytes(midi[:40])
    (bad / "letter.mid").write_bytes(b"Dear Sir, this is not a MIDI file.\n" * 3)
    (bad / "d.txt").mkdir()  # a folder named like an output file
    (bad / "a-file").write_text("a file where a folder is expected\n")
    configs = {
        "broken.json": '{"train": {"steps": 3,}}',
        "broken.toml": "[train\nsteps = 3\n",
        "broken.yaml": "train: {steps: 3\n",
        "code.yaml": '!!python/object/apply:os.system ["echo crafted"]\n',  # safe_load builds no objects
        "deep.json": "[" * 100_000 + "]" * 100_000,
        "unknown-key.json": '{"train": {"stepz": 3}}',
        "unknown-section.json": '{"trian": {"steps": 3}}',
        "steps-text.json": '{"train": {"steps": "ten"}}',
        "steps-text.toml": '[train]\nsteps = "ten"\n',
        "steps-bool.json": '{"train": {"steps": true}}',
        "lr-text.json": '{"train": {"lr": "fast"}}',
        "dropout-text.json": '{"model": {"dropout": "0.1"}}',
        "device-number.json": '{"train": {"device": 0}}',
        "compile-text.json": '{"train": {"compile": "yes"}}',
        "list.json": "[1, 2, 3]",
        "section-list.json": '{"train": [1, 2]}',
    }
    for name, text in configs.items():
        (bad / name).write_text(text, encoding="utf-8")
    (bad / "latin1.json").write_bytes('{"train": {"steps": 3}, "note": "café"}'.encode("latin-1"))
    good = torch.load(text_ckpt, weights_only=True)
    ckpt = text_ckpt.read_bytes()
    (bad / "cut.pt").write_bytes(ckpt[: len(ckpt) // 2])
    (bad / "empty.pt").write_bytes(b"")
    torch.save({k: v for k, v in good.items() if k != "model"}, bad / "no-weights.pt")
    torch.save({**good, "model_config": {**good["model_config"], "d_model": 64}}, bad / "wrong-shape.pt")
    torch.save({**good, "version": 99}, bad / "future.pt")
    torch.save({"weight": torch.zeros(3)}, bad / "state-dict.pt")  # another program's checkpoint
    meta = json.loads((Path(good["data"]) / "meta.json").read_text())
    for name, broken in {"no-splits": {k: v for k, v in meta.items() if k != "splits"}, "bad-dtype": {**meta, "dtype": "potato"}}.items():
        shutil.copytree(good["data"], bad / name)
        (bad / name / "meta.json").write_text(json.dumps(broken))


def _train(data: Path, out: Path) -> Path:
    result = cli("train", "--data", str(data), "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    return out / "last.pt"


def _untrained(data: Path, path: Path) -> Path:
    """A valid checkpoint of the data's modality, written without training: enough to refuse bad input."""
    shards = open_shards(data)
    model = GPT(ModelConfig(vocab_size=shards.vocab_size, n_layer=1, n_head=2, d_model=32, d_ff=64, context=32))
    save_checkpoint(path, model, shards.modality_spec, TrainConfig(steps=3, batch_size=4, device="cpu"), step=0, data=str(data))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, milton: str) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-inputs")
    corpus = root / "corpus"
    corpus.mkdir()
    for i in range(3):
        (corpus / f"part{i}.txt").write_text(milton[i * 8_000 : (i + 1) * 8_000], encoding="utf-8")
    prepare(TextModality(), [corpus], root / "text", workers=1, show_progress=False)
    prepare(AudioModality(), [ASSETS / "audio"], root / "audio", workers=1, show_progress=False)
    paths = {"T": _train(root / "text", root / "runs" / "text"), "A": _untrained(root / "audio", root / "audio.pt")}
    prepare(MidiModality(), [ASSETS / "midi" / "good"], root / "midi", workers=1, show_progress=False)
    paths["M"] = _untrained(root / "midi", root / "midi.pt")
    (root / "empty").mkdir()
    _bad_files(root / "bad", paths["T"])
    named = {"root": root, "assets": ASSETS, "corpus": corpus, "text": root / "text", "audio": root / "audio", "midi": root / "midi"}
    return {k: str(v) for k, v in {**named, **paths, "bad": root / "bad", "empty": root / "empty"}.items()}


def run_row(world: dict[str, str], args: str, message: str, lines: int | None = 1) -> None:
    result = cli(*(a.format(**world) for a in args.split()))
    assert_clear_error(result, message, lines)


def row(args: str, message: str, *marks: pytest.MarkDecorator, id: str, lines: int | None = 1):
    return pytest.param(args, message, lines, marks=marks, id=id)


# -- prepare ------------------------------------------------------------------------------------
PREPARE = [
    row("prepare text {root}/nowhere -o {root}/o/p1 -q", "does not exist", id="text-missing-path"),
    row("prepare text {empty} -o {root}/o/p2 -q", "no files with extension .txt", id="text-empty-folder"),
    row("prepare text {bad}/latin1.txt -o {root}/o/p3 -q", "not UTF-8", id="text-latin1"),
    row("prepare text {bad}/binary.txt -o {root}/o/p4 -q", "binary data", id="text-binary"),
    row("prepare text {bad}/empty.txt -o {root}/o/p5 -q", "empty file", id="text-zero-length"),
    row("prepare text {bad}/ok.wav -o {root}/o/p6 -q", "not text", id="text-given-audio"),
    row("prepare text {corpus} --tokenizer words -o {root}/o/p7 -q", "unknown text tokenizer", id="text-unknown-tokenizer"),
    row("prepare text {corpus} --tokenizer bpe --vocab-size 10 -o {root}/o/p8 -q", "--vocab-size", id="text-bpe-vocab-too-small"),
    row("prepare text {corpus} --val-fraction 1.5 -o {root}/o/p9 -q", "--val-fraction", id="text-val-fraction"),
    row("prepare text {corpus} --glob *.xyz -o {root}/o/p10 -q", "no files matching", id="text-glob-matches-nothing"),
    row("prepare text {corpus} -o /proc/wgpt-test -q", "cannot write", linux_only, id="text-out-in-proc"),
    row("prepare text {corpus} -o {bad}/a-file -q", "cannot write shards", id="text-out-is-a-file"),
    row(
        "prepare text {corpus} -o {bad}/a-file/sub -q",
        "cannot write shards",
        id="text-out-under-a-file",
    ),
    row("prepare text {root}/nowhere --workers -1 -q", "--workers", id="text-negative-workers"),
    row("prepare midi {root}/nowhere -o {root}/o/p11 -q", "does not exist", id="midi-missing-path"),
    row("prepare midi {corpus} -o {root}/o/p12 -q", "no files with extension .mid", id="midi-folder-of-text"),
    row("prepare midi {bad}/empty.mid -o {root}/o/p13 -q", "empty file", id="midi-zero-length"),
    row("prepare midi {bad}/cut.mid -o {root}/o/p14 -q", "truncated or corrupt", id="midi-truncated"),
    row("prepare midi {bad}/letter.mid -o {root}/o/p15 -q", "not a MIDI file", id="midi-text-named-mid"),
    row("prepare midi {assets}/midi/broken -o {root}/o/p16 -q", "no usable midi files among 4", id="midi-only-broken"),
    row(
        "prepare midi {assets}/midi/good --tokenizer Octuple -o {root}/o/p17 -q",
        "not supported",
        id="midi-unsupported-tokenizer",
    ),
    row("prepare audio {empty} -o {root}/o/p18 -q", "no files with extension .wav", id="audio-empty-folder"),
    row("prepare audio {bad}/empty.wav -o {root}/o/p19 -q", "empty file", id="audio-zero-length"),
    row("prepare audio {bad}/cut.wav -o {root}/o/p20 -q", "corrupt or unsupported audio", id="audio-truncated-header"),
    row("prepare audio {bad}/header.wav -o {root}/o/p21 -q", "no audio frames", id="audio-no-samples"),
    row("prepare audio {bad}/cut.flac -o {root}/o/p22 -q", "corrupt audio data", id="audio-truncated-flac"),
    row("prepare audio {bad}/notes.wav -o {root}/o/p23 -q", "text, not audio", id="audio-text-named-wav"),
    row("prepare audio {bad}/clip.mp4 -o {root}/o/p24 -q", "not a format libsndfile reads", id="audio-unsupported-format"),
    row("prepare audio {bad}/ok.wav --sample-rate 10 -o {root}/o/p25 -q", "--sample-rate", id="audio-sample-rate"),
    row("prepare audio {bad}/ok.wav --bits 40 -o {root}/o/p26 -q", "--bits", id="audio-bits"),
    row("prepare video {corpus}", "No such command", id="unknown-modality", lines=None),
    row("prepare midi", "Missing argument", id="midi-no-sources", lines=None),
]


@pytest.mark.parametrize(("args", "message", "lines"), PREPARE)
def test_prepare(world, args, message, lines):
    run_row(world, args, message, lines)


# -- train --------------------------------------------------------------------------------------
TRAIN = [
    row("train --data {root}/nowhere -o {root}/o/t1", "no prepared data", id="missing-data"),
    row("train --data {empty} -o {root}/o/t2", "has no meta.json", id="empty-folder"),
    row("train --data {bad}/a-file -o {root}/o/t3", "no prepared data", id="data-is-a-file"),
    row("train --data {bad}/no-splits -o {root}/o/t4", "is damaged", id="meta-missing-splits"),
    row("train --data {bad}/bad-dtype -o {root}/o/t5", "is damaged", id="meta-bad-dtype"),
    row("train --data {text} -o {root}/o/t6 --steps 0", "--steps must be a positive integer", id="zero-steps"),
    row("train --data {text} -o {root}/o/t7 --steps -5", "--steps must be a positive integer", id="negative-steps"),
    row("train --data {text} -o {root}/o/t8 --steps ten", "Invalid value for '--steps'", id="steps-not-a-number", lines=None),
    row("train --data {text} -o {root}/o/t9 --preset huge", "unknown preset 'huge'", id="unknown-preset"),
    row("train --modality video", "unknown --modality", id="unknown-modality"),
    row("train --data {text} -o {root}/o/t10 --context 100000", "lower --context", id="context-longer-than-data"),
    row("train --data {text} -o {root}/o/t11 --micro-batch 3", "--micro-batch 3 must divide --batch-size 4", id="micro-batch"),
    row("train --data {text} -o {root}/o/t12 --width 30 --heads 4", "must be divisible by --heads", id="width-heads"),
    row("train --data {text} -o {root}/o/t13 --position alibi", "unknown --position", id="unknown-position"),
    row("train --data {text} -o {root}/o/t14 --wavelet-kind db4", "unknown --wavelet-kind", id="unknown-wavelet"),
    row("train --data {text} -o {root}/o/t15 --device tpu", "unknown --device", id="unknown-device"),
    row("train --data {text} -o {root}/o/t16 --lr 0", "--lr must be a positive number", id="zero-lr"),
    row(
        "train --data {root}/nowhere -o {root}/o/t17 --grad-clip -1",
        "--grad-clip",
        id="negative-grad-clip",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t18 --weight-decay -1",
        "--weight-decay",
        id="negative-weight-decay",
    ),
    row("train --data {text} -o {bad}/a-file", "cannot create the run folder", id="out-is-a-file"),
    row("train --data {text} -o {root}/o/t40 --layers 5000", "--layers must be at most 1,024", id="huge-layers"),
    row("train --data {text} -o {root}/o/t41 --width 70000 --heads 1", "--width must be at most 65,536", id="huge-width"),
    row(
        "train --data {text} -o {root}/o/t42 --layers 1000 --width 8192 --heads 8 --context 32",
        "needs at least",  # 270 billion parameters, refused before a byte of them is allocated
        id="model-beyond-memory",
    ),
    row("train --data {text} -o {root}/o/t43 --batch-size 100000", "--batch-size must be at most 65,536", id="huge-batch"),
    row("train --data {text} -o {root}/o/t44 --eval-batches 1000000", "--eval-batches must be at most 16,384", id="huge-eval-batches"),
    row("train --data {text} -o {root}/o/t45 --seed 99999999999999999999", "--seed must be a whole number from 0", id="seed-overflow"),
    row("train --data {text} -o {root}/o/t46 --lr inf", "--lr must be a positive number", id="infinite-lr"),
    row("train --data {text} -o {root}/o/t47 --beta2 5", "--beta2 must be in [0, 1)", id="beta2-out-of-range"),
    row(
        "train --data {text} -o {bad}/a-file/run",
        "cannot create the run folder",
        id="out-under-a-file",
    ),
    row(
        "train --data {text} -o /proc/wgpt-run",
        "cannot create the run folder",
        linux_only,
        id="out-in-proc",
    ),
    row("train --data {text} -o {root}/runs/text", "already holds a run", id="existing-run"),
    row("train --data {text} -o {root}/o/none --resume", "nothing to resume", id="resume-nothing"),
    row("train --data {text} -o {root}/runs/text --resume --steps 3", "already at step 3", id="resume-already-done"),
    row("train --data {audio} -o {root}/runs/text --resume --steps 6", "trained on other data", id="resume-other-modality-same-vocab"),
    row(
        "train --data {midi} -o {root}/runs/text --resume --steps 6",
        "trained on other data",
        id="resume-other-modality-other-vocab",
    ),
    row("train --data {text} -o {root}/runs/text --resume --steps 6 --width 64", "cannot change the model", id="resume-new-width"),
    row("train --data {text} -o {root}/o/t19 --config {root}/nowhere.json", "does not exist", id="config-missing"),
    row("train --data {text} -o {root}/o/t20 --config {bad}/broken.json", "is not valid json", id="config-invalid-json"),
    row("train --data {text} -o {root}/o/t21 --config {bad}/broken.toml", "is not valid toml", id="config-invalid-toml"),
    row("train --data {text} -o {root}/o/t21y --config {bad}/broken.yaml", "is not valid yaml", id="config-invalid-yaml"),
    row("train --data {text} -o {root}/o/t21c --config {bad}/code.yaml", "is not valid yaml", id="config-yaml-python-tag"),
    row("train --data {text} -o {root}/o/t21d --config {bad}/deep.json", "nested too deeply", id="config-nested-deep"),
    row("train --data {text} -o {root}/o/t22 --config {bad}/unknown-key.json", "unknown setting(s) ['stepz']", id="config-unknown-key"),
    row(
        "train --data {text} -o {root}/o/t23 --config {bad}/unknown-section.json",
        "unknown section(s) ['trian']",
        id="config-unknown-section",
    ),
    row("train --data {text} -o {root}/o/t24 --config {bad}/steps-text.json", "steps must be", id="config-steps-text"),
    row("train --data {text} -o {root}/o/t25 --config {bad}/steps-text.toml", "steps must be", id="config-steps-text-toml"),
    # Rows below point --data nowhere: today they fail later, on the data, fast; once fixed, on the config.
    row(
        "train --data {root}/nowhere -o {root}/o/t26 --config {bad}/lr-text.json",
        "lr must be a number",
        id="config-lr-text",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t27 --config {bad}/dropout-text.json",
        "dropout must be a number",
        id="config-dropout-text",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t28 --config {bad}/device-number.json",
        "device must be a string",
        id="config-device-number",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t29 --config {bad}/steps-bool.json",
        "steps must be a whole number",
        id="config-steps-bool",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t30 --config {bad}/compile-text.json",
        "compile must be true or false",
        id="config-compile-text",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t30b --compile --compile-mode fast",
        "--compile-mode must be one of default, reduce-overhead, max-autotune, got 'fast'",
        id="compile-mode-unknown",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t30c --compile-mode reduce-overhead",
        "--compile-mode reduce-overhead only applies to a compiled model: add --compile",
        id="compile-mode-without-compile",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t31 --config {bad}/list.json",
        "must hold an object",
        id="config-list",
    ),
    row(
        "train --data {root}/nowhere -o {root}/o/t32 --config {bad}/section-list.json",
        "must be a table",
        id="config-section-list",
    ),
    row(
        "train --data {text} -o {root}/o/t33 --config {bad}/latin1.json",
        "is not valid json",
        id="config-not-utf8",
    ),
]


@pytest.mark.parametrize(("args", "message", "lines"), TRAIN)
def test_train(world, args, message, lines):
    command, *rest = args.split()
    run_row(world, " ".join([command, *TINY, *rest]), message, lines)  # the row's flags come last, so they win


# -- eval ---------------------------------------------------------------------------------------
EVAL = [
    row("eval --ckpt {root}/nowhere.pt", "does not exist", id="missing-ckpt"),
    row("eval --ckpt {root}/runs/text", "is a folder", id="ckpt-is-a-folder"),
    row("eval --ckpt {corpus}/part0.txt", "not a wgpt checkpoint", id="ckpt-is-text"),
    row("eval --ckpt {bad}/cut.pt", "truncated", id="ckpt-truncated"),
    row("eval --ckpt {bad}/empty.pt", "truncated", id="ckpt-zero-length"),
    row("eval --ckpt {bad}/state-dict.pt", "not a wgpt checkpoint", id="ckpt-from-another-program"),
    row("eval --ckpt {bad}/future.pt", "checkpoint version 99", id="ckpt-future-version"),
    row("eval --ckpt {bad}/no-weights.pt", "damaged", id="ckpt-without-weights"),
    row("eval --ckpt {T} --data {audio}", "another modality or tokenizer", id="text-ckpt-audio-data"),
    row("eval --ckpt {A} --data {text}", "another modality or tokenizer", id="audio-ckpt-text-data"),
    row("eval --ckpt {M} --data {text}", "another modality or tokenizer", id="midi-ckpt-text-data"),
    row("eval --ckpt {T} --data {root}/nowhere", "no prepared data", id="missing-data"),
    row("eval --ckpt {T} --data {bad}/no-splits", "is damaged", id="damaged-meta"),
    row("eval --ckpt {T} --device tpu", "unknown --device", id="unknown-device"),
    row("eval --ckpt {T} --max-tokens 0", "--max-tokens", id="zero-max-tokens"),
    row("eval", "Missing option '--ckpt'", id="no-ckpt", lines=None),
]


@pytest.mark.parametrize(("args", "message", "lines"), EVAL)
def test_eval(world, args, message, lines):
    run_row(world, args, message, lines)


# -- sample -------------------------------------------------------------------------------------
SAMPLE = [
    row("sample --ckpt {root}/nowhere.pt --out {root}/o/s.txt", "does not exist", id="missing-ckpt"),
    row(
        "sample --ckpt {root}/runs/text --out {root}/o/s.txt",
        "is a folder",
        id="ckpt-is-a-folder",
    ),
    row("sample --ckpt {bad}/cut.pt --out {root}/o/s.txt", "truncated", id="ckpt-truncated"),
    row(
        "sample --ckpt {bad}/wrong-shape.pt --out {root}/o/s.txt",
        "damaged",
        id="ckpt-wrong-shapes",
    ),
    row("sample --ckpt {T} --out {root}/o/s.mid", "text model writes .txt, .md files", id="text-ckpt-mid-out"),
    row("sample --ckpt {T} --out {root}/o/s", "text model writes", id="text-ckpt-no-extension"),
    row("sample --ckpt {A} --out {root}/o/s.mid", "writes .wav files", id="audio-ckpt-mid-out"),
    row("sample --ckpt {M} --out {root}/o/s.txt", "writes .mid, .midi, .wav files", id="midi-ckpt-txt-out"),
    row("sample --ckpt {T} --out {root}/o/s.txt --temperature 0", "--temperature must be between", id="temperature-zero"),
    row("sample --ckpt {T} --out {root}/o/s.txt --temperature -1", "--temperature must be between", id="temperature-negative"),
    row("sample --ckpt {T} --out {root}/o/s.txt --top-p 0", "--top-p must be in (0, 1]", id="top-p-zero"),
    row("sample --ckpt {T} --out {root}/o/s.txt --top-p 1.5", "--top-p must be in (0, 1]", id="top-p-above-one"),
    row("sample --ckpt {T} --out {root}/o/s.txt --top-k 0", "--top-k must be >= 1", id="top-k-zero"),
    row("sample --ckpt {T} --out {root}/o/s.txt --num-samples 0", "--num-samples must be at least 1", id="zero-samples"),
    row("sample --ckpt {T} --out {root}/o/s.txt --tokens 0", "--tokens must be at least 1", id="zero-tokens"),
    row("sample --ckpt {A} --out {root}/o/s.wav --seconds -1", "--seconds must be", id="negative-seconds"),
    row(
        "sample --ckpt {A} --out {root}/o/s.wav --seconds inf",
        "--seconds must be",
        id="infinite-seconds",
    ),
    # --prompt-file nowhere: today the run fails on the prompt, fast, instead of generating a second of audio
    row(
        "sample --ckpt {A} --out {root}/o/s.wav --tokens 5 --seconds 1 --prompt-file {root}/nowhere.wav",
        "one of --tokens, --seconds or --bars",
        id="tokens-and-seconds",
    ),
    row("sample --ckpt {T} --out {root}/o/s.txt --seconds 1", "--seconds applies to audio and MIDI models", id="seconds-on-text"),
    row("sample --ckpt {A} --out {root}/o/s.wav --bars 2", "--bars applies to MIDI models; this is a audio model", id="bars-on-audio"),
    row("sample --ckpt {M} --out {root}/o/s.mid --bars 2 --seconds 3", "not --seconds and --bars", id="bars-and-seconds"),
    row("sample --ckpt {M} --out {root}/o/s.mid --bars 0", "--bars must be a positive number of at most 2,000", id="zero-bars"),
    row(
        "sample --ckpt {M} --out {root}/o/s.mid --seconds 1e6",
        "--seconds must be a positive number of at most 3,600",
        id="huge-midi-seconds",
    ),
    row("sample --ckpt {T} --out {root}/o/s.txt --prompt " + "x" * 40, "longer than the model's context of 32", id="prompt-too-long"),
    row(
        "sample --ckpt {T} --out {root}/o/s.txt --prompt-file {corpus}/part0.txt",
        "longer than the model's context",
        id="prompt-file-too-long",
    ),
    row("sample --ckpt {T} --out {root}/o/s.txt --prompt-file {root}/nowhere.txt", "does not exist", id="prompt-file-missing"),
    row(
        "sample --ckpt {T} --out {root}/o/s.txt --prompt-file {empty}",
        "is a folder",
        id="prompt-file-folder",
    ),
    row("sample --ckpt {T} --out {root}/o/s.txt --prompt-file {bad}/latin1.txt", "not UTF-8", id="prompt-file-latin1"),
    row("sample --ckpt {T} --out {root}/o/s.txt --prompt-file {bad}/binary.txt", "binary data", id="prompt-file-binary"),
    row("sample --ckpt {T} --out {root}/o/s.txt --prompt a --prompt-file {bad}/latin1.txt", "not both", id="prompt-and-prompt-file"),
    row("sample --ckpt {A} --out {root}/o/s.wav --prompt hello", "audio prompts come from a file", id="audio-text-prompt"),
    row("sample --ckpt {A} --out {root}/o/s.wav --prompt-file {bad}/empty.wav", "empty file", id="audio-prompt-zero-length"),
    row("sample --ckpt {A} --out {root}/o/s.wav --prompt-file {bad}/cut.wav", "corrupt or unsupported audio", id="audio-prompt-truncated"),
    row("sample --ckpt {A} --out {root}/o/s.wav --prompt-file {bad}/ok.wav", "longer than the model's context", id="audio-prompt-too-long"),
    row("sample --ckpt {M} --out {root}/o/s.mid --prompt-file {bad}/cut.mid", "truncated or corrupt", id="midi-prompt-truncated"),
    row("sample --ckpt {M} --out {root}/o/s.mid --prompt-file {bad}/empty.mid", "empty file", id="midi-prompt-zero-length"),
    row("sample --ckpt {M} --out {root}/o/s.mid --prompt hello", "MIDI prompts come from a file", id="midi-text-prompt"),
    row(
        "sample --ckpt {M} --out {root}/o/s.wav --tokens 4 --soundfont {root}/none.sf2",
        "soundfont",
        id="midi-missing-soundfont",
    ),
    row("sample --ckpt {T} --out {bad}/a-file/s.txt --tokens 4", "cannot write", id="out-under-a-file"),
    row("sample --ckpt {T} --out {root}/o/s.txt --tokens 4 --soundfont {root}/x.sf2", "renders MIDI models", id="text-soundfont"),
    row("sample --ckpt {T} --out {root} --tokens 4", "change --out", id="out-is-a-folder"),
    row("sample --ckpt {T} --out /proc/wgpt-sample.txt --tokens 4", "cannot write", linux_only, id="out-in-proc"),
    row("sample --ckpt {T} --out {bad}/d.txt --tokens 4", "cannot write", id="out-is-a-folder"),
    row(
        "sample --ckpt {T} --out {root}/o/s.txt --device tpu",
        "unknown --device",
        id="unknown-device",
    ),
    # sizes past a limit: refused before anything is allocated, the limit in the message
    row(
        "sample --ckpt {T} --out {root}/o/s.txt --tokens 1000000000", "--tokens must be at least 1 and at most 20,000,000", id="huge-tokens"
    ),
    row(
        "sample --ckpt {T} --out {root}/o/s.txt --num-samples 100000",
        "--num-samples must be at least 1 and at most 256",
        id="huge-num-samples",
    ),
    row("sample --ckpt {A} --out {root}/o/s.wav --seconds 1e7", "--seconds must be a positive number of at most", id="huge-seconds"),
    row("sample --ckpt {A} --out {root}/o/s.wav --seconds nan", "--seconds must be", id="nan-seconds"),
    row(
        "sample --ckpt {T} --out {root}/o/s.txt --num-samples 256 --tokens 20000000",
        "needs at least",  # 41 GB of ids: more than any CI machine has
        id="samples-beyond-memory",
    ),
    row("sample --ckpt {T} --out {root}/o/s.txt --temperature inf", "--temperature must be between", id="temperature-inf"),
    row("sample --ckpt {T} --out {root}/o/s.txt --temperature 1e-310", "--temperature must be between", id="temperature-denormal"),
    row(
        "sample --ckpt {T} --out {root}/o/s.txt --seed 99999999999999999999999", "--seed must be a whole number from 0", id="seed-overflow"
    ),
    row("sample --ckpt {T} --out {root}/o/s.txt --seed -1", "--seed must be a whole number from 0", id="seed-negative"),
]


@pytest.mark.parametrize(("args", "message", "lines"), SAMPLE)
def test_sample(world, args, message, lines):
    run_row(world, args, message, lines)


# -- bench --------------------------------------------------------------------------------------
BENCH = [
    row("bench --data {root}/nowhere --steps 3 -q", "no prepared data", id="missing-data"),
    row("bench --data {text} --steps 0 -q", "--steps must be a positive integer", id="zero-steps"),
    row("bench --data {text} --variants foo -q", "unknown variant(s) foo", id="unknown-variant"),
    row("bench --data {text} --seeds a,b -q", "--seeds must be comma-separated integers", id="bad-seeds"),
    row("bench --data {text} --preset huge -q", "unknown preset", id="unknown-preset"),
    row("bench --data {text} --context 100000 --steps 3 -q", "lower --context", id="context-longer-than-data"),
    row(
        "bench --data {text} --steps 3 --context 32 --batch-size 4 -o {bad}/a-file -q",
        "cannot create the run folder",
        id="out-is-a-file",
    ),
]


@pytest.mark.parametrize(("args", "message", "lines"), BENCH)
def test_bench(world, args, message, lines):
    run_row(world, args, message, lines)


# -- across commands ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [[], ["prepare"], ["prepare", "text"], ["prepare", "midi"], ["prepare", "audio"], ["train"], ["eval"], ["sample"], ["bench"], ["demo"]],
)
def test_every_help_works(command):
    result = cli(*command, "--help")
    assert result.exit_code == 0 and result.exception is None, result.output
    assert "Usage:" in result.output and len(result.output.splitlines()) > 5


def test_debug_shows_the_traceback_instead(world):
    result = cli("--debug", "eval", "--ckpt", f"{world['root']}/nowhere.pt")
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "WgptError" and "does not exist" in str(result.exception)
    quiet = cli("eval", "--ckpt", f"{world['root']}/nowhere.pt")  # and the flag does not stick
    assert isinstance(quiet.exception, SystemExit) and quiet.exit_code == 2


def test_refused_commands_write_nothing(world):
    """A refused run leaves no run folder behind, a refused sample no output file, neither a temporary."""
    root = Path(world["root"])
    for args in (
        ["train", "--data", world["text"], "-o", f"{root}/w/run", *TINY, "--steps", "0"],
        ["train", "--data", world["text"], "-o", f"{root}/w/run", *TINY, "--context", "100000"],
        ["sample", "--ckpt", world["T"], "--out", f"{root}/w/s.txt", "--temperature", "0"],
        ["sample", "--ckpt", world["T"], "--out", f"{root}/w/s.txt", "--prompt", "x" * 40],
    ):
        assert cli(*args).exit_code == 2
    assert not (root / "w" / "run").exists()
    assert not (root / "w").exists() or not any((root / "w").iterdir())
