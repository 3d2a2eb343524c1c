"""Atomic file writes: a temporary file beside the target, then a rename.

A crash or Ctrl-C mid-write leaves the previous file (or none), never a half-written one.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from wgpt.errors import WgptError


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` on success."""
    path = Path(path)
    tmp = temp_beside(path)
    try:
        yield Path(tmp)
        try:
            os.replace(tmp, path)
        except OSError as err:  # e.g. a folder already has that name
            raise WgptError(f"cannot write {path}: {os_reason(err)}; choose another file name") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def check_writable(path: Path) -> None:
    """Fail now, with ``atomic_path``'s messages, if ``path`` could not be written later (before long work)."""
    path = Path(path)
    if path.is_dir():
        raise WgptError(f"cannot write {path}: a folder has that name; choose another file name")
    os.unlink(temp_beside(path))  # the folder exists (or was made) and takes a new file


def temp_beside(path: Path) -> str:
    """A new empty temporary file in ``path``'s folder (made if missing), with the usual permissions;
    a clear error where that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise WgptError(f"cannot write {path}: {os_reason(err)}; choose a writable location") from None
    os.close(fd)
    usual_mode(tmp)  # mkstemp makes 0600
    return tmp


def usual_mode(path: Path | str) -> None:
    """Give a file the permissions a plain ``open`` would (0666 less the umask)."""
    os.chmod(path, 0o666 & ~_umask())


def os_reason(err: OSError) -> str:
    """What went wrong, in words: mkdir on a path through a file says "File exists" or "Not a directory"."""
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        return "part of that path is a file, not a folder"
    return err.strerror or str(err)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: Path, durable: bool = True) -> Iterator[BinaryIO]:
    """A file written under a temporary name, renamed into place when complete; ``durable``
    also waits for it to reach the disk (fsync), which can take seconds after a large write."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f
        if durable:
            f.flush()
            os.fsync(f.fileno())


def write_atomic(path: Path, data: bytes, durable: bool = True) -> None:
    with atomic_open(path, durable) as f:
        f.write(data)


def write_wav(path: Path, pcm: np.ndarray, rate: int) -> None:
    """Mono 16-bit PCM ``pcm`` as a WAV file at ``rate`` Hz, written atomically."""
    write_atomic(path, wav_bytes(pcm, rate), durable=False)


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """Mono 16-bit PCM ``pcm`` as the bytes of a WAV file at ``rate`` Hz (in memory: also for data URIs)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(np.asarray(pcm, dtype="<i2").tobytes())
    return buffer.getvalue()


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: JSON has neither."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path, obj: Any, durable: bool = True) -> None:
    write_atomic(path, (json.dumps(obj, indent=2) + "\n").encode("utf-8"), durable)
