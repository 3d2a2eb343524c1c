"""wgpt: pre-train and sample WaveletGPT models on text, MIDI and audio.

The functions the command line calls, usable from Python::

    from wgpt import prepare, train, evaluate, generate

They are imported on first use, so ``wgpt prepare`` and ``import wgpt.shards`` never load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> the module that defines it
_EXPORTS = {
    "GPT": "wgpt.model",
    "ModelConfig": "wgpt.config",
    "SampleRequest": "wgpt.sample_files",
    "TrainConfig": "wgpt.config",
    "WgptError": "wgpt.errors",
    "bench": "wgpt.benchmark",
    "evaluate": "wgpt.evaluation",
    "generate": "wgpt.generation",
    "load_pretrained": "wgpt.export",
    "modality_class": "wgpt.modalities",
    "modality_from_spec": "wgpt.modalities",
    "prepare": "wgpt.preparation",
    "preset": "wgpt.config",
    "sample_to_files": "wgpt.sample_files",
    "train": "wgpt.training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'wgpt' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # rebinds over a submodule of the same name (wgpt.training, wgpt.preparation, ...)
    return value
