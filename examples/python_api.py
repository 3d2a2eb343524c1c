"""The Python API: prepare, train, evaluate and sample without the command line.

    python examples/python_api.py [--src FILES_OR_FOLDER] [--out OUT] [--steps N]

With no --src, the bundled Milton corpus. --steps defaults to WGPT_EXAMPLE_STEPS, else 300.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path

from wgpt import SampleRequest, evaluate, prepare, preset, sample_to_files, train
from wgpt.modalities.text import TextModality, bundled_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, nargs="*", help="text files or folders (default: the bundled corpus)")
    parser.add_argument("--out", type=Path, default=Path("examples-out/python_api"))
    parser.add_argument("--steps", type=int, default=int(os.environ.get("WGPT_EXAMPLE_STEPS", 300)))
    args = parser.parse_args()

    # 1. Files to token shards: characters, the vocabulary learned from the training split.
    modality = TextModality("chars")
    report = prepare(modality, args.src or [bundled_corpus()], args.out / "data", show_progress=False)
    print(f"prepared {report.tokens['train']:,} training tokens, vocabulary {report.vocab_size}")

    # 2. A tiny preset model with the Haar wavelet structure; vocab_size is set from the data.
    model_cfg, train_cfg = preset("tiny")
    if os.environ.get("WGPT_EXAMPLE_TINY"):  # a minimal model and batches, to check that the example runs (the tests do)
        model_cfg = replace(model_cfg, n_layer=1, n_head=2, d_model=32, d_ff=64, context=64)
        train_cfg = replace(train_cfg, batch_size=4, eval_batches=1, warmup=2, lr=1e-2)
    model_cfg = replace(model_cfg, wavelet="haar")
    train_cfg = replace(train_cfg, steps=args.steps, eval_interval=min(train_cfg.eval_interval, args.steps))
    result = train(args.out / "data", args.out / "run", model_cfg, train_cfg, show_progress=False)
    print(f"trained {result.params:,} parameters: best validation loss {result.best_val_loss:.4f} at step {result.best_step}")

    # 3. Evaluation on the validation split: bits per character, as the paper reports text8.
    metrics = evaluate(args.out / "run" / "best.pt", samples=0)
    print(f"bits per char: {metrics['bits_per_char']:.3f}")

    # 4. Samples, written through the modality (a text file per sample).
    request = SampleRequest(ckpt=args.out / "run" / "best.pt", out=args.out / "sample.txt", prompt="Of Man", tokens=200, seed=0)
    for path in sample_to_files(request, show_progress=False):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
