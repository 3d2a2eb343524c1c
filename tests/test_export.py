from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wgpt import load_pretrained
from wgpt.checkpoint import load_checkpoint, model_from_checkpoint
from wgpt.errors import WgptError
from wgpt.export import export
from wgpt.generation import generate
from wgpt.modalities.text import TextModality
from wgpt.preparation import prepare
from wgpt.training import train


@pytest.fixture(scope="module")
def run(tmp_path_factory, milton: str) -> Path:
    root = tmp_path_factory.mktemp("export")
    (root / "corpus.txt").write_text(milton[:60_000], encoding="utf-8")
    prepare(TextModality("chars"), [root / "corpus.txt"], root / "data", show_progress=False)
    from wgpt.config import ModelConfig, TrainConfig

    model = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32, wavelet="haar")
    train(root / "data", root / "run", model, TrainConfig(steps=4, batch_size=4, eval_interval=2, eval_batches=2), show_progress=False)
    return root


def test_an_export_gives_the_checkpoints_logits_and_samples(run: Path):
    from safetensors.torch import load_file

    folder = export(run / "run", run / "exported")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors", "tokenizer.json"]
    weights = load_file(str(folder / "model.safetensors"))  # safetensors' own loader, no wgpt code
    ckpt = load_checkpoint(run / "run/best.pt")
    assert set(weights) == set(ckpt["model"]) - {"head.weight"}  # tied to the embedding: stored once
    model, modality = load_pretrained(folder)
    original = model_from_checkpoint(ckpt).eval()
    idx = torch.randint(0, model.cfg.vocab_size, (2, 32))
    with torch.no_grad():
        torch.testing.assert_close(model(idx)[0], original(idx)[0], rtol=0, atol=0)
    prompt = modality.encode_prompt("Of Man", None)
    assert generate(model, prompt, 30, seed=3) == generate(original, prompt, 30, seed=3)
    assert "best validation loss" in (folder / "README.md").read_text().lower()


def test_a_damaged_export_is_refused_in_one_line(run: Path):
    folder = export(run / "run", run / "damaged")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(WgptError, match="not a readable wgpt export"):
        load_checkpoint(folder)


def test_cli_export_then_sample_and_eval_read_the_folder(run: Path):
    import json

    from typer.testing import CliRunner

    from wgpt.cli import app

    cli = CliRunner()
    said = cli.invoke(app, ["export", str(run / "run"), "--out", str(run / "cli")])
    assert said.exit_code == 0 and "model.safetensors, config.json, tokenizer.json, README.md" in said.output
    assert f"next: wgpt sample --ckpt {run / 'cli'} --out sample.txt" in said.output
    texts = []
    for source in (run / "cli", run / "run/best.pt"):
        out = run / f"s-{source.name}.txt"
        assert cli.invoke(app, ["sample", "--ckpt", str(source), "--out", str(out), "--tokens", "20", "-q"]).exit_code == 0
        texts.append(out.read_text(encoding="utf-8"))
    assert texts[0] == texts[1]
    losses = [json.loads(cli.invoke(app, ["eval", "--ckpt", str(s), "--json"]).stdout)["loss"] for s in (run / "cli", run / "run/best.pt")]
    assert losses[0] == losses[1]


def test_a_chars_export_holds_a_tokenizer_json_that_gives_wgpts_ids(run: Path, milton: str):
    import json

    from tokenizers import Tokenizer

    folder = export(run / "run", run / "tokenizer")
    _, modality = load_pretrained(folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))  # Hugging Face's loader, no wgpt code
    probe = milton[60_000:70_000] + "\r\n\t  \u2028é中😀\x00"  # line breaks, and characters the corpus never had
    ids = tok.encode(probe).ids
    assert ids == modality.tokenize(probe)[0].tolist() and ids[-4:] == [0, 0, 0, 0]  # unseen: id 0, as wgpt
    assert tok.decode(ids) == modality.decode(ids)
    settings = json.loads((folder / "config.json").read_text())
    assert settings["tokenizer_files"] == ["tokenizer.json"] and "id 0" in settings["ids"]
    assert settings["ids"] in (folder / "README.md").read_text()


def test_bpe_tokenizer_json_gives_the_ids_wgpt_encodes_with(milton: str, tmp_path: Path):
    from tokenizers import Tokenizer

    modality = TextModality("bpe", vocab_size=400)
    modality.fit([milton[:100_000]])
    (tmp_path / "tokenizer.json").write_text(modality.tokenizer_files()["tokenizer.json"], encoding="utf-8")
    probe = milton[200_000:210_000]
    ids = Tokenizer.from_file(str(tmp_path / "tokenizer.json")).encode(probe).ids
    assert ids == modality.tokenize(probe)[0].tolist() and len(ids) < 0.7 * len(probe)  # merges applied


def test_bytes_and_audio_say_what_their_ids_are_and_need_no_tokenizer():
    from wgpt.modalities.audio import AudioModality

    assert TextModality("bytes").tokenizer_files() == {} and "UTF-8 bytes" in TextModality("bytes").describe_ids()
    audio = AudioModality(sample_rate=8000, bits=6)
    assert audio.tokenizer_files() == {}
    assert all(s in audio.describe_ids() for s in ("8000 Hz", "6-bit mu-law", "ids 0-63"))


@pytest.mark.parametrize("bpe", [False, True])
def test_midi_tokenizer_json_loads_in_miditok_and_encodes_as_wgpt(bpe: bool, tmp_path: Path):
    import miditok

    from wgpt.modalities.base import Piece
    from wgpt.modalities.midi import MidiModality

    files = sorted(Path(__file__).parent.joinpath("assets/midi/good").glob("*.mid"))
    modality = MidiModality(vocab_size=600 if bpe else None)
    if bpe:
        modality.fit([modality.fit_sample(Piece(f, 0, f.stat().st_size)) for f in files], len(files))
    (tmp_path / "tokenizer.json").write_text(modality.tokenizer_files()["tokenizer.json"], encoding="utf-8")
    tok = miditok.REMI(params=tmp_path / "tokenizer.json")  # MidiTok's own loader
    assert len(tok) == modality.vocab_size and tok.is_trained == bpe
    for f in files:
        assert tok.encode(f).ids == modality.encode_file(f)


def test_exporting_a_bytes_model_over_a_chars_export_removes_its_stale_tokenizer(run: Path):
    """An export into a used folder must not leave the earlier model's tokenizer.json to be loaded with the new weights."""
    from wgpt.config import ModelConfig, TrainConfig

    prepare(TextModality("bytes"), [run / "corpus.txt"], run / "bytes-data", show_progress=False)
    model = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32)
    train(
        run / "bytes-data",
        run / "bytes-run",
        model,
        TrainConfig(steps=2, batch_size=4, eval_interval=2, eval_batches=1),
        show_progress=False,
    )
    folder = export(run / "run", run / "reused")
    assert (folder / "tokenizer.json").is_file()
    export(run / "bytes-run", folder)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    _, modality = load_pretrained(folder)
    assert modality.decode(list(b"Of Man")) == "Of Man"  # bytes again, not the chars table
