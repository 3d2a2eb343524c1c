"""Every script in examples/ runs, on tiny settings, and writes what it says it writes.

Each runs as a user runs it (a subprocess, the ``wgpt`` of this environment on the PATH), with
``WGPT_EXAMPLE_TINY=1`` (a minimal model) and a few steps, into a temporary folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str | Path, steps: int = 6, **env: str) -> str:
    """Run ``examples/NAME ARGS`` on tiny settings; its stdout. A failure shows its stderr."""
    command = ["bash", str(EXAMPLES / name)] if name.endswith(".sh") else [sys.executable, str(EXAMPLES / name)]
    environ = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "WGPT_EXAMPLE_TINY": "1",
        "WGPT_EXAMPLE_STEPS": str(steps),
        "OMP_NUM_THREADS": "2",
        **env,
    }
    result = subprocess.run([*command, *map(str, args)], capture_output=True, text=True, env=environ, timeout=600)
    assert result.returncode == 0, f"{name} failed:\n{result.stderr[-3000:]}"
    return result.stdout


def wav_frames(path: Path) -> int:
    with wave.open(str(path)) as f:
        return f.getnframes()


def test_the_readme_lists_every_example():
    listed = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".sh", ".py"))
    assert scripts and all(f"`{name}`" in listed for name in scripts)


def test_python_api(tmp_path: Path):
    stdout = run_example("python_api.py", "--out", tmp_path)
    text = (tmp_path / "sample.txt").read_text(encoding="utf-8")
    assert text.startswith("Of Man") and len(text) == len("Of Man") + 200  # chars: one token per character
    assert (tmp_path / "run" / "best.pt").is_file() and "bits per char" in stdout


def test_export_and_reload_gives_the_checkpoints_logits(tmp_path: Path):
    stdout = run_example("export_and_reload.py", "--out", tmp_path)
    assert "largest logit difference" in stdout and stdout.strip().endswith(": 0.0")
    assert {"model.safetensors", "config.json", "README.md"} <= {p.name for p in (tmp_path / "exported").iterdir()}


@pytest.mark.slow
def test_text(tmp_path: Path):
    run_example("text.sh", "", tmp_path)
    samples = [(tmp_path / f"sample-{i}.txt").read_text(encoding="utf-8") for i in (1, 2)]
    assert all(s.startswith("Of Man") for s in samples) and samples[0] != samples[1]
    assert json.loads((tmp_path / "eval.json").read_text())["bits_per_byte"] > 0


@pytest.mark.slow
def test_midi_writes_a_parsable_mid_and_a_wav(tmp_path: Path):
    import pretty_midi

    run_example("midi.sh", EXAMPLES.parent / "tests/assets/midi/good", tmp_path, steps=30)  # 6 steps decode to no notes
    pretty_midi.PrettyMIDI(str(tmp_path / "song.mid"))  # parses
    assert wav_frames(tmp_path / "song.wav") > 0


@pytest.mark.slow
def test_audio_continues_the_recording(tmp_path: Path):
    from wgpt.modalities.audio import AudioModality

    recording = EXAMPLES.parent / "tests/assets/audio/speech.flac"
    run_example("audio.sh", recording.parent, tmp_path, WGPT_EXAMPLE_SECONDS="0.05")
    prompt = len(AudioModality().encode_file(recording))
    with wave.open(str(tmp_path / "continuation.wav")) as f:
        assert f.getframerate() == 16000 and f.getnframes() == prompt + 800  # the recording, then 0.05 s of new samples


@pytest.mark.slow
def test_bench(tmp_path: Path):
    run_example("bench.sh", "", tmp_path)
    summary = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert (tmp_path / "bench" / "report.html").is_file() and "haar" in json.dumps(summary)


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path: Path):
    run_example("torchrun.sh", "", tmp_path, OMP_NUM_THREADS="1")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 6 and (tmp_path / "sample.txt").is_file()


@pytest.mark.slow
def test_fine_tune_starts_from_the_base_weights(tmp_path: Path):
    from wgpt.checkpoint import load_checkpoint

    run_example("fine_tune.sh", EXAMPLES.parent / "docs", tmp_path)
    base, tuned = (load_checkpoint(tmp_path / run / "best.pt") for run in ("base", "tuned"))
    assert tuned["model_config"] == base["model_config"] and tuned["modality"] == base["modality"]
    assert (tmp_path / "sample.txt").read_text(encoding="utf-8").startswith("wgpt ")
