"""Which device a command runs on, and at which precision: one place for every command.

``--device`` takes auto, cpu, cuda, cuda:N or mps (``wgpt.config.check_device_name``). One process
resolves ``auto`` to CUDA, else MPS, else the CPU; a torchrun process takes ``cuda:LOCAL_RANK``
or the CPU. On CUDA, training and evaluation autocast to bf16, or fp16 where the card has no bf16.
"""

from __future__ import annotations

import torch

from wgpt.config import check_device_name
from wgpt.errors import WgptError


def pick_device(name: str) -> torch.device:
    """The device of a single process for ``--device name``."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    if name.startswith("cuda"):
        _require_cuda()
    if name == "mps" and not torch.backends.mps.is_available():
        raise WgptError("--device mps was asked for but MPS is not available: use --device cpu")
    return torch.device(name)


def process_device(name: str, local_rank: int) -> torch.device:
    """The device of one torchrun process: ``cuda:LOCAL_RANK``, or the CPU."""
    if name == "mps" or name.startswith("cuda:"):
        raise WgptError(
            f"--device {name} cannot be used under torchrun: pass --device cuda (each process takes cuda:LOCAL_RANK) or --device cpu"
        )
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    _require_cuda()
    if local_rank >= torch.cuda.device_count():
        raise WgptError(
            f"process LOCAL_RANK={local_rank} has no GPU ({torch.cuda.device_count()} visible): lower --nproc_per_node to the GPU count"
        )
    return torch.device("cuda", local_rank)


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        raise WgptError("--device cuda was asked for but CUDA is not available: use --device cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU has it, fp16 (with a gradient scaler) where it does not, fp32 on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
