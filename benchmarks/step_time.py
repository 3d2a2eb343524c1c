"""Wall-clock cost of the wavelet structure per training step, measured side by side.

Builds one model per variant from a preset and times full training steps (forward, backward,
AdamW) in interleaved rounds, so machine noise hits every variant alike. Prints the median step
time of each and its ratio to the baseline.

    OMP_NUM_THREADS=1 python benchmarks/step_time.py --preset tiny --rounds 30 --json docs/figures/step_time_cpu.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from wgpt.config import preset
from wgpt.model import GPT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--variants", default="none,haar,learnable")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="Also write every step time and the medians to this file.")
    args = parser.parse_args()

    model_cfg, train_cfg = preset(args.preset)
    batch = args.batch_size or train_cfg.batch_size
    device = torch.device(args.device)
    variants = args.variants.split(",")
    runs = {}
    for v in variants:
        torch.manual_seed(0)
        model = GPT(replace(model_cfg, wavelet=v)).to(device)
        runs[v] = (model, torch.optim.AdamW(model.parameters(), lr=1e-4))
    x = torch.randint(0, model_cfg.vocab_size, (batch, model_cfg.context), device=device)

    def step(v: str) -> float:
        model, opt = runs[v]
        t0 = time.perf_counter()
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for v in variants:  # warm-up
        step(v), step(v)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for v in order:
            times[v].append(step(v))
    base = statistics.median(times[variants[0]])
    print(f"preset {args.preset}, batch {batch} x {model_cfg.context}, {args.rounds} interleaved rounds on {device}")
    for v in variants:
        med = statistics.median(times[v])
        print(f"{v:>10}: median {med * 1000:8.1f} ms/step   ratio to {variants[0]}: {med / base:.3f}")
    if args.json:
        figures = {
            "command": " ".join(["python", *sys.argv]),
            "preset": args.preset,
            "batch": batch,
            "context": model_cfg.context,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "rounds": args.rounds,
            "median_s": {v: statistics.median(times[v]) for v in variants},
            "ratio": {v: statistics.median(times[v]) / base for v in variants},
            "times_s": times,
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
