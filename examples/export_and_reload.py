"""Export a run and load it back with ``safetensors`` alone; its logits equal the checkpoint's.

    python examples/export_and_reload.py [RUN_OR_CKPT] [--out OUT] [--steps N]

Without RUN_OR_CKPT, a short run on the bundled corpus is trained first (--steps, default
WGPT_EXAMPLE_STEPS, else 300). The export holds model.safetensors (weights, the output head tied
to the token embedding and stored once), config.json (model config, tokenizer, checksum),
tokenizer files and a model card.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file

from wgpt import GPT, ModelConfig, prepare, preset, train
from wgpt.checkpoint import load_checkpoint, model_from_checkpoint
from wgpt.export import export
from wgpt.modalities.text import TextModality, bundled_corpus


def short_run(out: Path, steps: int) -> Path:
    prepare(TextModality("bytes"), [bundled_corpus()], out / "data", show_progress=False)
    model_cfg, train_cfg = preset("tiny")
    if os.environ.get("WGPT_EXAMPLE_TINY"):  # a minimal model and batches, to check that the example runs (the tests do)
        model_cfg = replace(model_cfg, n_layer=1, n_head=2, d_model=32, d_ff=64, context=64)
        train_cfg = replace(train_cfg, batch_size=4, eval_batches=1, warmup=2, lr=1e-2)
    train_cfg = replace(train_cfg, steps=steps, eval_interval=min(train_cfg.eval_interval, steps))
    train(out / "data", out / "run", replace(model_cfg, wavelet="haar"), train_cfg, show_progress=False)
    return out / "run"


def model_from_export(folder: Path) -> GPT:
    """The model built from config.json and model.safetensors, with no wgpt loader in between."""
    settings = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    weights = load_file(str(folder / "model.safetensors"))
    weights["head.weight"] = weights["tok_emb.weight"]  # the tied output head
    model = GPT(ModelConfig(**settings["model_config"]))
    model.load_state_dict(weights)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="a run folder or checkpoint (default: train a short run)")
    parser.add_argument("--out", type=Path, default=Path("examples-out/export"))
    parser.add_argument("--steps", type=int, default=int(os.environ.get("WGPT_EXAMPLE_STEPS", 300)))
    args = parser.parse_args()

    run = args.run or short_run(args.out, args.steps)
    folder = export(run, args.out / "exported")
    print(f"exported {run} to {folder}: {', '.join(sorted(p.name for p in folder.iterdir()))}")

    ckpt_path = run / "best.pt" if run.is_dir() else run
    original = model_from_checkpoint(load_checkpoint(ckpt_path)).eval()
    reloaded = model_from_export(folder)
    idx = torch.randint(0, original.cfg.vocab_size, (2, original.cfg.context), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = (original(idx)[0] - reloaded(idx)[0]).abs().max().item()
    print(f"largest logit difference between {ckpt_path} and the export: {difference}")
    sys.exit(0 if difference == 0 else 1)


if __name__ == "__main__":
    main()
