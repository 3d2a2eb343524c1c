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
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
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
    assert cli.invoke(app, ["export", str(run / "run"), "--out", str(run / "cli")]).exit_code == 0
    texts = []
    for source in (run / "cli", run / "run/best.pt"):
        out = run / f"s-{source.name}.txt"
        assert cli.invoke(app, ["sample", "--ckpt", str(source), "--out", str(out), "--tokens", "20", "-q"]).exit_code == 0
        texts.append(out.read_text(encoding="utf-8"))
    assert texts[0] == texts[1]
    losses = [json.loads(cli.invoke(app, ["eval", "--ckpt", str(s), "--json"]).stdout)["loss"] for s in (run / "cli", run / "run/best.pt")]
    assert losses[0] == losses[1]
