"""The real app, driven through typer's CliRunner, asserting on the files it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import wgpt
import wgpt.checkpoint
import wgpt.training
from wgpt.cli import app

runner = CliRunner()
SMALL = [
    "--layers",
    "1",
    "--width",
    "32",
    "--heads",
    "2",
    "--ffn",
    "64",
    "--context",
    "32",
    "--batch-size",
    "4",
    "--eval-interval",
    "3",
    "-q",
]


def run(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def workdir(tmp_path: Path, corpus_dir: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    run("prepare", "text", str(corpus_dir), "-q")
    return tmp_path


def test_the_app_has_its_commands():
    import typer

    group = typer.main.get_command(app)
    assert {"prepare", "train", "eval", "sample", "demo", "bench"} <= set(group.commands)
    assert set(group.commands["prepare"].commands) == {"text", "midi", "audio"}


def test_help_lists_the_commands_in_the_order_of_a_session():
    shown = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    commands = shown[shown.index("Commands") :]
    where = [commands.index(f" {name} ") for name in ("prepare", "train", "eval", "sample", "bench", "demo")]
    assert where == sorted(where)
    globs = {m: runner.invoke(app, ["prepare", m, "--help"], env={"COLUMNS": "200"}).output for m in ("text", "midi", "audio")}
    assert "'*.txt'" in globs["text"] and "'*.mid'" in globs["midi"] and "'*.wav'" in globs["audio"]


@pytest.mark.parametrize("command", [["prepare", "midi"], ["train"], ["sample"], ["bench"], ["report"], ["export"]])
def test_help_type_tags_are_the_ones_users_type(command):
    """Switches show no '<bool>' (they take no value); path lists read '<path>...', not '<list[Path]>'."""
    shown = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output
    assert "<bool>" not in shown and "list[" not in shown
    help_line = next(line for line in shown.splitlines() if "--help" in line)
    assert help_line.split(" -h ", 1)[1].split()[0] == "Show"  # the help text follows the name, no tag between
    if command == ["prepare", "midi"]:
        assert "<path>..." in shown and "<int>" in shown  # value options keep their tags


def test_midi_samples_asked_in_bars_or_seconds_last_that_long(tmp_path: Path, monkeypatch):
    import pretty_midi

    monkeypatch.chdir(tmp_path)
    run("prepare", "midi", str(Path(__file__).parent / "assets/midi/good"), "-o", "midi", "-q")
    small = [*SMALL[: SMALL.index("--context")], "--context", "64", "--batch-size", "8", "--eval-interval", "40", "-q"]
    run("train", "--data", "midi", "--out", "run", "--steps", "80", "--lr", "1e-2", "--eval-batches", "1", *small)
    for flag, amount in (("--bars", 4), ("--seconds", 6)):
        result = run("sample", "--ckpt", "run/best.pt", flag, str(amount), "--out", "s.mid", "--seed", "1", "-q")
        pm = pretty_midi.PrettyMIDI("s.mid")
        last = max(n.start for inst in pm.instruments for n in inst.notes)
        got = int((pm.get_downbeats() <= last + 1e-6).sum()) if flag == "--bars" else last
        assert got <= amount and (got >= 0.75 * amount or f"of the {amount} {flag[2:]} asked" in result.output), (flag, got)


def test_every_config_field_with_a_flag_is_an_option_of_train_and_bench():
    """The flags come from the config table: a field that names a flag is an option, with its help."""
    from dataclasses import fields

    import typer

    from wgpt.config import ModelConfig, TrainConfig

    group = typer.main.get_command(app)
    options = {name: {o for p in group.commands[name].params for o in p.opts} for name in ("train", "bench")}
    for cls in (ModelConfig, TrainConfig):
        for f in fields(cls):
            flag = f.metadata["flag"]
            if flag is None:
                continue
            assert flag.split("/")[0] in options["train"], flag
            assert (flag.split("/")[0] in options["bench"]) == (f.name not in ("wavelet", "seed")), flag


@pytest.mark.parametrize(
    "name",
    ["n_layer", "n_head", "d_model", "d_ff", "context", "steps", "batch_size", "eval_interval", "eval_batches"],
)
def test_a_bad_value_is_named_by_the_flag_that_set_it(name: str, tmp_path: Path):
    """`wgpt train --layers 0` once said `--n-layer`, a flag that does not exist."""
    from wgpt.config import ModelConfig, TrainConfig, flag_of

    cls = ModelConfig if hasattr(ModelConfig, name) else TrainConfig
    flag = flag_of(cls, name)
    result = run("train", "--data", str(tmp_path / "nowhere"), flag, "0", "-o", str(tmp_path / "run"), code=2)
    assert f"{flag} must be a positive integer, got 0" in result.output


def test_command_help_paragraphs_have_no_hard_line_breaks():
    """Rich keeps a docstring's line breaks, so a paragraph wrapped in the source prints broken at any width."""
    import click
    import typer

    def commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
        found = {}
        for name, command in group.commands.items():
            found[prefix + name] = command
            if isinstance(command, click.Group):
                found.update(commands(command, prefix + name + " "))
        return found

    broken = {name for name, command in commands(typer.main.get_command(app)).items() if "\n" in (command.help or "").replace("\n\n", "")}
    assert not broken, f"wrap these docstrings one paragraph per line: {sorted(broken)}"


def test_help_shows_computed_defaults():
    """Rich markup would swallow a '[default: ...]' written into a help string."""
    assert "default: 500" in runner.invoke(app, ["sample", "--help"], env={"COLUMNS": "200"}).output
    assert "default: data/MODALITY" in runner.invoke(app, ["prepare", "text", "--help"], env={"COLUMNS": "200"}).output


def test_prepare_train_eval_sample(workdir: Path):
    assert (workdir / "data" / "text" / "meta.json").is_file()
    run("train", "--steps", "6", *SMALL)
    run("train", "--steps", "6", "--wavelet", *SMALL)
    reports = {}
    for name in ("baseline", "haar"):
        result = run("eval", "--ckpt", f"runs/text-{name}/best.pt", "--json")
        reports[name] = json.loads(result.stdout)
    assert reports["baseline"]["params"] == reports["haar"]["params"]
    assert reports["haar"]["wavelet"] == "haar" and reports["baseline"]["wavelet"] == "none"
    assert reports["haar"]["bits_per_byte"] == pytest.approx(reports["haar"]["bits_per_token"])  # bytes: 1 token = 1 byte
    run("sample", "--ckpt", "runs/text-haar/best.pt", "--out", "a.txt", "--tokens", "40", "--seed", "3")
    run("sample", "--ckpt", "runs/text-haar/best.pt", "--out", "b.txt", "--tokens", "40", "--seed", "3")
    a = (workdir / "a.txt").read_bytes()
    assert a == (workdir / "b.txt").read_bytes()
    assert len(a.decode("utf-8")) <= 40 and len(a) >= 40 - 3 * a.decode("utf-8").count("\ufffd")


def test_sample_shows_progress_unless_quiet(workdir: Path):
    run("train", "--steps", "2", *SMALL)
    shown = runner.invoke(
        app, ["sample", "--ckpt", "runs/text-baseline/best.pt", "--out", "a.txt", "--tokens", "30"], env={"COLUMNS": "200"}
    )
    assert shown.exit_code == 0 and "sampling" in shown.output and "30/30" in shown.output
    quiet = run("sample", "--ckpt", "runs/text-baseline/best.pt", "--out", "b.txt", "--tokens", "30", "-q")
    assert "sampling" not in quiet.output and "wrote b.txt" in quiet.output
    assert (workdir / "a.txt").read_bytes() == (workdir / "b.txt").read_bytes()  # same seed, same text, bar or not


def test_sample_with_prompt_and_several_samples(workdir: Path):
    run("train", "--steps", "3", *SMALL)
    run("sample", "--ckpt", "runs/text-baseline/last.pt", "--out", "s.txt", "--prompt", "Of Man", "--tokens", "10", "--num-samples", "2")
    for i in (1, 2):
        assert (workdir / f"s-{i}.txt").read_text(encoding="utf-8", errors="replace").startswith("Of Man")


def test_text_sample_without_out_prints_the_same_text_a_file_gets(workdir: Path):
    from wgpt.sample_files import _UNPRINTABLE  # what the terminal is spared

    run("train", "--steps", "3", *SMALL)
    args = ("sample", "--ckpt", "runs/text-baseline/last.pt", "--prompt", "Of Man", "--tokens", "12", "--top-k", "1")
    printed = run(*args, "-q").stdout
    run(*args, "--out", "s.txt", "-q")
    written = (workdir / "s.txt").read_text(encoding="utf-8", errors="replace")
    assert written.startswith("Of Man") and printed.rstrip("\n") == written.translate(_UNPRINTABLE)
    assert not list(workdir.glob("*.txt"))[1:]  # printing wrote no file of its own
    several = run(*args, "--num-samples", "2", code=2)
    assert "pass --out" in several.output


def test_a_runs_own_config_reproduces_it_and_yaml_reads_as_json(workdir: Path):
    """``--config RUN/config.json`` (data folder included) trains the same run; YAML and flags on top work too."""
    run("train", "--steps", "3", *SMALL, "--wavelet", "--seed", "7")
    first = workdir / "runs/text-haar"
    run("train", "--config", str(first / "config.json"), "--out", "again", "-q")
    losses = [json.loads(line)["val_loss"] for line in (first / "metrics.jsonl").read_text().splitlines()]
    again = [json.loads(line)["val_loss"] for line in (workdir / "again/metrics.jsonl").read_text().splitlines()]
    assert again == losses
    settings = json.loads((first / "config.json").read_text())
    (workdir / "run.yaml").write_text(
        "model:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings["model"].items())
        + "train:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in settings["train"].items())
        + f"data: {json.dumps(settings['data'])}\n"
    )  # fmt: skip
    run("train", "--config", "run.yaml", "--out", "yaml", "--steps", "6", "-q")  # a flag overrides the file
    rows = [json.loads(line) for line in (workdir / "yaml/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6] and rows[0]["val_loss"] == losses[0]  # the same run, trained further
    assert json.loads((workdir / "yaml/config.json").read_text())["model"] == settings["model"]


def test_init_from_fine_tunes_a_checkpoint_and_refuses_what_would_not_fit(workdir: Path, corpus_dir: Path):
    run("train", "--steps", "12", *SMALL)
    run("train", "--init-from", "runs/text-baseline/best.pt", "--steps", "3", "--eval-interval", "3", "--out", "ft", "-q")
    run("train", "--steps", "3", *SMALL, "--out", "fresh")
    first = {name: json.loads((workdir / name / "metrics.jsonl").read_text().splitlines()[0]) for name in ("ft", "fresh")}
    assert first["ft"]["val_loss"] < first["fresh"]["val_loss"] - 0.1  # it started from trained weights
    settings = json.loads((workdir / "ft/config.json").read_text())
    assert settings["model"]["n_layer"] == 1 and settings["model"]["d_model"] == 32  # the checkpoint's shape, not the preset's
    shape = run("train", "--init-from", "runs/text-baseline/best.pt", "--layers", "2", "--out", "x", code=2)
    assert "drop --layers" in shape.output
    run("prepare", "text", str(corpus_dir), "--tokenizer", "chars", "--out", "chars", "-q")
    other = run("train", "--init-from", "runs/text-baseline/best.pt", "--data", "chars", "--out", "y", code=2)
    assert "another tokenizer" in other.output and not (workdir / "y").exists()


def test_resume_refuses_what_would_make_another_run_and_names_other_data(workdir: Path, corpus_dir: Path):
    run("train", "--steps", "3", *SMALL)
    (workdir / "c.json").write_text('{"train": {"lr": 0.01}}')
    for args, message in [
        (["--seed", "5"], "trained with --seed 1337"),
        (["--preset", "paper"], "drop --preset"),
        (["--config", "c.json"], "drop --config"),
        (["--layers", "2"], "cannot change the model when resuming (--layers)"),
    ]:
        refused = run("train", "--resume", "--steps", "6", *args, code=2)
        assert message in refused.output and len(refused.output.strip().splitlines()) == 1
    run("prepare", "text", str(corpus_dir), "--out", "copy", "-q")  # the same tokenizer, another folder
    moved = runner.invoke(app, ["train", "--resume", "--steps", "6", "--data", "copy", "--out", "runs/text-baseline", "-q"])
    assert moved.exit_code == 0 and "resuming on copy, not the data" in moved.output


def test_resume_with_more_steps_continues_from_the_saved_step(workdir: Path, monkeypatch):
    run("train", "--steps", "3", *SMALL)
    loads = []
    real = wgpt.checkpoint.load_checkpoint
    for module in (wgpt.checkpoint, wgpt.training):  # runs.py imports it at call time, training.py at import
        monkeypatch.setattr(module, "load_checkpoint", lambda path, *a, **k: loads.append(Path(path).name) or real(path, *a, **k))
    run("train", "--steps", "6", "--resume", "-q")
    assert loads == ["last.pt"]  # read once, for the configs and for the state
    steps = [json.loads(line)["step"] for line in (workdir / "runs/text-baseline/metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "text", "no/such/folder"], "does not exist"),
        (["train", "--data", "nowhere"], "no prepared data"),
        (["train", "--preset", "huge"], "unknown preset"),
        (["train", "--steps", "0"], "--steps must be a positive integer"),
        (["train", "--modality", "video"], "unknown --modality"),
        (["eval", "--ckpt", "missing.pt"], "does not exist"),
        (["sample", "--ckpt", "missing.pt", "--out", "x.txt"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(workdir: Path, args, message):
    result = run(*args, code=2)
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "x.mid"], "writes .txt, .md files"),
        (["--out", "x.txt", "--temperature", "0"], "--temperature must be between"),
        (["--out", "x.txt", "--top-p", "1.5"], "--top-p must be in (0, 1]"),
        (["--out", "x.txt", "--top-k", "0"], "--top-k must be >= 1"),
        (["--out", "x.txt", "--prompt", "x" * 40], "longer than the model's context"),
        (["--out", "x.txt", "--seconds", "1"], "--seconds applies to audio"),
    ],
)
def test_bad_sampling_requests(workdir: Path, args, message):
    run("train", "--steps", "3", *SMALL)
    result = run("sample", "--ckpt", "runs/text-baseline/last.pt", *args, code=2)
    assert message in result.output and "Traceback" not in result.output


def test_existing_run_is_not_overwritten_silently(workdir: Path):
    run("train", "--steps", "3", *SMALL)
    result = run("train", "--steps", "3", *SMALL, code=2)
    assert "--resume" in result.output and "--overwrite" in result.output


def test_console_entry_flushes_its_output_and_keeps_the_exit_code(tmp_path: Path):
    """``wgpt`` leaves through ``os._exit``: piped (block-buffered) output must still arrive, codes unchanged."""
    env = {**os.environ, "PYTHONPATH": str(Path(wgpt.__file__).resolve().parents[1]), "COLUMNS": "1000"}

    def entry(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "wgpt", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    version = entry("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"wgpt {wgpt.__version__}")
    missing = entry("sample", "--ckpt", "nope.pt", "--out", "x.txt")
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("error:") and "nope.pt" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    usage = entry("sample", "--no-such-flag")
    assert usage.returncode == 2 and "No such option" in usage.stderr


def test_importing_wgpt_gives_the_garbage_collector_back_and_freezes_nothing():
    """The package pauses collection while torch imports (start-up time); a library must leave it as it found it."""
    code = "import gc, wgpt; print(gc.isenabled(), gc.get_freeze_count())"
    env = {**os.environ, "PYTHONPATH": str(Path(wgpt.__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["True", "0"], result.stderr


def test_paths_with_brackets_are_printed_as_they_are(tmp_path: Path, corpus_dir: Path, monkeypatch):
    """Rich would read '[/]' or '[bold]' in a path as markup: crash, or print another path."""
    monkeypatch.chdir(tmp_path)
    missing = run("sample", "--ckpt", "runs[/]x.pt", "--out", "x.txt", code=2)
    assert "checkpoint runs[/]x.pt does not exist" in missing.output
    (corpus_dir / "empty[bold].txt").write_text("", encoding="utf-8")
    prepared = runner.invoke(app, ["prepare", "text", str(corpus_dir), "--out", "data[red]", "-q"], env={"COLUMNS": "300"})
    assert prepared.exit_code == 0, prepared.output
    assert "empty[bold].txt: empty file" in prepared.output and "data[red]" in prepared.output


def test_a_corpus_prepared_in_parts_trains_as_one(tmp_path: Path, milton: str, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, text in (("books", milton[:50_000]), ("more", milton[50_000:100_000])):
        (tmp_path / name).mkdir()
        for i in range(2):
            (tmp_path / name / f"{i}.txt").write_text(text[i * 25_000 : (i + 1) * 25_000], encoding="utf-8")
    run("prepare", "text", "books", "--tokenizer", "bpe", "--vocab-size", "300", "-o", "data/books", "-q")
    refused = run("train", "--data", "data/books", "--data", str(Path(wgpt.__file__).parent / "nowhere"), *SMALL, code=2)
    assert "no prepared data" in refused.output
    run("prepare", "text", "more", "--tokenizer", "bpe", "-o", "data/other", "-q")  # learns its own BPE
    mixed = run("train", "--data", "data/books", "--data", "data/other", "--steps", "3", *SMALL, code=2)
    assert "--tokenizer-from data/books" in mixed.output
    said = run("prepare", "text", "more", "--tokenizer-from", "data/books", "-o", "data/more", "-q").output
    assert (
        json.loads(Path("data/more/meta.json").read_text())["modality"] == json.loads(Path("data/books/meta.json").read_text())["modality"]
    )
    assert "files used" in said
    run("train", "--data", "data/books", "--data", "data/more", "--data-weights", "2,1", "--steps", "3", *SMALL)
    assert Path("runs/books+more-baseline/best.pt").is_file()
    evaluated = json.loads(run("eval", "--ckpt", "runs/books+more-baseline/best.pt", "--samples", "0", "--json").output)
    assert evaluated["bits_per_byte"] > 0
    wrong = run("prepare", "midi", "books", "--tokenizer-from", "data/books", "-q", code=2)
    assert "holds text data, not midi" in wrong.output


def test_tokenizer_from_carries_the_audio_rate_and_bits(tmp_path: Path):
    speech = Path(__file__).parent / "assets" / "audio" / "speech.flac"
    run("prepare", "audio", str(speech), "--sample-rate", "8000", "--bits", "6", "-o", str(tmp_path / "a"), "-q")
    run("prepare", "audio", str(speech), "--tokenizer-from", str(tmp_path / "a"), "-o", str(tmp_path / "b"), "-q")
    spec = json.loads((tmp_path / "b" / "meta.json").read_text())["modality"]
    assert (spec["sample_rate"], spec["bits"]) == (8000, 6)
