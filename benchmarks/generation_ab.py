"""Cached generation speed of this checkout against another commit's, alternated in one process.

Separate runs of ``benchmarks/generation.py`` moved by up to 2x on a shared machine, more than a
code change moves them. This script loads the other commit's package beside this one (copied to a
temporary folder as ``wgpt_before``, its imports renamed), builds both models with the same
weights, and times greedy ``generate`` calls taking turns, in CPU time. It checks that both gave
the same tokens (exit status 1 if not).

    git worktree add /tmp/before 1cb9cce
    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/generation_ab.py /tmp/before --json out.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from wgpt.config import preset
from wgpt.generation import generate
from wgpt.model import GPT


def load_before(checkout: Path, into: Path):
    """The other checkout's ``wgpt`` package, importable as ``wgpt_before``."""
    target = into / "wgpt_before"
    shutil.copytree(checkout / "wgpt", target)
    for path in target.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"\bwgpt(?=[.\s])", "wgpt_before", text), encoding="utf-8")
    sys.path.insert(0, str(into))
    return (importlib.import_module(f"wgpt_before.{name}") for name in ("config", "model", "generation"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="a checkout of the commit to compare with")
    parser.add_argument("--cells", default="tiny:256,tiny:1024,paper:256,paper:1024", help="preset:new-tokens, comma-separated")
    parser.add_argument("--wavelet", default="haar", choices=["none", "haar", "learnable"])
    parser.add_argument("--rounds", type=int, default=12, help="calls of each, taking turns")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old_config, old_model, old_generation = load_before(args.before.resolve(), Path(tmp))
        cells, ok = [], True
        for cell in args.cells.split(","):
            name, n = cell.split(":")
            n = int(n)
            cfg = replace(preset(name)[0], wavelet=args.wavelet)
            torch.manual_seed(0)
            new = GPT(cfg).eval()
            old = old_model.GPT(replace(old_config.preset(name)[0], wavelet=args.wavelet)).eval()
            old.load_state_dict(new.state_dict())
            runs = {
                "before": lambda: old_generation.generate(old, [0], n, top_k=1)[0],  # noqa: B023 - called in this iteration
                "after": lambda: generate(new, [0], n, top_k=1)[0],  # noqa: B023
            }
            speeds: dict[str, list[float]] = {"before": [], "after": []}
            tokens = {}
            for r in range(args.rounds):
                for key in ("before", "after") if r % 2 == 0 else ("after", "before"):
                    t0 = time.process_time()
                    tokens[key] = runs[key]()
                    speeds[key].append(n / (time.process_time() - t0))
            same = tokens["before"] == tokens["after"]
            ok &= same
            ratio = statistics.median(speeds["after"]) / statistics.median(speeds["before"])
            cells.append({"preset": name, "new_tokens": n, "tok_s": {k: [round(v) for v in vs] for k, vs in speeds.items()},
                          "median_ratio_after_over_before": round(ratio, 3), "same_tokens": same})  # fmt: skip
            print(f"{name} {n}: before {statistics.median(speeds['before']):.0f} tok/s, after "
                  f"{statistics.median(speeds['after']):.0f} tok/s, after/before {ratio:.3f}, same tokens: {same}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "wavelet": args.wavelet, "cells": cells}, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
