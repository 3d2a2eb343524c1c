"""The Python API: the functions the CLI calls, used without it."""

from __future__ import annotations

from pathlib import Path

from wgpt import ModelConfig, TrainConfig, evaluate, generate, prepare, train
from wgpt.checkpoint import load_checkpoint, model_from_checkpoint
from wgpt.modalities.text import TextModality


def test_prepare_train_evaluate_generate_from_python(corpus_dir: Path, tmp_path: Path):
    modality = TextModality("chars")
    report = prepare(modality, [corpus_dir], tmp_path / "data", workers=1, show_progress=False)
    assert report.vocab_size == modality.vocab_size
    cfg = ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=32, wavelet="haar")
    result = train(
        tmp_path / "data", tmp_path / "run", cfg, TrainConfig(steps=4, batch_size=4, eval_interval=2, device="cpu"), show_progress=False
    )
    metrics = evaluate(tmp_path / "run" / "best.pt", samples=0, device="cpu")
    assert metrics["params"] == result.params and metrics["wavelet"] == "haar"
    assert abs(metrics["bits_per_char"] - metrics["bits_per_token"]) < 1e-9  # chars: one token per character
    model = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "best.pt"))
    ids = generate(model, modality.tokenize("Of Man")[0].tolist(), 20, seed=0)[0]
    assert len(ids) == 20 and len(modality.decode(ids)) == 20
