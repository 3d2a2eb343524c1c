"""Samples for the page: generated from a run's checkpoints, beside validation slices of the same length.

Nothing here knows which modality it samples. A sequence of ids is shown through the files the
modality writes for ``wgpt sample``: a ``.txt`` as text, a ``.mid`` as a piano roll, a ``.wav``
as a player (MIDI writes both of the last two). Generated samples start from the modality's start
ids, as unprompted ``wgpt sample`` does; each validation slice starts where those ids occur in
the validation split (a line start for text, a piece start for MIDI), so both are the same number
of tokens following the same context.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wgpt.checkpoint import load_checkpoint, model_from_checkpoint
from wgpt.devices import pick_device
from wgpt.errors import WgptError
from wgpt.evaluation import compare_statistics, resolve_data
from wgpt.generation import generate
from wgpt.modalities import Modality, modality_from_spec
from wgpt.report.media import for_embedding
from wgpt.report.svg import Note
from wgpt.runs import step_checkpoints
from wgpt.sample_files import SampleRequest, new_token_count
from wgpt.shards import open_training_data

SCAN = 50_000_000  # validation ids searched for start positions: a memory-mapped split is read only this far


@dataclass
class SampleOptions:
    count: int = 1  # samples per checkpoint
    tokens: int | None = None  # new tokens per sample (default: `wgpt sample`'s)
    seconds: float | None = None  # audio runs: seconds instead of tokens
    every: int | None = None  # sample the step checkpoints at multiples of this (``--keep-every``)
    temperature: float = 1.0
    top_k: int | None = None
    seed: int = 0
    device: str = "auto"


@dataclass
class View:
    """One sequence as the page shows it."""

    text: str | None = None
    audio: tuple[np.ndarray, int] | None = None  # samples in [-1, 1], rate (Hz), ready to embed
    notes: list[Note] | None = None


@dataclass
class SampleSet:
    """The samples of one checkpoint, and their statistics against the validation slices."""

    label: str
    views: list[View]
    statistics: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunSamples:
    tokens: int  # new tokens per sample (and per validation slice)
    validation: list[View]  # empty when the run's data is not at hand
    sets: list[SampleSet]
    note: str = ""  # why validation is missing


def view_of(modality: Modality, ids: list[int]) -> View:
    """What the files ``modality`` writes for ``ids`` show: text, notes, audio."""
    view = View()
    with tempfile.TemporaryDirectory() as tmp:
        for ext in dict.fromkeys(modality.output_extensions):
            path = Path(tmp) / f"sample{ext}"
            if ext == ".txt":
                modality.write(ids, path)
                view.text = path.read_text(encoding="utf-8", errors="replace")
            elif ext == ".mid":
                modality.write(ids, path)
                view.notes = read_notes(path)
            elif ext == ".wav":
                import soundfile

                modality.write(ids, path)
                pcm, rate = soundfile.read(str(path), dtype="float32")
                view.audio = for_embedding(pcm, rate)
    return view


def read_notes(path: Path) -> list[Note]:
    """Every note of a MIDI file, in seconds, with its instrument."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(str(path))
    return [Note(n.start, n.end, n.pitch, inst.program, inst.is_drum) for inst in pm.instruments for n in inst.notes]


def checkpoints_to_sample(run: Path, every: int | None) -> list[tuple[str, Path]]:
    """(label, checkpoint): best.pt, after the step checkpoints at multiples of ``every`` when given."""
    best = run / "best.pt" if (run / "best.pt").is_file() else run / "last.pt"
    if not best.is_file():
        raise WgptError(f"{run} has no best.pt or last.pt to sample from: pass --samples 0, or a run that saved a checkpoint")
    chosen = []
    if every is not None:
        if every < 1:
            raise WgptError(f"--every must be at least 1, got {every}")
        kept = step_checkpoints(run)
        chosen = [(f"step {step}", path) for step, path in kept.items() if step % every == 0]
        if not chosen:
            hint = f"it kept steps {', '.join(map(str, list(kept)[:5]))}" if kept else "train with --keep-every N to keep them"
            raise WgptError(f"{run} has no step checkpoints at multiples of {every} for --every ({hint})")
    return [*chosen, (best.name, best)]


def validation_slices(val: Any, start: list[int], n: int, count: int, seed: int) -> list[list[int]]:
    """``count`` slices of ``n`` ids of the validation split, each following an occurrence of the
    first start id (anywhere, if it never occurs), at seeded positions."""
    lead = len(start)
    limit = len(val) - lead - n
    if limit <= 0:
        return [np.asarray(val[lead:]).tolist()] * count
    candidates = np.flatnonzero(np.asarray(val[: min(limit, SCAN)]) == start[0]) if start else np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    picks = rng.choice(candidates, count, replace=candidates.size < count) if candidates.size else rng.integers(0, limit, count)
    return [np.asarray(val[p + lead : p + lead + n]).tolist() for p in sorted(picks)]


def sample_length(modality: Modality, opts: SampleOptions) -> int:
    """New tokens per sample, as `wgpt sample` counts them; a report of several runs gives
    ``seconds`` to its audio runs and ``tokens`` to the others."""
    timed = modality.tokens_per_second is not None and opts.seconds is not None
    request = SampleRequest(ckpt=Path(), out=None, tokens=None if timed else opts.tokens, seconds=opts.seconds if timed else None)
    return new_token_count(request, modality)[0]


def sample_run(run: Path, opts: SampleOptions, say: Callable[[str], None] = lambda _line: None) -> RunSamples:
    """Samples of every chosen checkpoint of ``run``, with validation slices beside them."""
    chosen = checkpoints_to_sample(run, opts.every)
    device = pick_device(opts.device)
    first = load_checkpoint(chosen[0][1])
    modality = modality_from_spec(first["modality"])
    n = sample_length(modality, opts)
    validation, reference, note = [], [], ""
    try:
        val = open_training_data(resolve_data(first, None, chosen[0][1])).val
        reference = validation_slices(val, modality.start_ids(), n, opts.count, opts.seed)
        validation = [view_of(modality, ids) for ids in reference]
    except WgptError as err:  # the run's data moved or was deleted: samples alone are still worth seeing
        note = f"no validation slices: {err}"
    val_stats = modality.statistics(reference) if reference else {}
    untimed = opts.seconds is not None and modality.tokens_per_second is None  # --seconds is audio's; say what this run got
    ignored = " (--seconds is for audio runs)" if untimed else ""
    sets = []
    for label, path in chosen:
        ckpt = first if path == chosen[0][1] else load_checkpoint(path)
        model = model_from_checkpoint(ckpt).to(device)
        step = ckpt.get("step")
        say(f"sampling {path}{'' if step is None else f' (step {step})'}: {opts.count} x {n:,} tokens{ignored}")
        ids = generate(
            model,
            modality.start_ids(),
            n,
            temperature=opts.temperature,
            top_k=opts.top_k,
            num_samples=opts.count,
            seed=opts.seed,
            allowed=modality.next_token_rule(),
        )
        stats = compare_statistics(modality.statistics(ids), val_stats) if val_stats else {}
        title = label if step is None or label.startswith("step") else f"{label} (step {step})"
        sets.append(SampleSet(title, [view_of(modality, s) for s in ids], stats))
    return RunSamples(n, validation, sets, note)
