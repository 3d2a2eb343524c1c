"""wgpt: pre-train and sample WaveletGPT models on text, MIDI and audio.

The functions the command line calls, usable from Python::

    from wgpt import prepare, train, evaluate, generate
"""

from __future__ import annotations

__version__ = "0.1.0"

from wgpt.bench import bench
from wgpt.config import ModelConfig, TrainConfig, preset
from wgpt.errors import WgptError
from wgpt.evaluate import evaluate
from wgpt.generate import generate
from wgpt.modalities import modality_class, modality_from_spec
from wgpt.model import GPT
from wgpt.prepare import prepare
from wgpt.sampling import SampleRequest, sample_to_files
from wgpt.train import train

__all__ = [
    "GPT",
    "ModelConfig",
    "SampleRequest",
    "TrainConfig",
    "WgptError",
    "bench",
    "evaluate",
    "generate",
    "modality_class",
    "modality_from_spec",
    "prepare",
    "preset",
    "sample_to_files",
    "train",
]
