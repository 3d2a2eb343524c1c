"""Encoding throughput of text BPE: wgpt's workers against Hugging Face `tokenizers`' `encode_batch`.

One byte-level BPE is learned from the file (as `wgpt prepare text --tokenizer bpe` learns it);
then the same pieces of the file (wgpt's own cut, 4 MB at line ends) are encoded three ways, in
interleaved rounds, on the same cores:

- `tokenizers`: `Tokenizer.encode_batch` over the pieces (its own thread pool, every core);
- `wgpt`: the preparation's worker processes (`--workers`), each encoding whole pieces;
- and the ids of both are checked to be identical.

    python benchmarks/bpe_encode.py shakespeare-x8.txt --json docs/figures/bpe_encode.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from wgpt.modalities.text import TextModality
from wgpt.pool import WorkerPool
from wgpt.preparation import _encode_task, cut_pieces


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a UTF-8 text file")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    modality = TextModality("bpe", vocab_size=args.vocab_size)
    start, stop = modality.plan(args.file)
    pieces = cut_pieces(modality, args.file, start, stop, args.file.stat().st_size, first=True, whole=True)
    texts = [modality.fit_sample(p) for p in pieces]  # the text of each piece
    t0 = time.perf_counter()
    modality.fit(texts, len(texts))
    print(f"learned {modality.vocab_size} tokens in {time.perf_counter() - t0:.1f} s; encoder {modality.encoder}", flush=True)
    runs = []
    with WorkerPool(modality, args.workers) as pool:
        for round_ in range(args.rounds):
            t0 = time.perf_counter()
            hf = np.concatenate([e.ids for e in modality._bpe.encode_batch(texts)])
            runs.append({"round": round_, "who": "tokenizers encode_batch", "seconds": time.perf_counter() - t0})
            t0 = time.perf_counter()
            ours = np.concatenate([ids for (ids, _), _ in pool.map(_encode_task, [(p, None) for p in pieces], [p.size for p in pieces])])
            runs.append({"round": round_, "who": f"wgpt, {args.workers} workers", "seconds": time.perf_counter() - t0})
            if not np.array_equal(hf, ours):
                raise SystemExit("the two encoders gave different ids")
            for run in runs[-2:]:
                print(f"round {round_} {run['who']}: {run['seconds']:.1f} s, {stop / 1e6 / run['seconds']:.2f} MB/s", flush=True)
    if args.json:
        report = {"command": " ".join(sys.argv), "bytes": stop, "tokens": int(hf.size), "encoder": modality.encoder, "runs": runs}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
