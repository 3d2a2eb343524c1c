"""Experiment loggers: the rows of ``metrics.jsonl``, also sent to CSV, TensorBoard or Weights & Biases.

``wgpt train --logger csv --logger tensorboard`` (repeatable). Each logger is one small class with
``log(row)``, ``audio(tag, samples, rate, step)`` and ``close()``; the training loop calls them on
rank 0 where it writes ``metrics.jsonl``, with the same rows. Loggers that play sound
(``takes_audio``) also get a short generated sample at each evaluation of a MIDI or audio run
(``--log-audio SECONDS``).

- ``csv``: ``RUN/metrics.csv`` (standard library), one line per row;
- ``tensorboard``: event files under ``RUN/tensorboard`` (``pip install "wgpt[tensorboard]"``);
- ``wandb``: a Weights & Biases run under ``RUN/wandb``, offline unless ``WANDB_MODE`` says
  otherwise (``pip install "wgpt[wandb]"``; ``wandb sync RUN/wandb/offline-run-*`` uploads it).
"""

from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from wgpt.errors import WgptError

PACKAGES = {"csv": None, "tensorboard": "tensorboard", "wandb": "wandb"}  # logger -> the package (and pip extra) it needs


class Logger:
    """The interface: every row of metrics.jsonl, optionally sounds, then ``close``."""

    takes_audio: ClassVar[bool] = False

    def log(self, row: dict[str, Any]) -> None:
        raise NotImplementedError

    def audio(self, tag: str, samples: np.ndarray, rate: int, step: int) -> None:
        """A mono waveform in [-1, 1] at ``rate`` Hz; loggers that cannot play sound ignore it."""

    def close(self) -> None:
        pass


def numbers(row: dict[str, Any]) -> dict[str, float]:
    """The row's scalars, without the step they are logged at (a first row has no train_loss: None)."""
    return {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class CsvLogger(Logger):
    """``RUN/metrics.csv``, rewritten from the rows a resumed run keeps, then appended to."""

    def __init__(self, out: Path, rows: list[dict[str, Any]]) -> None:
        self.path = out / "metrics.csv"
        self.fields: list[str] = list(rows[0]) if rows else []
        with open(self.path, "w", newline="", encoding="utf-8") as f:
            if rows:
                self._writer(f, header=True).writerows(rows)

    def _writer(self, f: Any, header: bool = False) -> csv.DictWriter:
        writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
        if header:
            writer.writeheader()
        return writer

    def log(self, row: dict[str, Any]) -> None:
        first = not self.fields
        self.fields = self.fields or list(row)
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            self._writer(f, header=first).writerow(row)


class TensorBoardLogger(Logger):
    """Scalars under their metrics.jsonl names in ``RUN/tensorboard``; samples as audio."""

    takes_audio = True

    def __init__(self, out: Path, start_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: a resumed run drops the events an interrupted one wrote after its last.pt
        self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=start_step + 1 if start_step else None)

    def log(self, row: dict[str, Any]) -> None:
        for key, value in numbers(row).items():
            self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def audio(self, tag: str, samples: np.ndarray, rate: int, step: int) -> None:
        import torch

        self.writer.add_audio(tag, torch.from_numpy(np.asarray(samples, dtype=np.float32)), step, sample_rate=rate)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger(Logger):
    """A Weights & Biases run, offline by default: nothing leaves the machine unless asked."""

    takes_audio = True

    def __init__(self, out: Path, config: dict[str, Any]) -> None:
        import wandb

        self.wandb = wandb
        mode = os.environ.get("WANDB_MODE", "offline")
        settings = wandb.Settings(quiet=True, console="off")  # wgpt's own lines only; the terminal is not copied into the run
        self.run = wandb.init(
            project="wgpt", name=out.name, dir=str(out), config=config, mode=mode, settings=settings, reinit="finish_previous"
        )

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(numbers(row), step=row["step"])

    def audio(self, tag: str, samples: np.ndarray, rate: int, step: int) -> None:
        self.run.log({tag: self.wandb.Audio(np.asarray(samples, dtype=np.float32), sample_rate=rate)}, step=step)

    def close(self) -> None:
        self.run.finish()


def check_loggers(names: list[str]) -> None:
    """Refuse, before training, a logger wgpt does not know or whose package is not installed."""
    for name in names:
        if name not in PACKAGES:
            raise WgptError(f"unknown --logger {name!r}: choose csv, tensorboard or wandb")
        package = PACKAGES[name]
        if package is not None and importlib.util.find_spec(package) is None:
            raise WgptError(f'--logger {name} needs the {package} package: pip install "wgpt[{name}]"')


def open_loggers(names: list[str], out: Path, rows: list[dict[str, Any]], config: dict[str, Any]) -> list[Logger]:
    """The loggers ``names`` for the run in ``out``, which keeps ``rows`` of an earlier part (resume)."""
    check_loggers(names)
    start = rows[-1]["step"] if rows else 0
    made = {
        "csv": lambda: CsvLogger(out, rows),
        "tensorboard": lambda: TensorBoardLogger(out, start),
        "wandb": lambda: WandbLogger(out, config),
    }
    return [made[name]() for name in dict.fromkeys(names)]  # each once, in the order given
