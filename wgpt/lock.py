"""One process per run folder: an advisory lock on ``RUN/.lock`` for as long as a run writes there.

The lock is ``flock`` on a file in the run folder, so the kernel releases it when the process
ends, however it ends (a crash, ``kill -9``): a lock file left behind by a dead run holds no lock
and the next run takes it over. The file names its holder (PID, host, start time) so that a
second run can say which process to wait for.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wgpt.errors import WgptError

LOCK_NAME = ".lock"


def holder(folder: Path) -> dict[str, Any] | None:
    """Who holds ``folder``'s lock now, or None when no live process does (no file, or a stale one)."""
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if _try_lock(fd, path):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        return _read_holder(path)
    finally:
        os.close(fd)


def refuse_if_held(folder: Path) -> None:
    """One line naming the process that holds ``folder``, if one does."""
    who = holder(folder)
    if who is not None:
        raise _in_use(folder, who)


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block; refuse at once if another process holds it."""
    path = Path(folder) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd, path):
            os.close(fd)
            raise _in_use(folder, _read_holder(path) or {})
        if _same_file(fd, path):  # not a file another run unlinked while we waited for it
            break
        os.close(fd)
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a run waiting on this file sees it is gone and opens a new one
        os.close(fd)


def _try_lock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):  # a file system without locks
            raise WgptError(f"cannot lock {path}: this file system does not support locks; put the run folder on a local disk") from None
        raise


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    fst = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (fst.st_dev, fst.st_ino)


def _read_holder(path: Path) -> dict[str, Any] | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _in_use(folder: Path, who: dict[str, Any]) -> WgptError:
    pid, host, started = who.get("pid", "?"), who.get("host"), who.get("started")
    where = "" if host in (None, socket.gethostname()) else f" on {host}"
    since = f", since {started}" if started else ""
    return WgptError(
        f"{folder} is in use by another wgpt run (PID {pid}{where}{since}): wait for it to finish or stop it, or pass another --out"
    )
