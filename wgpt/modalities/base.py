"""The one interface every modality implements.

A modality turns files into token ids and token ids back into files. Everything downstream of
the token shards (training, evaluation, the sampling loop) sees only ids and this interface, so
text, MIDI and audio share one pipeline. Preparation runs in three steps:

1. ``load(path)`` in worker processes: read and decode one file into a picklable payload, or
   raise ``SkipFile`` with a reason (the file is reported, the run goes on);
2. ``fit(train_payloads)`` once: learn a vocabulary from the training split only (BPE, chars);
3. ``tokenize(payload)``: payload to ids plus the counts of natural units it covers
   (bytes, characters, samples, notes), which evaluation turns into bits per unit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class SkipFile(Exception):
    """This file cannot be used; the message says why. Preparation skips and reports it."""


class Modality(ABC):
    name: ClassVar[str]
    extensions: ClassVar[tuple[str, ...]]  # picked up when a folder is scanned
    output_extensions: ClassVar[tuple[str, ...]]  # what `wgpt sample --out` can write
    unit: ClassVar[str]  # the natural unit evaluation reports bits per: byte, sample, note...

    separator: int | None = None  # id placed between documents, if the vocabulary has one
    tokens_per_second: float | None = None  # set by time-based modalities (audio)

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def spec(self) -> dict[str, Any]:
        """JSON-serialisable description that ``from_spec`` turns back into this modality."""

    @classmethod
    @abstractmethod
    def from_spec(cls, spec: dict[str, Any]) -> Modality: ...

    @abstractmethod
    def load(self, path: Path) -> Any:
        """Read one file into a payload for ``fit``/``tokenize``; raise ``SkipFile`` if unusable."""

    def fit(self, payloads: list[Any]) -> None:  # noqa: B027 - optional hook
        """Learn the vocabulary from the training payloads. Fixed vocabularies need nothing."""

    @abstractmethod
    def tokenize(self, payload: Any) -> tuple[np.ndarray, dict[str, float]]:
        """Payload to (ids, unit counts), e.g. ``(ids, {"byte": 1200, "char": 1180})``."""

    def split_payload(self, payload: Any, fraction: float) -> tuple[Any, Any] | None:
        """Split one payload into (train, val) when there is a single file; ``None`` if impossible."""
        return None

    @abstractmethod
    def encode_prompt(self, text: str | None, path: Path | None) -> list[int]:
        """Ids of a prompt given as text or as a file of this modality."""

    def next_token_rule(self) -> Callable[[list[int], int], np.ndarray] | None:
        """What generation may emit next: a function of (ids so far, tokens still to come) giving a
        boolean mask over the vocabulary, or ``None`` when every id is always allowed. Text's bytes
        tokenizer uses it to keep samples valid UTF-8."""
        return None

    def start_ids(self) -> list[int]:
        """What generation starts from when no prompt is given: the separator by default."""
        if self.separator is None:
            raise NotImplementedError(f"{self.name} has no separator: override start_ids")
        return [self.separator]

    @abstractmethod
    def write(self, ids: list[int], path: Path) -> None:
        """Write generated ids to ``path`` (its extension is one of ``output_extensions``)."""

    def statistics(self, sequences: list[list[int]]) -> dict[str, float | list[float]]:
        """Descriptive statistics over token sequences, shown by ``wgpt eval`` for generated
        samples beside validation windows. List values are distributions (e.g. a pitch-class
        histogram), compared by total-variation distance."""
        return {}
