"""Validation metrics of a checkpoint, in the units people compare.

Loss is in nats per token. Bits per natural unit (byte, character, sample, note) use the unit
counts that preparation recorded for the validation split:
``bits_per_unit = bits_per_token * val_tokens / val_units``.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wgpt.batches import check_length, get_batch
from wgpt.checkpoint import load_checkpoint, modality_of, model_from_checkpoint
from wgpt.devices import autocast_dtype, pick_device
from wgpt.errors import WgptError
from wgpt.generation import generate
from wgpt.shards import open_training_data


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, data: Any, offsets: torch.Tensor, context: int, batch: int, device: torch.device) -> float:
    """Mean next-token loss over fixed windows of a split (nats per token)."""
    was_training = model.training
    model.eval()
    total = 0.0
    amp = autocast_dtype(device)
    for chunk in offsets.split(batch):
        x, y = get_batch(data, chunk, context, model.cfg.vocab_size)
        with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
            _, loss = model(x.to(device), y.to(device))
        total += loss.item() * len(chunk)
    model.train(was_training)
    return total / len(offsets)


def resolve_data(ckpt: dict[str, Any], data: Path | list[Path] | None, ckpt_path: Path) -> list[Path]:
    """The folders to evaluate on: those given, else those the checkpoint was trained on."""
    if data:
        return [Path(p) for p in ([data] if isinstance(data, (str, Path)) else data)]
    if isinstance(ckpt.get("data"), str) and ckpt["data"]:
        return [Path(ckpt["data"])]
    if isinstance(ckpt.get("data"), list) and ckpt["data"] and all(isinstance(p, str) for p in ckpt["data"]):
        return [Path(p) for p in ckpt["data"]]
    raise WgptError(f"{ckpt_path} does not say which data it was trained on: pass --data DIR")


def evaluate(
    ckpt_path: Path,
    data: Path | list[Path] | None = None,
    max_tokens: int = 1_000_000,
    samples: int = 4,
    device: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """Loss over the validation split (non-overlapping context windows, up to ``max_tokens``)."""
    if max_tokens < 1:
        raise WgptError(f"--max-tokens must be at least 1, got {max_tokens}")
    if not 0 <= samples <= 64:
        raise WgptError(f"--samples must be from 0 (none) to 64, got {samples}")
    ckpt = load_checkpoint(ckpt_path)
    modality = modality_of(ckpt, ckpt_path)
    shards = open_training_data(resolve_data(ckpt, data, ckpt_path))
    if shards.modality_spec != ckpt["modality"]:
        where = ", ".join(map(str, shards.paths))
        raise WgptError(f"{ckpt_path} was trained with another modality or tokenizer than {where}: pass the --data it was trained on")
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev)
    context = model.cfg.context
    check_length(shards.val, context, "val", shards.paths[0])
    n_windows = max(1, min(max_tokens, len(shards.val) - 1) // context)
    offsets = torch.arange(n_windows) * context
    loss = estimate_loss(model, shards.val, offsets, context, 16, dev)
    bits = loss / math.log(2)
    tokens, units = shards.val_units()
    result: dict[str, Any] = {
        "loss": loss,
        "bits_per_token": bits,
        "perplexity": math.exp(loss),
        "tokens_evaluated": n_windows * context,
        "params": model.num_params(),
        "modality": ckpt["modality"]["name"],
        "wavelet": model.cfg.wavelet,
        "step": ckpt.get("step"),
    }
    for unit, count in units.items():
        if count:
            result[f"bits_per_{unit}"] = bits * tokens / count
    if samples > 0:
        stats = sample_statistics(model, modality, shards.val, samples, seed)
        if stats:
            result["statistics"] = stats
    return result


def sample_statistics(model: Any, modality: Any, val: np.ndarray, samples: int, seed: int) -> dict[str, Any]:
    """The modality's statistics of generated samples beside validation windows of equal length."""
    context = model.cfg.context
    offsets = torch.linspace(0, len(val) - context - 1, samples).long()
    reference = get_batch(val, offsets, context)[0].tolist()
    val_stats = modality.statistics(reference)
    if not val_stats:
        return {}
    prompt = modality.start_ids()
    generated = generate(model, prompt, context - len(prompt), num_samples=samples, seed=seed)
    return compare_statistics(modality.statistics([prompt + g for g in generated]), val_stats)


def compare_statistics(gen_stats: dict[str, Any], val_stats: dict[str, Any]) -> dict[str, Any]:
    """Each scalar statistic as {generated, validation}; each distribution as its total-variation distance."""
    table: dict[str, Any] = {}
    for key, ref in val_stats.items():
        got = gen_stats.get(key)
        if isinstance(ref, list) and isinstance(got, list):  # distributions: total-variation distance
            table[key + "_distance"] = 0.5 * float(np.abs(np.asarray(ref) - np.asarray(got)).sum())
        else:
            table[key] = {"generated": got, "validation": ref}
    return table
