"""PyTorch's own distributed engine: DDP under ``torchrun``, a no-op in a single process.

``torchrun --nproc_per_node=N -m wgpt train ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; this module
turns them into a process group (gloo on CPU, NCCL on GPUs) and gives the training loop the few
collective operations it needs, so the loop reads the same with one process or many.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import distributed as tdist
from torch import nn

# Dense bf16 peak of common cards, for the MFU estimate (FLOP/s).
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12, "4090": 165e12}


@dataclass
class DistContext:
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

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def close(self) -> None:
        if self.active and tdist.is_initialized():
            tdist.destroy_process_group()


def setup(device_name: str) -> DistContext:
    """Join the process group torchrun describes, or return a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistContext(rank, world, device)


def mfu(flops_per_s: float, device: torch.device) -> float | None:
    """Model FLOPs utilisation of one device, where its peak is known."""
    name = torch.cuda.get_device_name(device)
    peak: Any = next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return None if peak is None else flops_per_s / peak
