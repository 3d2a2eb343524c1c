"""GPU check: tokens/s and MFU of baseline vs wavelet, and a few CUDA steps against the CPU.

0. Kernels (CUDA only): one WaveletMix pass, forward and backward, through the Triton kernels and
   through the torch path on the same inputs, at the ``paper`` and ``gpt2`` widths and contexts,
   fixed and learnable, fp32 and bf16: the largest difference of the output and of each gradient
   (relative to that tensor's largest magnitude) must be within ``KERNEL_TOL``, and each path's
   pass is timed alone.
1. Parity: for each variant, the same initial weights and batches (real text, the bundled corpus)
   train a few steps on the CPU and on the device, both in fp32 (TF32 off), with the training
   loop's AdamW (fused on CUDA) and gradient clipping; the per-step losses must agree within
   ``PARITY_TOL``. This covers the wavelet's hand-written backward on CUDA.
2. Throughput: full training steps (bf16 autocast, TF32 matmuls, fused AdamW, clipping, as
   ``wgpt train`` runs them) of the ``none``, ``haar`` and ``learnable`` variants at the ``paper``
   and ``gpt2`` presets, timed in interleaved rounds so that noise hits every variant alike.
   MFU counts ``wgpt.distributed.flops_per_token`` against the card's dense bf16 peak. Also
   reports whether SDPA's flash kernel accepts the model's attention.
3. CUDA graphs (``--cuda-graphs``): the same training steps eager and under
   ``torch.compile(mode="reduce-overhead")``, which captures them as CUDA graphs (``wgpt train
   --compile --compile-mode reduce-overhead``), interleaved, at the ``--graph-presets``: tokens/s
   of each and their ratio. Small models are bound by kernel launches, which a replay removes.

On CUDA the wavelet runs the Triton kernels (``wgpt.wavelet.KERNEL``, ``auto``), so parts 1 and 2
measure them; ``--kernel torch`` measures the torch path instead, for comparison.

    python benchmarks/gpu_check.py --json-out gpu_check.json      # one H100: meant to take under 5 minutes
    python benchmarks/gpu_check.py --compile                      # + torch.compile, about 1 min per model
    python benchmarks/gpu_check.py --kernel torch                 # the wavelet's torch path on the GPU
    python benchmarks/gpu_check.py --presets none --cuda-graphs   # only part 3, paper preset
    python benchmarks/gpu_check.py --device cpu --quick           # the same code, tiny, on a CPU

Exits 1 when the kernel or the parity check fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from wgpt import wavelet
from wgpt.batches import get_batch, train_offsets
from wgpt.config import COMPILE_MODES, ModelConfig, TrainConfig, preset
from wgpt.devices import autocast_dtype
from wgpt.distributed import flops_per_token, mfu
from wgpt.model import GPT
from wgpt.training import make_optimizer
from wgpt.wavelet import WaveletMix

# Vocabulary per preset: bytes for the paper's model, GPT-2's BPE (50,257 padded to a multiple of
# 64) for the GPT-2-small shape, which then has GPT-2 small's 124M parameters.
VOCAB = {"paper": 256, "gpt2": 50304}
# Both parity runs are fp32, so they differ only in the order of additions (cuBLAS vs MKL blocking,
# atomics in the embedding backward, fused vs loop AdamW). On a CPU, the paper model's 6 steps in
# fp32 land within 1.6e-5 nats of the same steps in fp64 (AdamW at lr 1e-3 without warm-up amplifies
# rounding step by step), so two correct fp32 runs should agree to a few 1e-5. 2e-4 leaves room for
# that, and is below what a real fault gives: scaling the Haar backward by 1.01 moved the losses
# by up to 1.7e-3, and bf16 leaking into the fp32 run moved them by 0.13 by step 5.
PARITY_TOL = 2e-4
# Kernel against torch path, relative to each tensor's largest magnitude. In fp32 both differ from
# fp64 by rounding in their prefix sums, a few 1e-7 relative at T = 100 on a CPU (the tests hold
# 1e-5); bf16 outputs and input gradients are rounded once from fp32 sums, so they may differ
# by one bf16 step, 2**-8 relative, near the largest values.
KERNEL_TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2}
# (batch, context, width) of one wavelet layer per preset: the paper model's and GPT-2 small's.
KERNEL_SHAPES = {"paper": (32, 512, 128), "gpt2": (32, 1024, 768)}


def corpus() -> np.ndarray:
    """The bundled text as byte ids: real data for the parity steps, no preparation needed."""
    return np.frombuffer((resources.files("wgpt") / "data" / "milton.txt").read_bytes(), dtype=np.uint8)


def shapes(names: list[str], quick: bool) -> dict[str, tuple[ModelConfig, TrainConfig]]:
    """Model and training config per preset; ``quick`` keeps the width but cuts depth, context and vocabulary."""
    out = {}
    for name in names:
        model_cfg, train_cfg = preset(name)
        model_cfg = replace(model_cfg, vocab_size=VOCAB.get(name, 256))
        if quick:
            model_cfg, train_cfg = replace(model_cfg, n_layer=1, context=64, vocab_size=256), replace(train_cfg, batch_size=4)
        out[name] = (model_cfg, train_cfg)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainee:
    """One model with its optimiser; ``step`` is one training step as ``wgpt.training.Runner`` takes it."""

    def __init__(
        self, cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device, amp: torch.dtype | None, compile: bool, mode: str = "default"
    ) -> None:
        torch.manual_seed(0)
        self.model = GPT(cfg).to(device)
        self.forward: Callable = torch.compile(self.model, mode=mode) if compile else self.model
        self.graphed = compile and mode != "default" and device.type == "cuda"  # a new replay per step, as wgpt train
        self.optimizer = make_optimizer(self.model, train_cfg, device)
        self.device, self.amp, self.grad_clip = device, amp, train_cfg.grad_clip

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.graphed:
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext():
            return self.forward(x, y)[1]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.loss(x, y)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def batch(data: np.ndarray, cfg: ModelConfig, size: int, step: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = train_offsets(len(data), cfg.context, size, seed=0, step=step)
    return tuple(t.to(device) for t in get_batch(data, offsets, cfg.context))


# -- 0. kernels ---------------------------------------------------------------------------------
def wavelet_pass(layer: WaveletMix, h: torch.Tensor, grad: torch.Tensor, kernel: str) -> Callable[[], list[torch.Tensor]]:
    """One forward and backward of ``layer`` through ``kernel``: the output and the gradients of ``h`` and of the mixture."""

    def run() -> list[torch.Tensor]:
        wavelet.KERNEL = kernel
        x = h.detach().requires_grad_()
        layer.zero_grad(set_to_none=True)
        out = layer(x)
        out.backward(grad)
        return [out.detach(), x.grad] + ([] if layer.mix is None else [layer.mix.grad])

    return run


def kernel_check(device: torch.device, rounds: int) -> list[dict[str, Any]]:
    """Kernels against the torch path on ``device``: largest relative differences, and the median time of each path's pass."""
    kept, rows = wavelet.KERNEL, []
    try:
        for name, (bsz, n, width) in KERNEL_SHAPES.items():
            for learnable, dtype in [(False, torch.float32), (False, torch.bfloat16), (True, torch.float32), (True, torch.bfloat16)]:
                torch.manual_seed(0)
                layer = WaveletMix(width, n, learnable).to(device)
                if learnable:  # off the one-hot start, so every scale carries weight
                    with torch.no_grad():
                        layer.mix.add_(0.3 * torch.randn_like(layer.mix))
                h, grad = (torch.randn(bsz, n, width, device=device, dtype=dtype) for _ in range(2))
                passes = {k: wavelet_pass(layer, h, grad, k) for k in ("torch", "triton")}
                want, got = passes["torch"](), passes["triton"]()
                diff = max(
                    ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp(min=1)).item()
                    for a, b in zip(got, want, strict=True)
                )
                ms = {}
                for k, run in passes.items():
                    for _ in range(3):
                        run()
                    ms[k] = statistics.median(timed(run, device) for _ in range(rounds)) * 1e3
                rows.append(
                    {
                        "shape": name, "variant": "learnable" if learnable else "haar", "dtype": str(dtype).removeprefix("torch."),
                        "batch": bsz, "context": n, "width": width, "max_rel_diff": diff, "tolerance": KERNEL_TOL[dtype],
                        "ok": diff <= KERNEL_TOL[dtype], "torch_ms": ms["torch"], "triton_ms": ms["triton"],
                    }
                )  # fmt: skip
    finally:
        wavelet.KERNEL = kept
    return rows


def kernel_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | variant | dtype | batch x context x width | max rel diff | torch ms | triton ms | triton / torch |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['variant']} | {r['dtype']} | {r['batch']} x {r['context']} x {r['width']} | {r['max_rel_diff']:.1e}"
            f"{'' if r['ok'] else ' FAILED'} | {r['torch_ms']:.3f} | {r['triton_ms']:.3f} | {r['triton_ms'] / r['torch_ms']:.2f} |"
        )
    return "\n".join(lines)


# -- 1. parity ----------------------------------------------------------------------------------
def fp32_losses(cfg: ModelConfig, train_cfg: TrainConfig, init: dict, device: torch.device, steps: int, data: np.ndarray) -> list[float]:
    run = Trainee(cfg, train_cfg, device, amp=None, compile=False)
    run.model.load_state_dict(init)
    return [float(run.step(*batch(data, cfg, train_cfg.batch_size, s, device))) for s in range(steps)]


def parity(cfg: ModelConfig, train_cfg: TrainConfig, device: torch.device, steps: int) -> dict[str, Any]:
    """Per-step losses of the same fp32 training on the CPU and on ``device``."""
    data, precision = corpus(), torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # no TF32: both sides in true fp32
    try:
        torch.manual_seed(0)
        init = GPT(cfg).state_dict()
        cpu = fp32_losses(cfg, train_cfg, init, torch.device("cpu"), steps, data)
        dev = fp32_losses(cfg, train_cfg, init, device, steps, data)
    finally:
        torch.set_float32_matmul_precision(precision)
    diff = max(abs(a - b) for a, b in zip(cpu, dev, strict=True))
    return {"cpu": cpu, "device": dev, "max_abs_diff": diff, "tolerance": PARITY_TOL, "ok": diff <= PARITY_TOL}


# -- 2. throughput ------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def flash_accepts(model: GPT, amp: torch.dtype | None, x: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether SDPA's flash kernel runs this model's attention (it raises where it cannot)."""
    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.autocast(x.device.type, dtype=amp) if amp else nullcontext():
            _, loss = model(x[:2], y[:2])
        loss.backward()  # the backward kernel is the one the forward chose
    except RuntimeError:
        return False
    finally:
        model.zero_grad(set_to_none=True)
    return True


def median_step_times(runs: dict[str, Trainee], x: torch.Tensor, y: torch.Tensor, rounds: int, device: torch.device) -> dict[str, float]:
    """Median seconds per training step of each run, after a warm-up, in interleaved rounds (order reversed every other one)."""
    names = list(runs)
    for run in runs.values():  # warm-up: allocator, cuBLAS heuristics, compilation, graph capture
        for _ in range(3):
            run.step(x, y)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names if r % 2 == 0 else names[::-1]:
            times[n].append(timed(lambda n=n: runs[n].step(x, y), device))
    return {n: statistics.median(t) for n, t in times.items()}


def throughput(
    name: str,
    cfg: ModelConfig,
    train_cfg: TrainConfig,
    variants: list[str],
    device: torch.device,
    rounds: int,
    compile: bool,
    mode: str = "default",
) -> list[dict[str, Any]]:
    """Median step time, tokens/s and MFU of each variant, timed in interleaved rounds."""
    amp = autocast_dtype(device)
    runs = {v: Trainee(replace(cfg, wavelet=v), train_cfg, device, amp, compile, mode) for v in variants}
    x, y = batch(corpus(), cfg, train_cfg.batch_size, 0, device)
    flash = flash_accepts(runs[variants[0]].model, amp, x, y)
    times = median_step_times(runs, x, y, rounds, device)
    tokens = train_cfg.batch_size * cfg.context
    base = times[variants[0]]
    rows = []
    for v in variants:
        sec = times[v]
        use = mfu(flops_per_token(cfg) * tokens / sec, device)
        rows.append(
            {
                "preset": name,
                "variant": v,
                "params": runs[v].model.num_params(),
                "batch": train_cfg.batch_size,
                "context": cfg.context,
                "ms_per_step": sec * 1e3,
                "tokens_per_s": tokens / sec,
                "mfu": use,
                "time_ratio": sec / base,
                "flash": flash,
            }
        )
    return rows


def graph_speedup(
    name: str, cfg: ModelConfig, train_cfg: TrainConfig, variants: list[str], device: torch.device, rounds: int
) -> list[dict[str, Any]]:
    """Part 3: tokens/s of each variant's training step eager and replayed from CUDA graphs, timed side by side."""
    amp = autocast_dtype(device)
    runs = {}
    for v in variants:
        runs[f"{v} eager"] = Trainee(replace(cfg, wavelet=v), train_cfg, device, amp, compile=False)
        runs[f"{v} graphs"] = Trainee(replace(cfg, wavelet=v), train_cfg, device, amp, compile=True, mode="reduce-overhead")
    x, y = batch(corpus(), cfg, train_cfg.batch_size, 0, device)
    times = median_step_times(runs, x, y, rounds, device)
    tokens = train_cfg.batch_size * cfg.context
    return [
        {
            "preset": name,
            "variant": v,
            "eager_tokens_per_s": tokens / times[f"{v} eager"],
            "graphs_tokens_per_s": tokens / times[f"{v} graphs"],
            "speedup": times[f"{v} eager"] / times[f"{v} graphs"],
        }
        for v in variants
    ]


def graph_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| preset | variant | eager tokens/s | CUDA graphs tokens/s | graphs / eager |", "|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['preset']} | {r['variant']} | {r['eager_tokens_per_s']:,.0f} | {r['graphs_tokens_per_s']:,.0f} | {r['speedup']:.2f}x |"
        )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| preset | variant | params | batch x context | ms/step | tokens/s | MFU | time / first variant | flash |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        use = "-" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(
            f"| {r['preset']} | {r['variant']} | {r['params']:,} | {r['batch']} x {r['context']} | {r['ms_per_step']:.1f} "
            f"| {r['tokens_per_s']:,.0f} | {use} | {r['time_ratio']:.3f} | {'yes' if r['flash'] else 'no'} |"
        )
    return "\n".join(lines)


def parity_check(device: torch.device, quick: bool, steps: int, variants: list[str]) -> dict[str, dict[str, Any]]:
    """The parity part on the ``paper`` model (batch 8, or the quick shape with batch 4), printed."""
    model_cfg, train_cfg = shapes(["paper"], quick)["paper"]
    train_cfg = replace(train_cfg, batch_size=4 if quick else 8)
    checks = {}
    for v in variants:
        checks[v] = check = parity(replace(model_cfg, wavelet=v), train_cfg, device, steps)
        verdict = "ok" if check["ok"] else "FAILED"
        print(
            f"parity {v}, {steps} fp32 steps, CPU vs {device}: max |loss diff| {check['max_abs_diff']:.2e} (tolerance {PARITY_TOL:.0e}): {verdict}"
        )
    return checks


def describe(device: torch.device, compile: bool) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    triton = importlib.import_module("triton").__version__ if wavelet.HAVE_TRITON else None
    return {"device": name, "torch": torch.__version__, "triton": triton, "autocast": str(autocast_dtype(device)), "compile": compile}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--presets", default="paper,gpt2")
    parser.add_argument("--variants", default="none,haar,learnable")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds [10; 3 with --quick]")
    parser.add_argument("--parity-steps", type=int, default=6)
    parser.add_argument("--compile", action="store_true", help="torch.compile every model (adds its compile time)")
    parser.add_argument(
        "--compile-mode",
        default="default",
        choices=COMPILE_MODES,
        help="torch.compile's mode with --compile (reduce-overhead: CUDA graphs)",
    )
    parser.add_argument("--cuda-graphs", action="store_true", help="part 3: eager vs CUDA-graph training steps (CUDA only)")
    parser.add_argument("--graph-presets", default="paper", help="the presets of part 3")
    parser.add_argument("--quick", action="store_true", help="one block, context 64, 256 ids, batch 4: a smoke run for CPUs")
    parser.add_argument(
        "--kernel",
        choices=["auto", "triton", "torch"],
        default="auto",
        help="the wavelet's implementation in parts 1-2 [auto: Triton on CUDA]",
    )
    parser.add_argument("--json-out", type=Path, default=None)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    device, start = torch.device(args.device), time.perf_counter()
    variants, rounds = args.variants.split(","), args.rounds or (3 if args.quick else 10)
    configs = shapes([p for p in args.presets.split(",") if p != "none"], args.quick)
    info = describe(device, args.compile) | {"kernel": args.kernel, "compile_mode": args.compile_mode}
    print(f"{info['device']}, torch {info['torch']}, autocast {info['autocast']}, compile {args.compile}, kernel {args.kernel}", flush=True)

    kernels = kernel_check(device, rounds) if device.type == "cuda" and wavelet.HAVE_TRITON else []
    if kernels:
        print(kernel_table(kernels), flush=True)
    wavelet.KERNEL = args.kernel
    checks = parity_check(device, args.quick, args.parity_steps, variants)

    torch.set_float32_matmul_precision("high")  # TF32 matmuls, as wgpt train on CUDA
    rows = []
    for name, (model_cfg, train_cfg) in configs.items():
        preset_rows = throughput(name, model_cfg, train_cfg, variants, device, rounds, args.compile, args.compile_mode)
        rows += preset_rows
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next preset's models start from a clean pool
        print(f"{name}: done after {time.perf_counter() - start:.0f} s", flush=True)
        print(table(preset_rows), flush=True)  # now, in case a later preset runs out of time
    graphs = []
    if args.cuda_graphs and device.type == "cuda":
        for name, (model_cfg, train_cfg) in shapes(args.graph_presets.split(","), args.quick).items():
            graphs += graph_speedup(name, model_cfg, train_cfg, variants, device, rounds)
        print(graph_table(graphs), flush=True)
    elif args.cuda_graphs:
        print("part 3 (CUDA graphs) skipped: it needs a CUDA device")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json_out:
        result = info | {"kernels": kernels, "parity": checks, "throughput": rows, "cuda_graphs": graphs, "rounds": rounds}
        result["seconds"] = time.perf_counter() - start
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if all(c["ok"] for c in [*checks.values(), *kernels]) else 1


if __name__ == "__main__":
    sys.exit(main())
