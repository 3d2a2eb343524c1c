"""Files in, token shards out: one pipeline for every modality.

Files are found (recursively), loaded in parallel worker processes, split into train and
validation by file (never one file across both), the tokenizer is fitted on the training split,
and the ids are written as shards. Unusable files are skipped, counted and listed in the report;
a run with no usable file at all is an error.
"""

from __future__ import annotations

import fnmatch
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wgpt.errors import WgptError
from wgpt.io import atomic_open, os_reason, write_json
from wgpt.modalities.base import Modality, SkipFile
from wgpt.progress import progress_bar
from wgpt.shards import FORMAT, META, VERSION, ShardWriter, shard_dtype


@dataclass
class PrepareReport:
    out: Path
    files: int  # usable files
    skipped: list[tuple[str, str]]  # (path, reason)
    tokens: dict[str, int]  # per split
    units: dict[str, dict[str, float]]  # per split: natural units (bytes, samples, ...)
    input_bytes: int
    seconds: float
    vocab_size: int
    warnings: list[str] = field(default_factory=list)


def find_files(sources: list[Path], extensions: tuple[str, ...], glob: str | None = None) -> list[Path]:
    """Files named directly, plus matching files under folders (recursive), in sorted order."""
    found: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_file():
            found.append(src)
        elif src.is_dir():
            for root, _dirs, names in os.walk(src):
                for name in names:
                    matches = fnmatch.fnmatch(name, glob) if glob else name.lower().endswith(extensions)
                    if matches and not name.startswith("."):
                        found.append(Path(root) / name)
        else:
            raise WgptError(f"{src} does not exist: pass files or folders to prepare")
    unique = sorted(set(found))
    if not unique:
        what = f"matching {glob!r}" if glob else f"with extension {', '.join(extensions)}"
        raise WgptError(f"no files {what} in {', '.join(map(str, sources))}: point at other files or use --glob")
    return unique


_WORKER_MODALITY: Modality | None = None  # set once per worker process by the pool initializer


def _init_worker(modality: Modality) -> None:
    global _WORKER_MODALITY
    _WORKER_MODALITY = modality


def _load_in_worker(path: Path) -> tuple[Any, str | None]:
    assert _WORKER_MODALITY is not None
    return _load(_WORKER_MODALITY, path)


def _load(modality: Modality, path: Path) -> tuple[Any, str | None]:
    try:
        return modality.load(path), None
    except SkipFile as err:
        return None, str(err) or "unusable"
    except OSError as err:
        return None, f"unreadable: {err.strerror or err}"
    except Exception as err:  # a broken file must never stop the whole run
        return None, f"unreadable: {type(err).__name__}: {err}"


def load_all(
    modality: Modality, files: list[Path], workers: int, show_progress: bool
) -> tuple[list[tuple[Path, Any]], list[tuple[str, str]]]:
    """Load every file, in parallel when it pays; returns (loaded, skipped)."""
    loaded: list[tuple[Path, Any]] = []
    skipped: list[tuple[str, str]] = []
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"reading {modality.name}", total=len(files))
        if workers > 1 and len(files) > 1:
            # The modality (with its tokenizer) goes to each worker once, not with every job.
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(modality,)) as pool:
                results = pool.map(_load_in_worker, files, chunksize=max(1, min(16, len(files) // (4 * workers))))
                for path, (payload, reason) in zip(files, results, strict=True):
                    _keep(path, payload, reason, loaded, skipped)
                    bar.advance(task)
        else:
            for path in files:
                _keep(path, *_load(modality, path), loaded, skipped)
                bar.advance(task)
    return loaded, skipped


def _keep(path: Path, payload: Any, reason: str | None, loaded: list, skipped: list) -> None:
    if reason is None:
        loaded.append((path, payload))
    else:
        skipped.append((str(path), reason))


def split_by_file(loaded: list[tuple[Path, Any]], modality: Modality, val_fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Train and validation payloads: whole files to each side, or one file cut in two."""
    if len(loaded) == 1:
        parts = modality.split_payload(loaded[0][1], val_fraction)
        if parts is None:
            raise WgptError(f"only one usable file ({loaded[0][0]}): add at least one more so that validation has its own file")
        return [parts[0]], [parts[1]]
    order = np.random.default_rng(seed).permutation(len(loaded))
    n_val = min(len(loaded) - 1, max(1, round(len(loaded) * val_fraction)))
    val_idx = set(order[:n_val].tolist())
    train = [p for i, (_, p) in enumerate(loaded) if i not in val_idx]
    val = [p for i, (_, p) in enumerate(loaded) if i in val_idx]
    return train, val


def write_split(out: Path, split: str, payloads: list[Any], modality: Modality, bar: Any) -> dict[str, Any]:
    units: dict[str, float] = {}
    with atomic_open(out / f"{split}.bin") as f:
        writer = ShardWriter(f, modality.vocab_size)
        task = bar.add_task(f"tokenizing {split}", total=len(payloads))
        for payload in payloads:
            ids, counts = modality.tokenize(payload)
            if modality.separator is not None:  # each document starts with the separator
                ids = np.concatenate([[modality.separator], ids])
            writer.append(ids)
            for k, v in counts.items():
                units[k] = units.get(k, 0) + v  # seconds are fractional: no rounding per file
            bar.advance(task)
    return writer.summary(f"{split}.bin", units)


def prepare(
    modality: Modality,
    sources: list[Path],
    out: Path,
    glob: str | None = None,
    val_fraction: float = 0.1,
    workers: int = 0,
    seed: int = 0,
    show_progress: bool = True,
) -> PrepareReport:
    """Tokenize ``sources`` into ``out/{train,val}.bin`` + ``meta.json`` (+ ``report.json``)."""
    if not 0.0 < val_fraction < 1.0:
        raise WgptError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if workers < 0:
        raise WgptError(f"--workers must be 0 (all cores) or more, got {workers}")
    start = time.perf_counter()
    out = Path(out)
    files = find_files(sources, modality.extensions, glob)
    workers = workers or os.cpu_count() or 1
    loaded, skipped = load_all(modality, files, workers, show_progress)
    if not loaded:
        reasons = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise WgptError(f"no usable {modality.name} files among {len(files)} ({reasons}{'; ...' if len(skipped) > 3 else ''})")
    train, val = split_by_file(loaded, modality, val_fraction, seed)
    modality.fit(train)
    try:
        (out / META).unlink(missing_ok=True)  # the old shards stop being valid before they change
    except OSError as err:
        raise WgptError(f"cannot write shards to {out}: {os_reason(err)}; pass a folder to --out") from None
    with progress_bar(show_progress) as bar:
        splits = {"train": write_split(out, "train", train, modality, bar), "val": write_split(out, "val", val, modality, bar)}
    input_bytes = sum(p.stat().st_size for p, _ in loaded)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "modality": modality.spec(),
        "vocab_size": modality.vocab_size,
        "dtype": shard_dtype(modality.vocab_size).str,
        "splits": splits,
        "files": {"used": len(loaded), "skipped": len(skipped), "input_bytes": input_bytes},
        "sources": [str(s) for s in sources],
    }
    report = PrepareReport(
        out,
        len(loaded),
        skipped,
        {s: splits[s]["tokens"] for s in splits},
        {s: splits[s]["units"] for s in splits},
        input_bytes,
        time.perf_counter() - start,
        modality.vocab_size,
    )
    write_json(out / "report.json", {"skipped": [{"path": p, "reason": r} for p, r in skipped], "files_used": len(loaded)})
    write_json(out / META, meta)  # last: its presence marks the folder complete
    return report
