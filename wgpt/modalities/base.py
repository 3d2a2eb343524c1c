"""The one interface every modality implements.

A modality turns files into token ids and token ids back into files. Everything downstream of
the token shards (training, evaluation, the sampling loop) sees only ids and this interface, so
text, MIDI and audio share one pipeline.

Preparation (``wgpt.preparation``) never holds a file whole unless the modality asks for it: every
file is cut into pieces that worker processes read and tokenize one at a time.

1. ``plan(path)`` (in a worker): a cheap look at one file, giving the span of positions it holds,
   in the modality's own unit (bytes of text, frames of audio), or ``SkipFile`` with a reason.
   Files longer than ``piece_extent`` are cut into pieces at positions ``boundary`` chooses (text
   between lines, audio on whole resampling periods); ``piece_extent = None`` keeps files whole.
2. ``scan(piece)`` (workers, only for files of several pieces): check a piece and return what
   encoding the whole file needs to know (audio: its peak); ``combine`` merges a file's facts.
3. ``fit_sample(piece)`` (workers) and ``fit(samples)`` (once): learn a vocabulary from the
   training split only (characters, BPE); ``fit_bytes`` caps how much of it ``fit`` sees.
4. ``encode(piece, facts)`` (workers): the piece's ids plus the counts of natural units it covers
   (bytes, characters, samples, notes), which evaluation turns into bits per unit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wgpt.errors import WgptError


def describe_units(units: dict[str, float]) -> str:
    """Counts of natural units, for people: a duration (the ``second`` unit) in hours, the rest counted."""
    return ", ".join(f"{v / 3600:,.2f} hours" if k == "second" else f"{v:,.0f} {k}s" for k, v in units.items())


class SkipFile(Exception):
    """This file cannot be used; the message says why. Preparation skips and reports it."""


@dataclass(frozen=True)
class Piece:
    """A span ``[start, stop)`` of one file, in the modality's positions; the unit of parallel work."""

    path: Path
    start: int
    stop: int
    first: bool = True  # the file's first piece: a document's separator goes before it
    whole: bool = True  # the file's only piece: encoding sees all of it and needs no scanned facts
    size: int = 0  # bytes of input it covers (progress, and sampling the data ``fit`` sees)


class Modality(ABC):
    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]  # picked up when a folder is scanned
    output_extensions: ClassVar[tuple[str, ...]]  # what `wgpt sample --out` can write
    piece_extent: ClassVar[int | None] = None  # positions per piece; None: every file is one piece
    position_unit: ClassVar[str] = "byte"  # what plan's and boundary's positions count
    prints_as_text: ClassVar[bool] = False  # ``decode`` gives text that `wgpt sample` can print as it is generated

    separator: int | None = None  # id placed before each document, if the vocabulary has one
    tokens_per_second: float | None = None  # set by time-based modalities (audio)
    # What a sample's length can be asked in besides tokens (MIDI: second, bar), with the tokens per
    # unit past which generation gives up on reaching it (a model that never moves time forward).
    length_units: ClassVar[dict[str, int]] = {}
    fit_bytes: int | None = None  # at most this many bytes of input reach ``fit``; None: all of the training split

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description that ``from_spec`` turns back into this modality."""

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: dict[str, Any]) -> Modality: ...

    def tokenizer_files(self) -> dict[str, str]:
        """The tokenizer as files other libraries load (file name -> text), which ``wgpt export``
        writes beside the weights; none where the ids need no tokenizer (bytes, audio samples)."""
        return {}

    def describe_ids(self) -> str:
        """One sentence saying what the ids are, for an export's config.json and model card."""
        return f"{self.name} token ids, {self.vocab_size} of them"

    # -- files to ids ---------------------------------------------------------------------
    def plan(self, path: Path) -> tuple[int, int]:
        """The span of positions ``path`` holds, after a cheap look (default: its bytes)."""
        size = path.stat().st_size
        if size == 0:
            raise SkipFile("empty file")
        return 0, size

    def boundary(self, path: Path, position: int) -> int:
        """The first position at or after ``position`` where ``path`` may be cut between two pieces."""
        raise NotImplementedError(f"{self.name} files are not cut into pieces")

    def scan(self, piece: Piece) -> Any:
        """Check one piece of a file of several pieces; what ``combine`` needs from it."""
        return None

    def combine(self, path: Path, facts: list[Any]) -> Any:
        """What encoding each piece of ``path`` needs to know about the whole file, from its pieces' scans."""
        return None

    @property
    def needs_fit(self) -> bool:
        """Whether ``fit`` learns anything (a fixed vocabulary needs no pass over the data)."""
        return False

    def fit_sample(self, piece: Piece) -> Any:
        """What ``fit`` learns from one training piece."""
        raise NotImplementedError

    def fit(self, samples: Iterable[Any], count: int) -> None:  # noqa: B027 - optional hook
        """Learn the vocabulary from ``count`` samples of the training split. Fixed vocabularies need nothing."""

    @abstractmethod
    def encode(self, piece: Piece, facts: Any = None) -> tuple[np.ndarray, dict[str, float]]:
        """A piece to (ids, unit counts), e.g. ``(ids, {"byte": 1200, "char": 1180})``."""

    def encode_file(self, path: Path) -> list[int]:
        """All ids of one small file (a prompt), through the same steps as preparation."""
        path = Path(path)
        try:
            start, stop = self.plan(path)
            return self.encode(Piece(path, start, stop))[0].tolist()
        except SkipFile as err:
            raise WgptError(f"prompt file {path}: {err}") from None
        except OSError as err:
            raise WgptError(f"cannot read prompt file {path}: {err.strerror or err}") from None

    @abstractmethod
    def encode_prompt(self, text: str | None, path: Path | None) -> list[int]:
        """Ids of a prompt given as text or as a file of this modality."""

    def next_token_rule(self, length_unit: str | None = None) -> Callable[[list[int], int], np.ndarray] | None:
        """What generation may emit next: a function of (ids so far, tokens still to come) giving a
        boolean mask over the vocabulary, or ``None`` when every id is always allowed. Text's bytes
        tokenizer uses it to keep samples valid UTF-8; MIDI, when a length is asked in
        ``length_unit``, to keep the piece from ending before it."""
        return None

    def start_ids(self) -> list[int]:
        """What generation starts from when no prompt is given: the separator by default."""
        if self.separator is None:
            raise NotImplementedError(f"{self.name} has no separator: override start_ids")
        return [self.separator]

    @abstractmethod
    def decode(self, ids: list[int]) -> Any:
        """Generated ids as the modality's own object: text, a ``symusic.Score``, a waveform."""

    @abstractmethod
    def write(self, ids: list[int], path: Path) -> list[Path]:
        """Write generated ids to ``path`` (its extension is one of ``output_extensions``); the files written."""

    def length(self, ids: list[int], unit: str) -> tuple[float, bool]:
        """(how long what ``write`` would write of ``ids`` lasts in ``unit``, one of ``length_units``;
        whether the piece has ended, so that more ids would add nothing to it)."""
        raise NotImplementedError(f"{self.name} samples are measured in tokens")

    def cut(self, ids: list[int], unit: str, amount: float) -> list[int]:
        """The longest prefix of ``ids`` whose ``length`` is at most ``amount``: lengths only grow
        with more ids, so a binary search over prefixes finds it."""
        good, bad = 0, len(ids) + 1  # prefix lengths known to fit / not to fit
        while bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if self.length(ids[:mid], unit)[0] <= amount else (good, mid)
        return ids[:good]

    def waveform(self, ids: list[int]) -> tuple[np.ndarray, int] | None:
        """Generated ids as sound, ``(mono samples in [-1, 1], rate in Hz)``, for loggers that play
        it (``wgpt.loggers``); ``None`` for modalities that do not sound."""
        return None

    def use_soundfont(self, path: Path) -> None:
        """Render ``.wav`` output through this SoundFont: only modalities that render notes can."""
        raise WgptError(f"--soundfont renders MIDI models; this is a {self.name} model")

    def statistics(self, sequences: list[list[int]]) -> dict[str, float | list[float]]:
        """Descriptive statistics over token sequences, shown by ``wgpt eval`` for generated
        samples beside validation windows. List values are distributions (e.g. a pitch-class
        histogram), compared by total-variation distance."""
        return {}
