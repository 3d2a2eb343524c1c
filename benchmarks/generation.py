"""Generation speed: tokens/s of cached and uncached decoding, and of Hugging Face GPT-2.

For each preset and each number of new tokens, times greedy generation (batch 1, randomly
initialised weights: speed does not depend on what was learned) with ``wgpt.generation`` cached
and uncached, and, when ``transformers`` is importable, ``GPT2LMHeadModel`` of the same shape
(layers, width, heads, FFN, vocabulary, ``n_positions`` = context) with its own KV cache. GPT-2
cannot see past ``n_positions`` either, so its loop slides the window exactly as wgpt does
(``window_start``): the three rows do the same work per token. The runs of one round go in
alternating order, so machine noise hits every row alike; the table shows medians. It also
checks that wgpt's cached and uncached runs gave the same tokens (exit status 1 if not).

    python benchmarks/generation.py --quick           # tiny preset, 64 and 256 new tokens
    python benchmarks/generation.py --threads 1       # tiny and paper, 256 / 1024 / 4096
    python benchmarks/generation.py --device cuda --cuda-graph --presets tiny --tokens 4096,16384

``--cuda-graph`` adds a row of cached decoding whose one-token steps replay one CUDA graph
(``wgpt.graphs``; eager fixed-shape steps on a CPU) and checks its tokens too.

The HF model is built from a ``GPT2Config``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import inspect
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from wgpt.config import ModelConfig, preset
from wgpt.generation import generate, step_threads, window_start
from wgpt.model import GPT

Runner = Callable[[int], list[int]]  # greedy: n new tokens
GRAPHED = "wgpt cached + CUDA graph"


def wgpt_runner(cfg: ModelConfig, use_cache: bool, device: torch.device, cuda_graph: bool = False) -> Runner:
    torch.manual_seed(0)
    model = GPT(cfg).to(device).eval()

    def run(n: int) -> list[int]:
        tokens = generate(model, [0], n, top_k=1, use_cache=use_cache, cuda_graph=cuda_graph)[0]
        if device.type == "cuda":
            torch.cuda.synchronize()
        return tokens

    return run


def hf_model(cfg: ModelConfig):
    """GPT-2 of the same shape as ``cfg``, random weights; None when transformers is missing."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    config = GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.context,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        n_inner=cfg.d_ff,
        activation_function="gelu",  # exact GELU, as wgpt's nn.GELU
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=None,  # GPT-2's 50256 lies outside a small vocabulary
        eos_token_id=None,
    )
    torch.manual_seed(0)
    return GPT2LMHeadModel(config).eval()


def hf_runner(model, context: int, d_ff: int, device: torch.device) -> Runner:
    """Greedy decoding with GPT-2's KV cache, sliding and re-encoding as ``wgpt.generation`` does."""

    # transformers 5 renamed ``past_key_values`` to ``cache``; accept either.
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"

    @torch.inference_mode()
    def run(n: int) -> list[int]:
        seq, start, past = [0], 0, None
        default = torch.get_num_threads()
        try:
            for _ in range(n):
                new_start = window_start(len(seq), start, context)
                fresh = past is None or new_start != start
                ids = torch.tensor([seq[new_start:] if fresh else seq[-1:]], device=device)  # (1, n)
                threads = step_threads(ids.numel(), d_ff, default)  # wgpt's thread policy
                if device.type == "cpu" and threads != torch.get_num_threads():
                    torch.set_num_threads(threads)
                out = model(input_ids=ids, use_cache=True, **{key: None if fresh else past})
                start, past = new_start, getattr(out, key)
                seq.append(int(out.logits[0, -1].argmax()))
        finally:
            torch.set_num_threads(default)
        return seq[1:]

    return run


def runners(cfg: ModelConfig, hf: bool, device: torch.device, cuda_graph: bool = False) -> dict[str, Runner]:
    rows = {"wgpt cached": wgpt_runner(cfg, True, device), "wgpt uncached": wgpt_runner(cfg, False, device)}
    if cuda_graph:
        rows[GRAPHED] = wgpt_runner(cfg, True, device, cuda_graph=True)
    model = hf_model(cfg) if hf else None
    if model is not None:
        rows["HF GPT-2 cached"] = hf_runner(model.to(device), cfg.context, cfg.d_ff, device)
    return rows


def tokens_per_s(run: Runner, n: int, clock: Callable[[], float]) -> tuple[float, list[int]]:
    t0 = clock()
    tokens = run(n)
    return n / (clock() - t0), tokens


def measure(rows: dict[str, Runner], n: int, rounds: int, clock: Callable[[], float]) -> tuple[dict[str, float], bool]:
    """Median tokens/s of each row over ``rounds`` interleaved rounds (order reversed every other round).

    Also whether wgpt's cached, uncached (and graphed) runs gave the same greedy tokens in every round.
    """
    names = list(rows)
    for name in names:  # warm-up: first-call allocations and lazy imports
        rows[name](4)
    speeds: dict[str, list[float]] = {name: [] for name in names}
    same = True
    for r in range(rounds):
        tokens = {}
        for name in names if r % 2 == 0 else names[::-1]:
            speed, tokens[name] = tokens_per_s(rows[name], n, clock)
            speeds[name].append(speed)
        same = same and tokens["wgpt cached"] == tokens["wgpt uncached"] == tokens.get(GRAPHED, tokens["wgpt cached"])
    return {name: statistics.median(v) for name, v in speeds.items()}, same


def print_table(results: list[tuple[str, int, dict[str, float], bool]]) -> None:
    print(
        "| preset | new tokens | wgpt cached tok/s | wgpt uncached tok/s | cached / uncached | same tokens "
        "| HF GPT-2 cached tok/s | wgpt + CUDA graph tok/s |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for name, n, speeds, same in results:
        cached, uncached = speeds["wgpt cached"], speeds["wgpt uncached"]
        hf, graphed = speeds.get("HF GPT-2 cached"), speeds.get(GRAPHED)
        hf_cell = f"{hf:.0f}" if hf is not None else "(not run)"
        graph_cell = f"{graphed:.0f}" if graphed is not None else "(not run)"
        print(
            f"| {name} | {n} | {cached:.0f} | {uncached:.1f} | {cached / uncached:.1f}x | {'yes' if same else 'NO'} | {hf_cell} | {graph_cell} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,paper")
    parser.add_argument("--tokens", default="256,1024,4096", help="comma-separated numbers of new tokens")
    parser.add_argument("--wavelet", default="haar", choices=["none", "haar", "learnable"])
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds per cell; the table shows medians")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall time, or this process's CPU time: steadier on a shared machine, equal to wall time on an idle one with --threads 1",
    )
    parser.add_argument("--no-hf", action="store_true", help="skip Hugging Face GPT-2 (also skipped when transformers is missing)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--cuda-graph", action="store_true", help="add cached decoding with its steps replayed from a CUDA graph")
    parser.add_argument("--quick", action="store_true", help="tiny preset, 64 and 256 new tokens, 3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.presets, args.tokens, args.rounds = "tiny", "64,256", 3
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    print(
        f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} intra-op threads, {os.cpu_count()} CPUs, "
        f"wavelet {args.wavelet}, batch 1, tokens per {args.clock} second"
    )
    results = []
    for name in args.presets.split(","):
        cfg = replace(preset(name)[0], wavelet=args.wavelet)
        rows = runners(cfg, hf=not args.no_hf, device=torch.device(args.device), cuda_graph=args.cuda_graph)
        for n in (int(t) for t in args.tokens.split(",")):
            results.append((name, n, *measure(rows, n, args.rounds, clock)))
            print(f"  {name} {n}: " + ", ".join(f"{k} {v:.1f} tok/s" for k, v in results[-1][2].items()), flush=True)
    print_table(results)
    if not all(same for *_, same in results):
        sys.exit("cached, uncached and graphed decoding gave different tokens")


if __name__ == "__main__":
    main()
