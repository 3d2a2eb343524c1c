"""Processes and devices: DDP under ``torchrun`` (a no-op in one process), and the MFU estimate.

``torchrun --nproc_per_node=N -m wgpt train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; this module
turns them into a process group (gloo on CPU, NCCL on GPUs) and gives the training loop the few
collective operations it needs, so the loop reads the same with one process or many. It also
holds the model-FLOPs count of a training token and the peak throughput of common cards, for the
MFU estimate of a GPU run (PaLM, Chowdhery et al. 2022, appendix B).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

import torch
from torch import distributed as tdist
from torch import nn

from wgpt.config import ModelConfig
from wgpt.devices import process_device

# Dense (not 2:4 sparse) bf16 tensor-core peaks in FLOP/s, from NVIDIA's data sheets; the first
# pattern found in ``torch.cuda.get_device_name`` wins, so the specific ones come first.
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    (r"H100.*PCIe", 756e12),
    (r"H100.*NVL", 835e12),
    (r"H100|H200", 989e12),  # GH200 too
    (r"A100", 312e12),
    (r"L40S", 362e12),
    (r"\bL4\b", 121e12),
    (r"\bA10\b", 125e12),
    (r"4090", 165e12),
)


@dataclass
class DistContext:
    """This process's place in the job; every method is a no-op when it runs alone."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def no_sync(self, model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.active and not sync:
            return model.no_sync()
        return contextlib.nullcontext()

    def mean(self, value: torch.Tensor | float) -> float:
        """The mean of ``value`` over processes (each process's share of the batch is equal)."""
        t = torch.as_tensor(value, dtype=torch.float32, device=self.device).detach().clone()
        if self.active:
            tdist.all_reduce(t)
            t /= self.world_size
        return t.item()

    def any(self, flag: bool) -> bool:
        if not self.active:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        tdist.all_reduce(t)
        return bool(t.item() > 0)

    def from_main(self, value: float) -> float:
        """Rank 0's ``value`` on every process (only rank 0 evaluates)."""
        if not self.active:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        tdist.broadcast(t, src=0)
        return t.item()

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def close(self) -> None:
        if self.active and tdist.is_initialized():
            tdist.destroy_process_group()


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0: the one process that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def setup(device_name: str) -> DistContext:
    """Join the process group torchrun describes, or return a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = process_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, device)


def flops_per_token(cfg: ModelConfig) -> int:
    """Model FLOPs of one training token (forward and backward), as PaLM's MFU counts them.

    Six per weight of every matmul (2 forward, 4 backward; embedding lookups are not matmuls, the
    tied output head is) plus ``12 * n_layer * d_model * context`` for attention scores and their
    weighted sum, counted in full even though causal kernels skip half. The wavelet's averages
    are O(C) per token and left out, so every variant of one shape has the same count.
    """
    per_layer = 4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.d_ff  # qkv, proj, two MLP matrices
    matmul_weights = cfg.n_layer * per_layer + cfg.vocab_size * cfg.d_model
    return 6 * matmul_weights + 12 * cfg.n_layer * cfg.d_model * cfg.context


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a card named like ``torch.cuda.get_device_name``; None if unknown."""
    return next((peak for pattern, peak in PEAK_FLOPS if re.search(pattern, device_name)), None)


def mfu(flops_per_s: float, device: torch.device) -> float | None:
    """Model FLOPs utilisation of one device, where its peak is known."""
    if device.type != "cuda":
        return None
    peak = peak_flops(torch.cuda.get_device_name(device))
    return None if peak is None else flops_per_s / peak
