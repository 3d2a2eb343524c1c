"""An ordered, bounded map over worker processes: how preparation spreads its work.

Results come back in the order of the inputs, whatever the number of workers, so what is written
from them is byte-identical for any ``--workers``. At most ``window`` tasks are in flight at once,
so memory is bounded by the work in flight, never by the size of the corpus. Small items travel
in groups (``group``), so that a folder of 170,000 small files does not pay 170,000 round trips.

Each worker gets the shared state (the modality, with its tokenizer) once, when it starts; the
functions mapped are module-level functions ``fn(state, item)``. On Linux workers are forked, which
needs no ``if __name__ == "__main__"`` guard in the caller's script and no re-import; elsewhere
they are spawned, as Python does by default there. With one worker everything runs in this process.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

GROUP_BYTES = 1 << 20  # small items travel in groups of about this much input: fewer round trips
GROUP_ITEMS = 256
FLIGHT_BYTES = 16 << 20  # input in flight beyond one task per worker: results wait in memory until written
_STATE: Any = None  # each worker's copy of the shared state, set once by _start_worker
PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies


def _start_worker(state: Any, parent: int) -> None:
    global _STATE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already; no thread pools inside
    _die_with(parent)
    _STATE = state


def _die_with(parent: int) -> None:
    """On Linux, have the kernel end this worker when its parent dies, even by SIGKILL: a killed
    ``wgpt prepare`` leaves no workers behind, grinding on and holding its output pipes open."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before the request took effect
            os._exit(1)


def _run_group(fn: Callable[[Any, Any], Any], items: list[Any]) -> list[Any]:
    return [fn(_STATE, item) for item in items]


def _noop() -> None:
    return None


@contextlib.contextmanager
def _quiet_tokenizers_fork() -> Iterator[None]:
    """Fork with tokenizers' thread pool marked off: a parent that trained BPE has used it, and
    tokenizers would print a warning in every forked child (which never uses the pool)."""
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        if before is None:
            del os.environ["TOKENIZERS_PARALLELISM"]
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


class WorkerPool:
    """``map`` runs ``fn(state, item)`` over items in worker processes and yields results in order."""

    def __init__(self, state: Any, workers: int) -> None:
        self.state, self.workers = state, max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_start_worker, initargs=(self.state, os.getpid()))
            with _quiet_tokenizers_fork():
                self._pool.submit(_noop).result()  # forked processes all start on the first task
        return self._pool

    def update(self, state: Any) -> None:
        """New shared state (a fitted tokenizer): workers started from now on get it."""
        self.close()
        self.state = state

    def map(self, fn: Callable[[Any, T], R], items: Iterable[T], sizes: Iterable[int] | None = None) -> Iterator[R]:
        """``fn(state, item)`` for every item, in order. ``sizes`` (bytes of input per item) group
        small items into tasks of about ``GROUP_BYTES`` and bound the input in flight to about
        ``FLIGHT_BYTES``, beyond the one task per worker that keeps every worker busy."""
        if self.workers == 1:
            for item in items:
                yield fn(self.state, item)
            return
        sizes = sizes if sizes is not None else itertools.repeat(GROUP_BYTES)
        groups = _grouped(zip(items, sizes, strict=False))  # sizes may be an endless repeat
        pool, pending, flight = self._executor(), deque(), 0
        for chunk, cost in groups:
            pending.append((pool.submit(_run_group, fn, chunk), cost))
            flight += cost
            while pending and len(pending) >= self.workers and flight >= FLIGHT_BYTES:
                future, done = pending.popleft()
                flight -= done
                yield from future.result()
        for future, _ in pending:
            yield from future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _grouped(sized: Iterable[tuple[T, int]]) -> Iterator[tuple[list[T], int]]:
    """Consecutive items in groups of about ``GROUP_BYTES`` (at most ``GROUP_ITEMS``), with their total size."""
    chunk: list[T] = []
    total = 0
    for item, size in sized:
        chunk.append(item)
        total += size
        if total >= GROUP_BYTES or len(chunk) >= GROUP_ITEMS:
            yield chunk, total
            chunk, total = [], 0
    if chunk:
        yield chunk, total
