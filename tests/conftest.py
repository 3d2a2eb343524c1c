"""Shared fixtures: a small real text corpus and tiny configs that train in seconds."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton's interpreter runs the wavelet kernels on CPU tensors (tests/test_wavelet_kernels.py).
    # Triton reads this at its first import and again during launches, so it is set here, before
    # any test module is imported: some import Triton indirectly (torch.utils.flop_counter does).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from wgpt.config import ModelConfig, TrainConfig

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def milton() -> str:
    return (resources.files("wgpt") / "data" / "milton.txt").read_text(encoding="utf-8")


@pytest.fixture
def corpus_dir(tmp_path: Path, milton: str) -> Path:
    """Three real text files (parts of Paradise Lost) in a folder."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        (folder / f"part{i}.txt").write_text(milton[i * 20_000 : (i + 1) * 20_000], encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, milton: str) -> Path:
    """Three parts of Paradise Lost prepared as bytes, once per module; read-only for its tests
    (test_training.py prepares its own per test)."""
    from wgpt.modalities.text import TextModality
    from wgpt.preparation import prepare

    src = tmp_path_factory.mktemp("corpus")
    for i in range(3):
        (src / f"part{i}.txt").write_text(milton[i * 20_000 : (i + 1) * 20_000], encoding="utf-8")
    out = tmp_path_factory.mktemp("data")
    prepare(TextModality(), [src], out, workers=1, show_progress=False)
    return out


@pytest.fixture
def tiny_model() -> ModelConfig:
    return ModelConfig(n_layer=2, n_head=2, d_model=32, d_ff=64, context=32)


@pytest.fixture
def tiny_train() -> TrainConfig:
    return TrainConfig(steps=12, batch_size=4, lr=3e-3, warmup=2, eval_interval=4, eval_batches=2, device="cpu")
