"""Files in, token shards out: one streaming pipeline for every modality.

The work travels in pieces (``wgpt.modalities.base.Piece``) through worker processes
(``wgpt.pool.WorkerPool``) in an order that does not depend on how many workers there are:

1. find the files, recursively, in sorted order;
2. plan each file (workers): its span, cut into pieces (text at line ends, audio on whole
   resampling periods); files that are plainly unusable are skipped here;
3. scan the pieces of files that have several (workers), so that a broken byte deep in a big file
   skips the file before any of it is written (audio also learns each file's peak here);
4. split by file: a seeded choice of whole files for validation, or, with a single usable file,
   its tail (cut where the modality allows);
5. fit the tokenizer on the training split, or on an evenly spread sample of it (``fit_bytes``);
6. encode every piece (workers) and write the ids as shards, training split first; then read
   every shard back to check it against its checksum, and write ``meta.json`` last.

Memory is bounded by the pieces in flight, never by the size of the corpus, and the shards are
byte-identical for any number of workers. Unusable files are skipped, counted and listed in
``report.json`` with their reasons, beside the files chosen for validation.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import os
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wgpt.errors import WgptError
from wgpt.io import os_reason, write_json
from wgpt.modalities.base import Modality, Piece, SkipFile
from wgpt.pool import WorkerPool
from wgpt.progress import progress_bar
from wgpt.shards import FORMAT, META, SHARD_TOKENS, VERSION, SplitWriter, checksum_of, compact_ids, remove_stale_shards


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
    shards: int = 0
    validation: list[dict[str, Any]] = field(default_factory=list)  # the files (or the tail) validation holds
    warnings: list[str] = field(default_factory=list)


@dataclass
class FilePlan:
    """One usable file: its pieces, and what encoding them needs to know about the whole file."""

    path: Path
    size: int
    start: int
    stop: int
    pieces: list[Piece]
    facts: Any = None
    scanned: bool = False  # facts hold what scanning its pieces found (files of one whole piece need none)


def find_files(sources: list[Path], extensions: tuple[str, ...], glob: str | None = None) -> tuple[dict[Path, int], dict[Path, str]]:
    """Files named directly, plus matching files under folders (recursive), in sorted order, each
    once however many paths lead to it, with their sizes; and the matching entries that are not
    regular files (a FIFO, a socket, a device: reading one could block forever), with the reason
    they are skipped."""
    found: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_dir():
            for root, _dirs, names in os.walk(src):
                for name in names:
                    matches = fnmatch.fnmatch(name, glob) if glob else name.lower().endswith(extensions)
                    if matches and not name.startswith("."):
                        found.append(Path(root) / name)
        elif src.exists():
            found.append(src)
        else:
            raise WgptError(f"{src} does not exist: pass files or folders to prepare")
    files: dict[Path, int] = {}
    skipped: dict[Path, str] = {}
    seen = set()
    for path in sorted(set(found)):
        try:
            info = path.stat()
        except OSError as err:
            skipped[path] = f"unreadable: {err.strerror or err}"
            continue
        if not stat.S_ISREG(info.st_mode):
            skipped[path] = "not a regular file (a FIFO, socket or device)"
        elif (info.st_dev, info.st_ino) not in seen:  # the same file through a link counts once
            seen.add((info.st_dev, info.st_ino))
            files[path] = info.st_size
    if not files and not skipped:
        what = f"matching {glob!r}" if glob else f"with extension {', '.join(extensions)}"
        raise WgptError(f"no files {what} in {', '.join(map(str, sources))}: point at other files or use --glob")
    return files, skipped


# -- work done in the workers: module-level functions of (modality, item) ----------------------
def _attempt(call: Any, *args: Any) -> tuple[Any, str | None]:
    """``(result, None)``, or ``(None, reason)`` when the file is unusable: a broken file never stops the run."""
    try:
        return call(*args), None
    except SkipFile as err:
        return None, str(err) or "unusable"
    except OSError as err:
        return None, f"unreadable: {err.strerror or err}"
    except Exception as err:
        return None, f"unreadable: {type(err).__name__}: {err}"


def _plan_task(modality: Modality, file: tuple[Path, int]) -> tuple[Any, str | None]:
    return _attempt(_plan, modality, *file)


def _plan(modality: Modality, path: Path, size: int) -> FilePlan:
    start, stop = modality.plan(path)
    return FilePlan(path, size, start, stop, cut_pieces(modality, path, start, stop, size, first=True, whole=True))


def _scan_task(modality: Modality, piece: Piece) -> tuple[Any, str | None]:
    return _attempt(modality.scan, piece)


def _sample_task(modality: Modality, piece: Piece) -> tuple[Any, str | None]:
    return _attempt(modality.fit_sample, piece)


def _encode_task(modality: Modality, job: tuple[Piece, Any]) -> tuple[Any, str | None]:
    return _attempt(_encode, modality, *job)


def _encode(modality: Modality, piece: Piece, facts: Any) -> tuple[np.ndarray, dict[str, float]]:
    ids, units = modality.encode(piece, facts)
    ids = compact_ids(ids, modality.vocab_size)
    if piece.first and modality.separator is not None:  # each document starts with the separator
        ids = np.concatenate([np.array([modality.separator], dtype=ids.dtype), ids])
    return ids, units


def _checksum_task(_modality: Modality, file: Path) -> tuple[Any, str | None]:
    return _attempt(checksum_of, file)


# -- planning ----------------------------------------------------------------------------------
def cut_pieces(modality: Modality, path: Path, start: int, stop: int, size: int, first: bool, whole: bool) -> list[Piece]:
    """``[start, stop)`` of ``path`` (``size`` bytes of it) as pieces of about ``modality.piece_extent``
    positions; ``first``: the span starts the file, ``whole``: it is all of the file."""
    extent = modality.piece_extent
    if extent is None or stop - start <= extent:
        return [Piece(path, start, stop, first=first, whole=whole, size=size)]
    cuts = [start]
    for nominal in range(start + extent, stop, extent):
        cut = modality.boundary(path, max(nominal, cuts[-1] + 1))
        if cuts[-1] < cut < stop:
            cuts.append(cut)
    cuts.append(stop)
    share = size / (stop - start)  # bytes of the file per position, for progress and sampling
    return [
        Piece(path, a, b, first=first and i == 0, whole=False, size=max(1, round((b - a) * share)))
        for i, (a, b) in enumerate(itertools.pairwise(cuts))
    ]


def _passing(pool: WorkerPool, fn: Any, items: list[Any], sizes: list[int], bar: Any, description: str) -> Iterator[tuple[Any, Any]]:
    """``(item, (result, reason))`` for every item, in order, with a progress bar over their bytes."""
    task = bar.add_task(description, total=max(1, sum(sizes)))
    for item, size, outcome in zip(items, sizes, pool.map(fn, items, sizes), strict=True):
        bar.advance(task, size)
        yield item, outcome


def plan_files(pool: WorkerPool, files: dict[Path, int], skipped: dict[Path, str], bar: Any) -> list[FilePlan]:
    plans = []
    for (path, _), (plan, reason) in _passing(pool, _plan_task, list(files.items()), list(files.values()), bar, "reading"):
        if reason is None:
            plans.append(plan)
        else:
            skipped[path] = reason
    return plans


def scan_files(pool: WorkerPool, modality: Modality, plans: list[FilePlan], skipped: dict[Path, str], bar: Any) -> None:
    """Scan every piece of the files cut into several; set their facts, or skip them whole."""
    todo = [plan for plan in plans if not plan.scanned and not all(p.whole for p in plan.pieces)]
    pieces = [p for plan in todo for p in plan.pieces]
    if not pieces:
        return
    facts: dict[Path, list[Any]] = {}
    for piece, (fact, reason) in _passing(pool, _scan_task, pieces, [p.size for p in pieces], bar, "checking long files"):
        if reason is not None:
            skipped.setdefault(piece.path, reason)
        facts.setdefault(piece.path, []).append(fact)
    for plan in todo:
        plan.scanned = True
        if plan.path not in skipped:
            try:
                plan.facts = modality.combine(plan.path, facts[plan.path])  # a file cut in two: both halves' pieces
            except SkipFile as err:
                skipped[plan.path] = str(err)


# -- the split ---------------------------------------------------------------------------------
@dataclass
class Split:
    train: list[FilePlan]
    val: list[FilePlan]
    validation: list[dict[str, Any]]  # for report.json


def choose_split(modality: Modality, plans: list[FilePlan], val_fraction: float, seed: int, skipped: dict[Path, str]) -> Split:
    """Whole files to each side, chosen by a seeded shuffle; a single file gives its tail to validation."""
    if len(plans) == 1:
        return _tail_split(modality, plans[0], val_fraction, skipped)
    order = np.random.default_rng(seed).permutation(len(plans))
    n_val = min(len(plans) - 1, max(1, round(len(plans) * val_fraction)))
    val_idx = set(order[:n_val].tolist())
    train = [p for i, p in enumerate(plans) if i not in val_idx]
    val = [p for i, p in enumerate(plans) if i in val_idx]
    return Split(train, val, [{"file": str(p.path)} for p in val])


def _tail_split(modality: Modality, plan: FilePlan, fraction: float, skipped: dict[Path, str]) -> Split:
    nominal = plan.start + int((plan.stop - plan.start) * (1.0 - fraction))
    try:
        cut = modality.boundary(plan.path, nominal)
    except NotImplementedError:
        cut = None
    if cut is None or not plan.start < cut < plan.stop:
        _, reason = _encode_task(modality, (plan.pieces[0], None)) if len(plan.pieces) == 1 else (None, None)
        if reason is not None:  # the file is broken, which says more than that it is alone
            skipped[plan.path] = reason
            return Split([], [], [])
        raise WgptError(f"only one usable file ({plan.path}): add at least one more so that validation has its own file")
    share = plan.size / (plan.stop - plan.start)
    head, tail = (
        FilePlan(
            plan.path,
            plan.size,
            a,
            b,
            cut_pieces(modality, plan.path, a, b, round((b - a) * share), a == plan.start, False),
            plan.facts,
            plan.scanned,
        )
        for a, b in ((plan.start, cut), (cut, plan.stop))
    )
    return Split([head], [tail], [{"file": str(plan.path), "from": cut}])


# -- fitting -----------------------------------------------------------------------------------
def fit_sample(pieces: list[Piece], limit: int | None) -> list[Piece]:
    """The pieces ``fit`` sees: all of them, or about ``limit`` bytes spread evenly over the split."""
    total = sum(p.size for p in pieces)
    if limit is None or total <= limit:
        return pieces
    chosen, credit = [], 0.0
    for piece in pieces:  # systematic sampling by bytes: each piece earns its share of the limit
        credit += piece.size * limit / total
        if credit >= piece.size / 2:
            chosen.append(piece)
            credit -= piece.size
    return chosen


def fit(pool: WorkerPool, modality: Modality, train: list[FilePlan], skipped: dict[Path, str], bar: Any) -> None:
    if not modality.needs_fit:
        return
    sample = fit_sample([p for plan in train for p in plan.pieces], modality.fit_bytes)

    def samples() -> Iterator[Any]:
        for piece, (value, reason) in _passing(pool, _sample_task, sample, [p.size for p in sample], bar, "fitting the tokenizer"):
            if reason is None:
                yield value
            else:
                skipped.setdefault(piece.path, reason)

    modality.fit(samples(), len(sample))


# -- encoding and writing ----------------------------------------------------------------------
def write_split(
    pool: WorkerPool, modality: Modality, name: str, plans: list[FilePlan], writer: SplitWriter, skipped: dict[Path, str], bar: Any
) -> None:
    """Encode every piece of ``plans`` and append the ids to ``writer``, in order."""
    jobs = [(piece, plan.facts) for plan in plans if plan.path not in skipped for piece in plan.pieces]
    last = None
    for (piece, _), (result, reason) in _passing(pool, _encode_task, jobs, [j[0].size for j in jobs], bar, f"tokenizing {name}"):
        # the worker checked the ids against the vocabulary (compact_ids): the writer need not
        if reason is not None:
            if not piece.whole:  # it passed its scan: part of it may already be written
                raise WgptError(
                    f"{piece.path} changed or became unreadable while it was being prepared ({reason}): run `wgpt prepare` again"
                )
            skipped[piece.path] = reason
            continue
        ids, units = result
        writer.append(ids, checked=True)
        writer.add_units(units)
        if piece.path != last:
            writer.documents, last = writer.documents + 1, piece.path


def verify_written(pool: WorkerPool, out: Path, writers: list[SplitWriter], bar: Any) -> None:
    """Read every shard back: its checksum must be the one computed while writing it."""
    shards = [s for w in writers for s in w.shards]
    files = [out / s["file"] for s in shards]
    sizes = [s["tokens"] * writers[0].dtype.itemsize for s in shards]
    for (file, (digest, reason)), shard in zip(_passing(pool, _checksum_task, files, sizes, bar, "verifying"), shards, strict=True):
        if reason is not None or digest != shard["crc32"]:
            raise WgptError(
                f"{file} reads back differently from what was written ({reason or 'checksum differs'}): check the disk, then prepare again"
            )


# -- the whole run -----------------------------------------------------------------------------
def prepare(
    modality: Modality,
    sources: list[Path],
    out: Path,
    glob: str | None = None,
    val_fraction: float = 0.1,
    workers: int = 0,
    seed: int = 0,
    show_progress: bool = True,
    shard_tokens: int = SHARD_TOKENS,
    fit_tokenizer: bool = True,
) -> PrepareReport:
    """Tokenize ``sources`` into shards under ``out`` with ``meta.json`` and ``report.json``.
    ``fit_tokenizer=False`` keeps the modality's tokenizer as it is (one learned for other data)."""
    if not 0.0 < val_fraction < 1.0:
        raise WgptError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    if workers < 0:
        raise WgptError(f"--workers must be 0 (all cores) or more, got {workers}")
    if shard_tokens < 1:
        raise WgptError(f"--shard-tokens must be at least 1, got {shard_tokens}")
    start = time.perf_counter()
    out = Path(out)
    files, skipped = find_files(sources, modality.extensions, glob)
    found = len(files) + len(skipped)
    with (
        _terminate_as_interrupt(),
        WorkerPool(modality, workers or os.cpu_count() or 1) as pool,
        progress_bar(show_progress, unit="bytes") as bar,
    ):
        plans = plan_files(pool, files, skipped, bar)
        scan_files(pool, modality, plans, skipped, bar)
        _clear_meta(out)
        while True:  # another round only when files found broken after the split emptied it
            usable = [p for p in plans if p.path not in skipped]
            if not usable:
                reasons = "; ".join(f"{p}: {r}" for p, r in list(skipped.items())[:3])
                raise WgptError(f"no usable {modality.name} files among {found} ({reasons}{'; ...' if len(skipped) > 3 else ''})")
            known_bad = len(skipped)
            split = choose_split(modality, usable, val_fraction, seed, skipped)
            scan_files(pool, modality, split.train + split.val, skipped, bar)  # a single file cut in two is scanned now
            if len(skipped) > known_bad:
                continue
            if fit_tokenizer and modality.needs_fit:
                fit(pool, modality, split.train, skipped, bar)
                pool.update(modality)  # the workers' copies predate the fitted tokenizer
            writers = [SplitWriter(out, name, modality.vocab_size, shard_tokens) for name in ("train", "val")]
            with _discarded_on_failure(writers):
                for writer, plans_of_split in zip(writers, (split.train, split.val), strict=True):
                    write_split(pool, modality, writer.split, plans_of_split, writer, skipped, bar)
                    writer.close()
            if all(w.tokens for w in writers) or len(skipped) == known_bad:
                break
            for writer in writers:
                writer.discard()
        with _discarded_on_failure(writers):
            if not all(w.tokens for w in writers):
                empty = next(w.split for w in writers if not w.tokens)
                raise WgptError(f"the {empty} split came out empty: add files, or change --val-fraction")
            for writer in writers:
                writer.rename_into_place()
            verify_written(pool, out, writers, bar)
    used = [p for p in plans if p.path not in skipped]
    input_bytes = sum(p.size for p in used)
    splits = {w.split: w.close() for w in writers}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "modality": modality.spec(),
        "vocab_size": modality.vocab_size,
        "dtype": writers[0].dtype.str,
        "splits": splits,
        "files": {"used": len(used), "skipped": len(skipped), "input_bytes": input_bytes},
        "sources": [str(s) for s in sources],
    }
    skipped_list = [(str(p), skipped[p]) for p in sorted(skipped)]
    # Not fsynced, as the shards are not: after a power cut a torn file is refused (sizes, checksums,
    # JSON), never misread, and waiting for the disk would double the time of a large preparation.
    report = {"files_used": len(used), "validation": split.validation, "skipped": [{"path": p, "reason": r} for p, r in skipped_list]}
    write_json(out / "report.json", report, durable=False)
    write_json(out / META, meta, durable=False)  # last: its presence marks the folder complete
    remove_stale_shards(out, {s["file"] for w in writers for s in w.shards})
    return PrepareReport(
        out,
        len(used),
        skipped_list,
        {s: splits[s]["tokens"] for s in splits},
        {s: splits[s]["units"] for s in splits},
        input_bytes,
        time.perf_counter() - start,
        modality.vocab_size,
        shards=sum(len(w.shards) for w in writers),
        validation=split.validation,
    )


@contextlib.contextmanager
def _discarded_on_failure(writers: list[SplitWriter]) -> Iterator[None]:
    """Any failure or interruption inside removes the writers' temporary shards, then goes on."""
    try:
        yield
    except BaseException:
        for writer in writers:
            writer.discard()
        raise


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a kill, a job scheduler's end of time) cleans up as Ctrl-C does: workers stopped,
    temporary shards removed."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _clear_meta(out: Path) -> None:
    """The folder exists and its old ``meta.json`` is gone: old shards stop being valid before any changes."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / META).unlink(missing_ok=True)
    except OSError as err:
        raise WgptError(f"cannot write shards to {out}: {os_reason(err)}; pass a folder to --out") from None
