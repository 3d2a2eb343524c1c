"""wgpt: pre-train and sample WaveletGPT models on text, MIDI and audio.

The functions the command line calls, usable from Python::

    from wgpt import prepare, train, evaluate, generate
"""

from __future__ import annotations

__version__ = "0.1.0"

import gc as _gc

# Importing torch makes hundreds of thousands of objects, and the cyclic garbage collector scans
# them over and over while it does: 0.2 s of a 1.15 s start on a 2-core machine. Nothing made
# while importing is garbage, so collection waits until the imports are done.
_collecting = _gc.isenabled()
_gc.disable()
try:
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
finally:
    if _collecting:
        _gc.enable()

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
