"""How much memory a job may take, checked before allocating: a size typed by mistake is one line,
not a process the kernel kills or a machine that swaps.

``available_bytes`` is the least of the memory the kernel reports available, the address-space and
data limits of this process (``ulimit -v``/``-d``) and the cgroup's limit (containers, Slurm). The
checks compare lower bounds of what a job needs with it, so they refuse only what cannot fit.
"""

from __future__ import annotations

import resource
from pathlib import Path

from wgpt.config import ModelConfig
from wgpt.errors import WgptError

GIB = 1 << 30


def available_bytes(device: str = "cpu") -> int | None:
    """Memory this process can still allocate (on ``device``: a GPU's free memory), or None where nothing says."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.mem_get_info(torch.device(device))[0]
    limits = [_meminfo_available(), _rlimit(resource.RLIMIT_AS), _rlimit(resource.RLIMIT_DATA), _cgroup_room()]
    known = [v for v in limits if v is not None]
    return min(known) if known else None


def check_fits(needed: int, what: str, advice: str, device: str = "cpu") -> None:
    """Refuse ``what`` in one line when its lower-bound size ``needed`` exceeds the memory available."""
    room = available_bytes(device)
    if room is not None and needed > room:
        where = "" if device == "cpu" else f" on {device}"
        raise WgptError(f"{what} needs at least {_size(needed)} of memory{where}, more than the {_size(room)} available: {advice}")


def training_bytes(cfg: ModelConfig, micro_batch: int) -> int:
    """A lower bound of training memory: fp32 weights, gradients and two AdamW moments (16 bytes a
    parameter), the residual stream each block keeps for backward, and the logits with their gradient."""
    tokens = micro_batch * cfg.context
    return 16 * model_params(cfg) + 4 * tokens * (cfg.n_layer * cfg.d_model + 2 * cfg.vocab_size)


def model_params(cfg: ModelConfig) -> int:
    """Parameters of a GPT of this shape, to within its norms and biases (the head is tied)."""
    positions = cfg.context if cfg.position == "learned" else 0
    return (cfg.vocab_size + positions) * cfg.d_model + cfg.n_layer * (4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.d_ff)


def _size(n: int) -> str:
    return f"{n / GIB:,.1f} GiB" if n >= GIB / 10 else f"{n / (1 << 20):,.0f} MiB"


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rlimit(kind: int) -> int | None:
    soft, _hard = resource.getrlimit(kind)
    if soft == resource.RLIM_INFINITY:
        return None
    if kind == resource.RLIMIT_AS:  # the limit covers what is mapped already (torch's own libraries: ~1-2 GiB)
        return max(0, soft - _mapped_bytes())
    return soft


def _mapped_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def _cgroup_room() -> int | None:
    """The memory limit less the usage of this process's cgroup (v2 ``memory.max``, or v1 ``memory.limit_in_bytes``)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _id, controllers, group = line.split(":", 2)
        if controllers == "":
            files = Path("/sys/fs/cgroup") / group.lstrip("/"), "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            files = Path("/sys/fs/cgroup/memory") / group.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes"
        else:
            continue
        try:
            limit = (files[0] / files[1]).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:  # v1 writes "no limit" as a huge number
                return max(0, int(limit) - int((files[0] / files[2]).read_text()))
        except (OSError, ValueError):
            continue
    return None
