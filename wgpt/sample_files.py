"""From a checkpoint to files: prompt through the modality, generate, write through the modality."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from torch import Tensor

from wgpt.checkpoint import load_checkpoint, modality_of, model_from_checkpoint
from wgpt.config import MAX_SEED
from wgpt.devices import pick_device
from wgpt.errors import WgptError
from wgpt.generation import check_prompt, check_sampling, generate
from wgpt.io import check_writable
from wgpt.limits import check_fits
from wgpt.modalities import Modality
from wgpt.progress import progress_bar

MAX_NEW_TOKENS = 20_000_000  # 21 minutes of 16 kHz audio; 160 MB of ids a sample
MAX_SAMPLES = 256
MAX_LENGTH = {"second": 3600.0, "bar": 2000}  # a MIDI sample asked in seconds or bars: an hour at most
SHORT = 0.75  # a MIDI sample with notes in less of the length asked than this is reported
_LENGTH_FLAGS = {"--seconds": ("second", "audio and MIDI"), "--bars": ("bar", "MIDI")}


@dataclass
class SampleRequest:
    ckpt: Path
    out: Path | None  # None: a text model's one sample goes to ``stream_to`` only
    prompt: str | None = None
    prompt_file: Path | None = None
    tokens: int | None = None
    seconds: float | None = None  # audio: samples to generate; MIDI: the piece's length
    bars: int | None = None  # MIDI: the piece's length in bars
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int = 0
    num_samples: int = 1
    use_cache: bool = True
    trim_prompt: bool = False
    soundfont: Path | None = None
    device: str = "auto"


def output_paths(out: Path, count: int) -> list[Path]:
    """``out`` itself for one sample; ``name-1.ext``, ``name-2.ext``, ... for several."""
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, count + 1)]


def new_token_count(req: SampleRequest, modality: Modality) -> tuple[int, tuple[str, float] | None]:
    """(new tokens to generate at most, the length asked in the modality's own unit or None).

    Audio's --seconds is an exact count of samples; MIDI's --seconds and --bars are a length the
    piece must reach, so generation stops when it does and the piece is cut there."""
    asked = {flag: value for flag, value in (("--seconds", req.seconds), ("--bars", req.bars)) if value is not None}
    if len(asked) > 1 or (asked and req.tokens is not None):
        raise WgptError(
            f"give one of --tokens, --seconds or --bars, not {' and '.join(([] if req.tokens is None else ['--tokens']) + list(asked))}"
        )
    if req.seconds is not None and modality.tokens_per_second is not None:
        most = MAX_NEW_TOKENS / modality.tokens_per_second
        if not 0 < req.seconds <= most:
            raise WgptError(
                f"--seconds must be a positive number of at most {most:,.0f} ({MAX_NEW_TOKENS:,} samples at {modality.tokens_per_second:,.0f} Hz), got {req.seconds}"
            )
        return max(1, round(req.seconds * modality.tokens_per_second)), None
    if asked:
        ((flag, amount),) = asked.items()
        unit, models = _LENGTH_FLAGS[flag]
        if unit not in modality.length_units:
            raise WgptError(f"{flag} applies to {models} models; this is a {modality.name} model: use --tokens")
        if not 0 < amount <= MAX_LENGTH[unit]:
            raise WgptError(f"{flag} must be a positive number of at most {MAX_LENGTH[unit]:,g}, got {amount}")
        return min(MAX_NEW_TOKENS, math.ceil(amount * modality.length_units[unit]) + 64), (unit, float(amount))
    if req.tokens is None:
        return (round(modality.tokens_per_second) if modality.tokens_per_second else 500), None
    if not 1 <= req.tokens <= MAX_NEW_TOKENS:
        raise WgptError(f"--tokens must be at least 1 and at most {MAX_NEW_TOKENS:,}, got {req.tokens:,}")
    return req.tokens, None


class _LengthReached:
    """Generation's ``stop``: every sample's piece lasts ``target`` units, or has ended. Pieces are
    decoded after 16 new tokens, then each time the count has grown by an eighth: the checks cost
    a constant share of the decoding, however long the piece."""

    def __init__(self, modality: Modality, prompt: list[int], unit: str, target: float) -> None:
        self.modality, self.prompt, self.unit, self.target = modality, prompt, unit, target
        self.next_check = 16

    def __call__(self, new: Tensor) -> bool:
        n = new.shape[1]
        if n < self.next_check:
            return False
        self.next_check = max(n + 16, n + n // 8)
        for row in new.tolist():
            got, ended = self.modality.length(self.prompt + row, self.unit)
            if got < self.target and not ended:
                return False
        return True


def prompt_ids(req: SampleRequest, modality: Modality, context: int) -> tuple[list[int], bool]:
    """(ids, whether they belong in the output): a user prompt is kept, the default start is not."""
    if req.prompt is not None and req.prompt_file is not None:
        raise WgptError("give either --prompt or --prompt-file, not both")
    if req.prompt_file is not None and not req.prompt_file.is_file():
        what = "is a folder" if req.prompt_file.is_dir() else "does not exist"
        raise WgptError(f"prompt file {req.prompt_file} {what}: pass a file")
    if req.prompt is None and req.prompt_file is None:
        return modality.start_ids(), False
    ids = modality.encode_prompt(req.prompt, req.prompt_file)
    if not ids:
        raise WgptError("the prompt encodes to no tokens: give a longer one")
    return ids, True


def sample_to_files(
    req: SampleRequest, stream_to: TextIO | None = None, show_progress: bool = False, say: Callable[[str], None] = lambda _: None
) -> list[Path]:
    """Generate ``req.num_samples`` continuations and write each to its own file.

    ``stream_to`` prints a text model's single sample as it is generated (with ``req.out`` None,
    it is the only output and no file is written); otherwise
    ``show_progress`` shows a progress bar over the new tokens. ``say`` hears of a MIDI sample
    that fell short of the --seconds or --bars asked.
    """
    check_sampling(req.temperature, req.top_k, req.top_p)
    if not 1 <= req.num_samples <= MAX_SAMPLES:
        raise WgptError(f"--num-samples must be at least 1 and at most {MAX_SAMPLES}, got {req.num_samples:,}")
    if not 0 <= req.seed <= MAX_SEED:
        raise WgptError(f"--seed must be a whole number from 0 to {MAX_SEED:,}, got {req.seed}")
    ckpt = load_checkpoint(req.ckpt)
    modality = modality_of(ckpt, req.ckpt)
    if req.out is None:
        if not modality.prints_as_text:
            raise WgptError(f"a {modality.name} model writes files: pass --out, e.g. --out sample{modality.output_extensions[0]}")
        if req.num_samples > 1:
            raise WgptError(f"--num-samples {req.num_samples} writes one file per sample: pass --out, e.g. --out sample.txt")
        if stream_to is None:
            raise WgptError("no output: pass a file to write (--out, e.g. --out sample.txt) or a stream to print to")
    elif req.out.suffix.lower() not in modality.output_extensions:
        raise WgptError(f"{req.out}: this {modality.name} model writes {', '.join(modality.output_extensions)} files; change --out")
    if req.soundfont is not None:
        modality.use_soundfont(req.soundfont)
    model = model_from_checkpoint(ckpt).to(pick_device(req.device))
    n_new, length = new_token_count(req, modality)
    prompt, keep_prompt = prompt_ids(req, modality, model.cfg.context)
    kept = prompt if keep_prompt else []
    stop = None
    if length is not None:  # the continuation's length: a prompt's own comes on top
        unit, amount = length
        target = amount + (modality.length(kept, unit)[0] if kept else 0.0)
        stop = _LengthReached(modality, kept, unit, target)
    context_prompt = prompt
    if len(prompt) > model.cfg.context and req.trim_prompt:
        context_prompt = prompt[-model.cfg.context :]
    check_prompt(context_prompt, model.cfg.context)  # before anything is printed
    cfg = model.cfg
    per_sample = 8 * (len(context_prompt) + n_new) + 8 * cfg.n_layer * cfg.context * cfg.d_model + 4 * cfg.vocab_size  # ids, cache, logits
    check_fits(req.num_samples * per_sample, f"{req.num_samples} sample(s) of {n_new:,} tokens", "lower --num-samples or --tokens")
    paths = [] if req.out is None else output_paths(req.out, req.num_samples)
    for path in paths:
        check_writable(path)  # before generating, which can take minutes
    stream = _TextStream.open(modality, stream_to, prompt if keep_prompt else []) if req.num_samples == 1 else None
    show_bar = show_progress and stream is None
    with progress_bar(show_bar) as bar:
        what = f"sampling {length[1]:g} {length[0]}s" if length else "sampling"  # tokens unknown until the length is reached
        task = bar.add_task(what, total=None if length else n_new)

        def advance(_column: Tensor) -> None:
            bar.advance(task)

        on_step = advance if show_bar else stream
        samples = generate(
            model,
            context_prompt,
            n_new,
            temperature=req.temperature,
            top_k=req.top_k,
            top_p=req.top_p,
            num_samples=req.num_samples,
            seed=req.seed,
            use_cache=req.use_cache,
            on_step=on_step,
            allowed=modality.next_token_rule(length[0] if length else None),
            stop=stop,
        )
    if stream is not None:
        stream.close()
    written = []
    for path, ids in zip(paths, samples, strict=False):
        ids = kept + ids
        if length is not None:
            reached, ended = modality.length(ids, unit)
            ids = modality.cut(ids, unit, target)
            got = modality.length(ids, unit)[0] - (target - amount)  # the continuation's own length
            if reached < target:
                why = "the model ended the piece" if ended else f"after {len(ids) - len(kept):,} tokens"
                say(f"{path}: {got:g} of the {amount:g} {unit}s asked ({why})")
            elif got < SHORT * amount:  # reached only by a note after a long silence, which the cut drops
                say(f"{path}: notes in {got:g} of the {amount:g} {unit}s asked (the model left the rest silent)")
        written += modality.write(ids, path)
    return written


# Control characters other than tab, line feed and carriage return would act on the terminal
# (an untrained byte model emits ESC sequences); the stream shows them as U+FFFD. Files keep them.
_UNPRINTABLE = {c: "\ufffd" for c in [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), *range(0x7F, 0xA0)]}


class _TextStream:
    """Prints a text model's output as it is generated: the prompt, then each new token once it decodes."""

    def __init__(self, decode: Callable[[list[int]], str], out: TextIO) -> None:
        self.decode, self.out = decode, out
        self.pending: list[int] = []
        self.last = "\n"

    @classmethod
    def open(cls, modality: Modality, out: TextIO | None, prompt: list[int]) -> _TextStream | None:
        """A stream for text models when ``out`` is given; None otherwise."""
        if out is None or not modality.prints_as_text:
            return None
        stream = cls(modality.decode, out)
        stream._write(modality.decode(prompt))
        return stream

    def __call__(self, tok: Tensor) -> None:
        self.pending.append(int(tok[0]))
        text = self.decode(self.pending)
        if text.endswith("\ufffd"):  # a character still incomplete: wait for its other bytes
            return
        self._write(text)
        self.pending.clear()

    def close(self) -> None:
        """End the printed text with a line break, so what follows starts on its own line."""
        if self.pending:
            self._write(self.decode(self.pending))
        if self.last != "\n":
            self._write("\n")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text.translate(_UNPRINTABLE))
            self.out.flush()
            self.last = text[-1]
