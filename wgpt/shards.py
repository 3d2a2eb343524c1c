"""Token shards on disk: one flat file of ids per split plus ``meta.json``.

``train.bin`` and ``val.bin`` hold little-endian uint16 ids (uint32 when the vocabulary has more
than 65,536 entries) and are read through ``np.memmap``. ``meta.json`` is written last, so a
folder without it (an interrupted ``wgpt prepare``) is never accepted for training. Batches are a
pure function of (seed, step): equal seeds give equal batches whatever the model or the number of
processes, which is what makes baseline/wavelet comparisons and exact resumes possible.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from wgpt.errors import WgptError

FORMAT = "wgpt-shards"
VERSION = 1
META = "meta.json"
SPLITS = ("train", "val")
CHECKSUM_LIMIT = 1 << 30  # verify sha256 of shards up to 1 GiB (about a second); sizes always


def shard_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")


class ShardWriter:
    """Appends id arrays to an open binary file, counting and hashing as it goes."""

    def __init__(self, f: BinaryIO, vocab_size: int) -> None:
        self.f, self.vocab_size, self.dtype = f, vocab_size, shard_dtype(vocab_size)
        self.tokens, self.documents = 0, 0
        self.sha = hashlib.sha256()

    def append(self, ids: np.ndarray) -> None:
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token id outside the vocabulary of {self.vocab_size}")
        data = ids.astype(self.dtype).tobytes()
        self.f.write(data)
        self.sha.update(data)
        self.tokens += ids.size
        self.documents += 1

    def summary(self, filename: str, units: dict[str, int]) -> dict[str, Any]:
        return {"file": filename, "tokens": self.tokens, "documents": self.documents, "sha256": self.sha.hexdigest(), "units": units}


@dataclass
class Shards:
    """An opened shard folder: metadata plus memory-mapped splits."""

    path: Path
    meta: dict[str, Any]
    train: np.ndarray
    val: np.ndarray

    @property
    def modality_spec(self) -> dict[str, Any]:
        return self.meta["modality"]

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])


def read_meta(path: Path) -> dict[str, Any]:
    meta_path = Path(path) / META
    if not Path(path).is_dir():
        raise WgptError(f"no prepared data at {path}: run `wgpt prepare` first, or pass --data DIR")
    if not meta_path.is_file():
        raise WgptError(f"{path} has no {META} (unprepared, or preparation was interrupted): run `wgpt prepare` again")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise WgptError(f"{meta_path} is unreadable ({err}): run `wgpt prepare` again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise WgptError(f"{meta_path} is not wgpt shard metadata (version {VERSION}): run `wgpt prepare` again")
    return meta


def open_shards(path: Path, verify: bool = True) -> Shards:
    """Open and check a shard folder: every split's size, and its checksum where cheap."""
    path = Path(path)
    meta = read_meta(path)
    dtype, splits = _layout(meta, path)
    arrays = {}
    for split in SPLITS:
        info = splits[split]
        file = path / info["file"]
        size = file.stat().st_size if file.is_file() else -1
        if size != info["tokens"] * dtype.itemsize:
            raise WgptError(
                f"{file} does not match {META} ({size} bytes, expected {info['tokens'] * dtype.itemsize}): run `wgpt prepare` again"
            )
        if verify and size <= CHECKSUM_LIMIT and _sha256(file) != info["sha256"]:
            raise WgptError(f"{file} is corrupt (checksum differs from {META}): run `wgpt prepare` again")
        arrays[split] = np.memmap(file, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)
    return Shards(path, meta, arrays["train"], arrays["val"])


def _layout(meta: dict[str, Any], path: Path) -> tuple[np.dtype, dict[str, dict[str, Any]]]:
    """The dtype and split entries of ``meta``, or a clear error if the file was damaged or hand-edited."""
    try:
        dtype = np.dtype(meta["dtype"])
        splits = {s: meta["splits"][s] for s in SPLITS}
        well_formed = (
            isinstance(meta["vocab_size"], int)
            and isinstance(meta["modality"], dict)
            and all(splits[s]["file"] == f"{s}.bin" and isinstance(splits[s]["tokens"], int) and "sha256" in splits[s] for s in SPLITS)
        )
    except (KeyError, TypeError):
        well_formed = False
    if not well_formed:
        raise WgptError(f"{path / META} is damaged (fields missing or of the wrong type): run `wgpt prepare` again")
    return dtype, splits


def _sha256(file: Path) -> str:
    sha = hashlib.sha256()
    with open(file, "rb") as f:
        while chunk := f.read(1 << 22):
            sha.update(chunk)
    return sha.hexdigest()


def check_length(data: np.ndarray, context: int, split: str, where: Path) -> None:
    if len(data) < context + 1:
        raise WgptError(
            f"the {split} split of {where} has {len(data)} tokens, fewer than context + 1 = {context + 1}: add data or lower --context"
        )


def train_offsets(n_tokens: int, context: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Start offsets of the global batch for ``step``: a pure function of (seed, step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n_tokens - context, (batch,), generator=g)


def eval_offsets(n_tokens: int, context: int, count: int) -> torch.Tensor:
    """``count`` evenly spaced windows over the split: the same every evaluation."""
    return torch.linspace(0, n_tokens - context - 1, count).long()


def get_batch(data: np.ndarray, offsets: torch.Tensor, context: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets, both (B, context) int64."""
    rows = np.stack([np.asarray(data[o : o + context + 1], dtype=np.int64) for o in offsets.tolist()])  # (B, T+1)
    xy = torch.from_numpy(rows)
    return xy[:, :-1], xy[:, 1:]
