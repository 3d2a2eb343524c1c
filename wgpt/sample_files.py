"""From a checkpoint to files: prompt through the modality, generate, write through the modality."""

from __future__ import annotations

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


@dataclass
class SampleRequest:
    ckpt: Path
    out: Path | None  # None: a text model's one sample goes to ``stream_to`` only
    prompt: str | None = None
    prompt_file: Path | None = None
    tokens: int | None = None
    seconds: float | None = None
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


def new_token_count(req: SampleRequest, modality: Modality) -> int:
    if req.seconds is not None:
        if modality.tokens_per_second is None:
            raise WgptError(f"--seconds applies to audio models; this is a {modality.name} model: use --tokens")
        if req.tokens is not None:
            raise WgptError("give either --tokens or --seconds, not both")
        most = MAX_NEW_TOKENS / modality.tokens_per_second
        if not 0 < req.seconds <= most:
            raise WgptError(
                f"--seconds must be a positive number of at most {most:,.0f} ({MAX_NEW_TOKENS:,} samples at {modality.tokens_per_second:,.0f} Hz), got {req.seconds}"
            )
        return max(1, round(req.seconds * modality.tokens_per_second))
    if req.tokens is None:
        return round(modality.tokens_per_second) if modality.tokens_per_second else 500
    if not 1 <= req.tokens <= MAX_NEW_TOKENS:
        raise WgptError(f"--tokens must be at least 1 and at most {MAX_NEW_TOKENS:,}, got {req.tokens:,}")
    return req.tokens


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


def sample_to_files(req: SampleRequest, stream_to: TextIO | None = None, show_progress: bool = False) -> list[Path]:
    """Generate ``req.num_samples`` continuations and write each to its own file.

    ``stream_to`` prints a text model's single sample as it is generated (with ``req.out`` None,
    it is the only output and no file is written); otherwise
    ``show_progress`` shows a progress bar over the new tokens.
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
    n_new = new_token_count(req, modality)
    prompt, keep_prompt = prompt_ids(req, modality, model.cfg.context)
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
        task = bar.add_task("sampling", total=n_new)

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
            allowed=modality.next_token_rule(),
        )
    if stream is not None:
        stream.close()
    written = []
    for path, ids in zip(paths, samples, strict=False):
        written += modality.write((prompt if keep_prompt else []) + ids, path)
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
