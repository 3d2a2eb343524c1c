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


def test_streamed_text_is_the_written_text(tmp_path: Path):
    """What a terminal sees while sampling: the prompt, every new character once, then a line break."""
    import io

    import torch

    from wgpt import GPT, SampleRequest, sample_to_files
    from wgpt.checkpoint import save_checkpoint

    torch.manual_seed(0)
    modality = TextModality("bytes")
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, GPT(ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=16)), modality.spec())
    for prompt in ("Ève dit: « ", "\x1b[2J", None):  # multi-byte characters; a terminal escape; no prompt at all
        shown = io.StringIO()
        (path,) = sample_to_files(SampleRequest(ckpt=ckpt, out=tmp_path / "s.txt", prompt=prompt, tokens=60, seed=3), stream_to=shown)
        written = path.read_text(encoding="utf-8")
        assert written.startswith(prompt or "") and len(written.encode()) == len((prompt or "").encode()) + 60
        # The terminal sees the same text, control characters (but tab and line breaks) made harmless.
        visible = "".join("\ufffd" if (ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) < 0xA0 else c for c in written)
        assert shown.getvalue() == (visible if visible.endswith("\n") else visible + "\n")
        assert "\x1b" not in shown.getvalue()


def test_generate_with_its_modality_gives_what_sample_writes(tmp_path: Path):
    """One behaviour: the API's generate + decode and `wgpt sample` give the same valid UTF-8 for a seed."""
    import torch

    from wgpt import GPT, SampleRequest, sample_to_files
    from wgpt.checkpoint import save_checkpoint

    torch.manual_seed(1)
    modality = TextModality("bytes")
    model = GPT(ModelConfig(n_layer=1, n_head=2, d_model=32, d_ff=64, context=16))
    save_checkpoint(tmp_path / "m.pt", model, modality.spec())
    (path,) = sample_to_files(SampleRequest(ckpt=tmp_path / "m.pt", out=tmp_path / "s.txt", prompt="Ève", tokens=80, seed=4))
    ids = generate(model, modality.tokenize("Ève")[0].tolist(), 80, seed=4, modality=modality)[0]
    assert "Ève" + modality.decode(ids) == path.read_text(encoding="utf-8")
    assert "\ufffd" not in modality.decode(ids) and len(modality.decode(ids).encode()) == 80
    unruled = generate(model, modality.tokenize("Ève")[0].tolist(), 80, seed=4)[0]
    assert bytes(unruled).decode("utf-8", "replace") != modality.decode(ids)  # an untrained model breaks UTF-8 unruled
