"""The ``wgpt`` command line: thin commands over the library's plain functions.

Every command turns a ``WgptError`` into one red line and exit code 2; ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wgpt import __version__
from wgpt.config import ModelConfig, TrainConfig, flag_of
from wgpt.errors import WgptError
from wgpt.io import json_safe, os_reason
from wgpt.options import config_options
from wgpt.progress import console as err_console


class _InOrderOfUse(typer.core.TyperGroup):
    """``wgpt --help`` lists the commands in the order a session uses them, ``prepare`` first."""

    ORDER = ("prepare", "train", "eval", "sample", "report", "bench", "export", "demo")

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: self.ORDER.index(n) if n in self.ORDER else len(self.ORDER))


def _type_tag(original: Callable[..., str | None]) -> Callable[..., str | None]:
    """Help's type column as users read it: a switch (``--quiet``) takes no value, so it shows no
    ``<bool>``; a list of paths shows ``<path>...``, not Python's ``<list[Path]>``. Typer offers
    no setting for either, so its one formatting method is wrapped."""

    def tag(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        label = original(self, ctx)
        if label and label.startswith("<list[") and label.endswith("]>"):
            return f"<{label[6:-2].lower()}>..."
        return label

    return tag


for _param in (typer.core.TyperOption, typer.core.TyperArgument):
    _param.display_type_rich = _type_tag(_param.display_type_rich)  # type: ignore[method-assign]


app = typer.Typer(
    cls=_InOrderOfUse,
    help="Pre-train and sample WaveletGPT models on text, MIDI and audio.\n\n"
    "Typical session: wgpt prepare text FILES  ->  wgpt train --wavelet  ->  wgpt eval --ckpt runs/text-haar/best.pt"
    "  ->  wgpt sample --ckpt runs/text-haar/best.pt --out sample.txt",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
prepare_app = typer.Typer(help="Turn files into token shards for training (text, midi or audio).", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")
out_console = Console()
_debug = False


def _e(value: object) -> str:
    """``value`` as text that rich prints as it is: paths and messages may hold '[...]'."""
    return escape(str(value))


def cli_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report expected failures as one line and a non-zero exit, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except WgptError as err:
            if _debug:
                raise
            err_console.print(f"[bold red]error:[/] {_e(err)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as err:  # the file system said no: a file where a folder belongs, a full disk, no permission
            if _debug:
                raise
            where = err.filename2 or err.filename or "a file"
            message = f"cannot use {where}: {os_reason(err)}; check the path, or pass another one"
            err_console.print(f"[bold red]error:[/] {_e(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (MemoryError, RuntimeError) as err:  # an allocation no check foresaw; other RuntimeErrors are bugs
            if _debug or (not isinstance(err, MemoryError) and "can't allocate memory" not in str(err) and "out of memory" not in str(err)):
                raise
            message = "out of memory: lower --batch-size (or pass --micro-batch), --context or the model's size, or --num-samples"
            err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        out_console.print(f"wgpt {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    global _debug
    _debug = debug


# -- prepare ------------------------------------------------------------------------------
Sources = Annotated[Optional[list[Path]], typer.Argument(help="Files and folders (searched recursively).", show_default=False)]
OutDir = Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder (default: data/MODALITY).")]


def _glob(example: str) -> Any:
    return Annotated[Optional[str], typer.Option(help=f"Only files whose name matches this pattern, e.g. {example}.")]


ValFraction = Annotated[float, typer.Option(help="Share of files (or of a single file's tail) kept for validation.")]
Workers = Annotated[int, typer.Option(help="Processes that read and tokenize; 0 = all cores. The shards do not depend on it.")]
ShardTokens = Annotated[int, typer.Option(help="Ids per shard file (100M = 200 MB at 16 bits).")]
BpeTrainBytes = Annotated[
    int, typer.Option(help="BPE learns from at most this many bytes of the training split, spread over it (with --vocab-size).")
]
TokenizerFrom = Annotated[
    Optional[Path],
    typer.Option(help="Tokenize with the tokenizer of this prepared folder instead of learning one, so that both train as one set."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
Loggers = Annotated[
    Optional[list[str]],
    typer.Option(
        "--logger",
        metavar="NAME",
        help="Also send the metrics rows to csv (RUN/metrics.csv), tensorboard (RUN/tensorboard) or wandb (offline unless WANDB_MODE is set); repeatable.",
    ),
]
LogAudio = Annotated[
    float,
    typer.Option(
        metavar="SECONDS",
        help="MIDI and audio runs: this many seconds of a generated sample at each evaluation, for tensorboard and wandb.",
    ),
]


def _run_prepare(
    modality: Any,
    sources: list[Path],
    out: Path | None,
    glob: str | None,
    val_fraction: float,
    workers: int,
    shard_tokens: int,
    quiet: bool,
    tokenizer_from: Path | None = None,
) -> None:
    from wgpt.modalities.base import describe_units
    from wgpt.preparation import prepare

    if tokenizer_from is not None:
        modality = _tokenizer_of(tokenizer_from, modality.name)
    out = out or Path("data") / modality.name
    report = prepare(
        modality,
        sources,
        out,
        glob=glob,
        val_fraction=val_fraction,
        workers=workers,
        show_progress=not quiet,
        shard_tokens=shard_tokens,
        fit_tokenizer=tokenizer_from is None,
    )
    table = Table(title=f"prepared {modality.name} -> {_e(report.out)}", show_header=False)
    table.add_row("files used", f"{report.files:,}")
    table.add_row("files skipped", f"{len(report.skipped):,}" + (f" (listed in {_e(report.out)}/report.json)" if report.skipped else ""))
    table.add_row("validation", _validation_summary(report, modality.position_unit))
    table.add_row("input", f"{report.input_bytes / 1e6:,.2f} MB ({report.input_bytes / 1e6 / max(report.seconds, 1e-9):,.1f} MB/s)")
    for split in ("train", "val"):
        units = describe_units(report.units[split])
        table.add_row(f"{split} tokens", f"{report.tokens[split]:,}" + (f" ({units})" if units else ""))
    table.add_row("vocabulary", f"{report.vocab_size:,}")
    table.add_row("shard files", f"{report.shards:,}")
    table.add_row("preparation time", f"{report.seconds:.1f} s")  # not the data's duration, which a units row gives
    out_console.print(table)
    for path, reason in report.skipped[:10]:
        err_console.print(f"[yellow]skipped[/] {_e(path)}: {_e(reason)}", highlight=False)
    if len(report.skipped) > 10:
        err_console.print(f"[yellow]... and {len(report.skipped) - 10} more skipped files, see {_e(report.out)}/report.json[/]")


def _tokenizer_of(folder: Path, name: str) -> Any:
    """The modality, with its learned tokenizer, of a folder ``wgpt prepare`` wrote."""
    from wgpt.modalities import modality_from_spec
    from wgpt.shards import read_meta

    spec = read_meta(folder)["modality"]
    if spec.get("name") != name:
        raise WgptError(f"--tokenizer-from {folder} holds {spec.get('name')} data, not {name}: pass a folder of {name} shards")
    err_console.print(f"tokenizing with the tokenizer of {_e(folder)}", highlight=False)
    return modality_from_spec(spec)


def _validation_summary(report: Any, unit: str) -> str:
    """Which files validation holds, in a few words (report.json lists them all)."""
    if len(report.validation) == 1 and "from" in report.validation[0]:
        return f"the tail of {_e(Path(report.validation[0]['file']).name)} (from {unit} {report.validation[0]['from']:,})"
    return f"{len(report.validation):,} file(s), listed in {_e(report.out)}/report.json"


@prepare_app.command("text")
@cli_errors
def prepare_text(
    sources: Sources = None,
    out: OutDir = None,
    tokenizer: Annotated[str, typer.Option(help="bytes (256 ids, lossless), chars (vocabulary from the corpus) or bpe.")] = "bytes",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size for --tokenizer bpe.")] = 4096,
    bpe_train_bytes: BpeTrainBytes = 100_000_000,
    glob: _glob("'*.txt'") = None,
    val_fraction: ValFraction = 0.1,
    workers: Workers = 0,
    shard_tokens: ShardTokens = 100_000_000,
    tokenizer_from: TokenizerFrom = None,
    quiet: Quiet = False,
) -> None:
    """Tokenize text files (UTF-8). With no SRC, the bundled corpus (Milton's Paradise Lost and
    Paradise Regained, public domain) is used, so you can try wgpt with no data of your own.

    Big files are read in 4 MB pieces cut at line ends, in parallel, so memory stays flat whatever the corpus size."""
    from wgpt.modalities.text import TextModality, bundled_corpus

    if not sources:
        sources = [bundled_corpus()]
        err_console.print(f"no SRC given: using the bundled corpus {_e(sources[0])}", highlight=False)
    modality = TextModality(tokenizer, vocab_size=vocab_size, bpe_train_bytes=bpe_train_bytes)
    _run_prepare(modality, sources, out, glob, val_fraction, workers, shard_tokens, quiet, tokenizer_from)


@prepare_app.command("midi")
@cli_errors
def prepare_midi(
    sources: Annotated[list[Path], typer.Argument(help="MIDI files and folders (*.mid, *.midi, recursive).")],
    out: OutDir = None,
    tokenizer: Annotated[str, typer.Option(help="miditok tokenizer: REMI, TSD, MIDILike, Structured...")] = "REMI",
    vocab_size: Annotated[Optional[int], typer.Option(help="Train BPE to this vocabulary size (on the training split).")] = None,
    bpe_train_bytes: BpeTrainBytes = 100_000_000,
    glob: _glob("'*.mid'") = None,
    val_fraction: ValFraction = 0.1,
    workers: Workers = 0,
    shard_tokens: ShardTokens = 100_000_000,
    tokenizer_from: TokenizerFrom = None,
    quiet: Quiet = False,
) -> None:
    """Tokenize MIDI files with miditok, one token stream per file (instruments kept)."""
    from wgpt.modalities import modality_class

    modality = modality_class("midi")(tokenizer, vocab_size=vocab_size, bpe_train_bytes=bpe_train_bytes)
    _run_prepare(modality, sources, out, glob, val_fraction, workers, shard_tokens, quiet, tokenizer_from)


@prepare_app.command("audio")
@cli_errors
def prepare_audio(
    sources: Annotated[list[Path], typer.Argument(help="Audio files and folders (WAV, FLAC, OGG, ...; recursive).")],
    out: OutDir = None,
    sample_rate: Annotated[
        int,
        typer.Option(
            help="Resample every file to this rate (Hz): one token per sample, so 16000 tokens a second. A recording below it is upsampled: more tokens, no new detail (prepare 8 kHz speech with --sample-rate 8000)."
        ),
    ] = 16000,
    bits: Annotated[int, typer.Option(help="mu-law quantisation: 2**bits classes.")] = 8,
    glob: _glob("'*.wav'") = None,
    val_fraction: ValFraction = 0.1,
    workers: Workers = 0,
    shard_tokens: ShardTokens = 100_000_000,
    tokenizer_from: TokenizerFrom = None,
    quiet: Quiet = False,
) -> None:
    """Mix to mono, resample, normalise and mu-law quantise recordings. Recordings longer than about 25 minutes are read in pieces."""
    from wgpt.modalities import modality_class

    modality = modality_class("audio")(sample_rate=sample_rate, bits=bits)
    _run_prepare(modality, sources, out, glob, val_fraction, workers, shard_tokens, quiet, tokenizer_from)


# -- train --------------------------------------------------------------------------------
@app.command()
@cli_errors
@config_options(model_flags=(ModelConfig, None), train_flags=(TrainConfig, None))
def train(
    modality: Annotated[str, typer.Option(help="Which prepared data to use: reads data/MODALITY unless --data is given.")] = "text",
    data: Annotated[
        Optional[list[Path]],
        typer.Option(
            metavar="DIR", help="Folder written by `wgpt prepare`; repeat it to train on several folders as one set (same tokenizer)."
        ),
    ] = None,
    data_weights: Annotated[
        Optional[str],
        typer.Option(metavar="W1,W2", help="With several --data: how often each is sampled, e.g. 3,1 (default: by size, as one folder)."),
    ] = None,
    verify: Annotated[
        Optional[bool], typer.Option("--verify/--no-verify", help="Checksum every shard first (default: folders up to 1 GiB).")
    ] = None,
    haar: Annotated[bool, typer.Option("--wavelet", help="Add the fixed Haar multi-scale structure (no extra parameters).")] = False,
    preset: Annotated[Optional[str], typer.Option(help="tiny (a minute on a CPU; the default), paper (the paper's model) or gpt2.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder (default: runs/DATA-VARIANT).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue RUN/last.pt (weights, optimiser, data order).")] = False,
    init_from: Annotated[
        Optional[Path],
        typer.Option(
            "--init-from",
            metavar="CKPT",
            help="Fine-tune: start from this checkpoint's weights and model shape, with a fresh optimiser and schedule (data of the same modality and tokenizer).",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run in --out.")] = False,
    logger: Loggers = None,
    log_audio: LogAudio = 0.0,
    config: Annotated[
        Optional[Path],
        typer.Option(
            help='JSON, TOML or YAML file: {"preset": ..., "model": {...}, "train": {...}, "data": ...}; a run\'s own config.json reproduces it. Flags override it.'
        ),
    ] = None,
    model_flags: dict[str, Any] | None = None,
    train_flags: dict[str, Any] | None = None,
    quiet: Quiet = False,
) -> None:
    """Train a GPT (optionally with the wavelet structure) on prepared shards.

    Writes RUN/last.pt, RUN/best.pt, RUN/metrics.jsonl and RUN/loss.png.

    Runs with the same --seed see identical batches: a baseline and a --wavelet run compare step for step.

    Under torchrun it trains with DistributedDataParallel.
    """
    from wgpt.distributed import is_main_process
    from wgpt.runs import plan_run
    from wgpt.training import train as run_training

    model_flags, train_flags = dict(model_flags or {}), dict(train_flags or {})
    if haar:  # --wavelet: the shortcut for --wavelet-kind haar
        if model_flags.get("wavelet") not in (None, "haar"):
            raise WgptError(f"--wavelet means haar; it conflicts with --wavelet-kind {model_flags['wavelet']}")
        model_flags["wavelet"] = "haar"
    if init_from is not None:
        if resume:
            raise WgptError("--init-from starts a new run; --resume continues one: pass one of them")
        shape = [flag_of(ModelConfig, k) for k, v in model_flags.items() if v is not None and k != "dropout"]
        shape = ["--wavelet" if haar and f == "--wavelet-kind" else f for f in shape]
        if shape:
            raise WgptError(f"--init-from takes the model's shape from {init_from}: drop {', '.join(shape)}")
    weights = _numbers(data_weights, "--data-weights") if data_weights is not None else None
    plan = plan_run(modality, data, out, preset, config, model_flags, train_flags, resume=resume, overwrite=overwrite, data_weights=weights)
    for notice in plan.notices:
        err_console.print(f"[yellow]{_e(notice)}[/]", highlight=False)
    result = run_training(
        plan.data,
        plan.out,
        plan.model,
        plan.train,
        resume=plan.resume,
        show_progress=not quiet,
        data_weights=plan.data_weights,
        verify=verify,
        init_from=init_from,
        loggers=logger or [],
        log_audio=log_audio,
        resumed=plan.take_checkpoint(),
    )
    if not is_main_process():  # under torchrun, rank 0 alone reports
        raise typer.Exit(130 if result.interrupted else 0)
    if result.interrupted:
        err_console.print(
            f"[yellow]stopped at step {result.step}; saved {_e(result.out)}/last.pt. Continue with the same command plus --resume.[/]"
        )
        raise typer.Exit(130)
    out_console.print(
        f"trained {result.params:,} parameters for {result.step} steps{' (stopped early)' if result.stopped_early else ''}: "
        f"best val loss {result.best_val_loss:.4f} nats/token at step {result.best_step}\n"
        f"wrote {_e(result.out)}/best.pt, last.pt, metrics.jsonl, loss.png\n"
        f"next: wgpt sample --ckpt {_e(result.out)}/best.pt --out sample{_default_ext(plan.data[0])}\n"
        f"see and hear it: wgpt report {_e(result.out)} --out {_e(result.out)}/report.html",
        highlight=False,
    )


def _numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise WgptError(f"{flag} must be comma-separated numbers, e.g. 3,1; got {text!r}") from None


def _default_ext(data: Path) -> str:
    from wgpt.modalities import modality_class
    from wgpt.shards import read_meta

    return modality_class(read_meta(data)["modality"]["name"]).output_extensions[0]


# -- eval ---------------------------------------------------------------------------------
@app.command("eval")
@cli_errors
def eval_cmd(
    ckpt: Annotated[Path, typer.Option(help="Checkpoint written by `wgpt train` (best.pt or last.pt).")],
    data: Annotated[
        Optional[list[Path]], typer.Option(metavar="DIR", help="Prepared data, repeatable (default: what the checkpoint was trained on).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")] = False,
    max_tokens: Annotated[int, typer.Option(help="Evaluate at most this many validation tokens.")] = 1_000_000,
    samples: Annotated[int, typer.Option(help="Generated samples for the modality's statistics (MIDI, audio); 0 skips.")] = 4,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
) -> None:
    """Validation loss (nats/token), bits per token, perplexity and bits per byte/char/sample/note."""
    from wgpt.evaluation import evaluate

    result = evaluate(ckpt, data, max_tokens=max_tokens, samples=samples, device=device)
    if as_json:  # JSON has no NaN or Infinity: a loss that is not finite is null
        print(json.dumps(json_safe(result), allow_nan=False))
        return
    out_console.print(
        f"{_e(ckpt)}: {result['modality']}, wavelet {result['wavelet']}, step {result['step']}", highlight=False, soft_wrap=True
    )
    table = Table(show_header=False)
    for key, value in result.items():
        if key in ("statistics", "modality", "wavelet", "step"):
            continue
        table.add_row(key, f"{value:,.4f}" if isinstance(value, float) else f"{value:,}")
    out_console.print(table)
    if "statistics" in result:
        stats = Table(title="generated vs validation", show_header=True)
        stats.add_column("statistic")
        stats.add_column("generated")
        stats.add_column("validation")
        for key, value in result["statistics"].items():
            if isinstance(value, dict):
                stats.add_row(key, f"{value['generated']:.4g}", f"{value['validation']:.4g}")
            else:
                stats.add_row(key, f"{value:.4f}", "(distance)")
        out_console.print(stats)


# -- sample -------------------------------------------------------------------------------
@app.command()
@cli_errors
def sample(
    ckpt: Annotated[Path, typer.Option(help="Checkpoint written by `wgpt train`.")],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Output file: .txt for text, .mid/.wav for MIDI (a .wav comes with the .mid it renders), .wav for audio. Text without --out prints to the terminal.",
        ),
    ] = None,
    prompt: Annotated[Optional[str], typer.Option(help="Text to continue (text models).")] = None,
    prompt_file: Annotated[Optional[Path], typer.Option(help="File to continue: text, .mid or audio, per the model.")] = None,
    tokens: Annotated[Optional[int], typer.Option(help="New tokens to generate (default: 500; audio: 1 second).")] = None,
    seconds: Annotated[
        Optional[float],
        typer.Option(
            help="Instead of --tokens. Audio: seconds to generate. MIDI: the continuation's length; generation stops there and the piece is cut at it."
        ),
    ] = None,
    bars: Annotated[
        Optional[int], typer.Option(help="MIDI, instead of --tokens: the continuation's length in bars (by the piece's time signature).")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Softmax temperature, from 0.0001 to 10000; lower is more conservative.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample from the k most likely tokens; 1 = greedy.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Nucleus sampling threshold in (0, 1].")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same output.")] = 0,
    num_samples: Annotated[int, typer.Option(help="Samples generated in one batch; files get -1, -2, ... suffixes.")] = 1,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Recompute the whole window for every token (slow; for checking).")] = False,
    trim_prompt: Annotated[bool, typer.Option("--trim-prompt", help="Keep only the last context's worth of a long prompt.")] = False,
    soundfont: Annotated[Optional[Path], typer.Option(help="MIDI to .wav: render with fluidsynth and this SoundFont.")] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Text: print tokens as they are generated.")] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    quiet: Quiet = False,
) -> None:
    """Generate from a checkpoint and write the result in its modality's format."""
    from wgpt.sample_files import SampleRequest, sample_to_files

    request = SampleRequest(
        ckpt=ckpt,
        out=out,
        prompt=prompt,
        prompt_file=prompt_file,
        tokens=tokens,
        seconds=seconds,
        bars=bars,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        num_samples=num_samples,
        use_cache=not no_cache,
        trim_prompt=trim_prompt,
        soundfont=soundfont,
        device=device,
    )
    stream_to = sys.stdout if (stream and sys.stdout.isatty()) or out is None else None
    say = lambda line: err_console.print(f"[yellow]{_e(line)}[/]", highlight=False)  # noqa: E731
    for path in sample_to_files(request, stream_to=stream_to, show_progress=not quiet, say=say):
        out_console.print(f"wrote {_e(path)}", highlight=False, soft_wrap=True)


# -- export -------------------------------------------------------------------------------
@app.command("export")
@cli_errors
def export_model(
    src: Annotated[Path, typer.Argument(metavar="RUN_OR_CKPT", help="A run folder (its best.pt is exported) or a .pt checkpoint.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write model.safetensors, config.json and README.md into.")],
) -> None:
    """Export weights (safetensors), config and a model card: no optimiser, no pickle; eval and sample read the folder."""
    from wgpt.export import CONFIG, export
    from wgpt.modalities import modality_class

    folder = export(src, out)
    settings = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    files = ["model.safetensors", "config.json", *settings["tokenizer_files"], "README.md"]
    example = "sample" + modality_class(settings["modality"]["name"]).output_extensions[0]
    out_console.print(
        f"wrote {_e(folder)}/{', '.join(files)}\nnext: wgpt sample --ckpt {_e(folder)} --out {example}", highlight=False, soft_wrap=True
    )


# -- demo ---------------------------------------------------------------------------------
@app.command()
@cli_errors
def demo(
    steps: Annotated[int, typer.Option(help="Training steps (300 take one to two minutes on a laptop CPU).")] = 300,
    out: Annotated[Path, typer.Option(help="Folder for the demo's data and run.")] = Path("wgpt-demo"),
) -> None:
    """Prepare the bundled corpus, train a tiny wavelet model and print a sample: wgpt in one command."""
    from dataclasses import replace

    from wgpt.config import preset as get_preset
    from wgpt.modalities.text import TextModality, bundled_corpus
    from wgpt.preparation import prepare
    from wgpt.sample_files import SampleRequest, sample_to_files
    from wgpt.training import train as run_training

    corpus = bundled_corpus()
    err_console.print(f"1/3 preparing the bundled corpus ({corpus.name}) as bytes")
    prepare(TextModality("bytes"), [corpus], out / "data", show_progress=False)
    model_cfg, train_cfg = get_preset("tiny")
    err_console.print(f"2/3 training a tiny wavelet model for {steps} steps")
    run = out / "run"
    result = run_training(out / "data", run, replace(model_cfg, wavelet="haar"), replace(train_cfg, steps=steps))
    err_console.print(f"3/3 sampling 400 characters (val loss {result.best_val_loss:.3f} nats/byte):")  # the "\n" prompt spaces it
    request = SampleRequest(ckpt=run / "best.pt", out=out / "sample.txt", prompt="\n", tokens=400, temperature=0.8, seed=0)
    for path in sample_to_files(request, stream_to=sys.stdout):
        out_console.print(
            f"\nwrote {_e(path)}; the run is in {_e(run)} (try: wgpt eval --ckpt {_e(run)}/best.pt)", highlight=False, soft_wrap=True
        )


# -- bench --------------------------------------------------------------------------------
_MODEL_SHAPE = tuple(f.name for f in fields(ModelConfig) if f.name != "wavelet")  # the variants set the wavelet
_BENCH_TRAINING = tuple(f.name for f in fields(TrainConfig) if f.name != "seed")  # --seeds gives several


@app.command("bench")
@cli_errors
@config_options(model_flags=(ModelConfig, _MODEL_SHAPE), train_flags=(TrainConfig, _BENCH_TRAINING))
def bench_cmd(
    modality: Annotated[str, typer.Option(help="Reads data/MODALITY unless --data is given.")] = "text",
    data: Annotated[Optional[Path], typer.Option(help="Folder written by `wgpt prepare`.")] = None,
    preset: Annotated[str, typer.Option(help="tiny, paper or gpt2.")] = "tiny",
    variants: Annotated[str, typer.Option(help="Comma-separated: baseline, haar, learnable.")] = "baseline,haar",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds; several give mean and spread.")] = "1337",
    larger: Annotated[bool, typer.Option("--larger", help="Add a baseline with 2x the blocks and 1.5x the width.")] = False,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Folder for the runs and the summary (default: runs/bench-DATA).")
    ] = None,
    logger: Loggers = None,
    log_audio: LogAudio = 0.0,
    model_flags: dict[str, Any] | None = None,
    train_flags: dict[str, Any] | None = None,
    quiet: Quiet = False,
) -> None:
    """Train baseline and wavelet variants on the same data order, seed and budget; report the speed-up.

    The speed-up is the steps the baseline took to its best validation loss over the steps each variant took to reach that loss, in steps and on the runs' own clocks; best and final losses, epochs, an overfitting mark and the step-time ratio come with it.

    Each run is a folder OUT/VARIANT-seedN; --logger gives every run its own log there.

    Writes summary.json, summary.md, val_loss.png and report.html (curves and tables; `wgpt report` adds samples).
    """
    from wgpt.benchmark import VARIANTS, bench, markdown_table
    from wgpt.config import override
    from wgpt.config import preset as get_preset
    from wgpt.runs import default_data

    names = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = set(names) - set(VARIANTS)
    if unknown:
        raise WgptError(f"unknown variant(s) {', '.join(sorted(unknown))}: choose from baseline, haar, learnable")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise WgptError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if larger:
        names.append("larger")
    data = data or default_data(modality)
    model_cfg, train_cfg = get_preset(preset)
    model_cfg = override(model_cfg, model_flags or {}, "flags")
    train_cfg = override(train_cfg, train_flags or {}, "flags")
    out = out or Path("runs") / f"bench-{data.name}"
    seed_list = seed_list or [train_cfg.seed]
    summary = bench(data, out, model_cfg, train_cfg, names, seed_list, show_progress=not quiet, loggers=logger or [], log_audio=log_audio)
    out_console.print(markdown_table(summary), highlight=False, soft_wrap=True)
    out_console.print(f"wrote {_e(out)}/summary.json, summary.md, val_loss.png, report.html", highlight=False, soft_wrap=True)
    out_console.print(f"with samples: wgpt report {_e(out)} --out {_e(out)}/report.html", highlight=False, soft_wrap=True)


# -- report -------------------------------------------------------------------------------
@app.command("report")
@cli_errors
def report_cmd(
    sources: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_OR_BENCH", help="Run folders (`wgpt train --out`) and bench folders (`wgpt bench --out`)."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path("report.html"),
    samples: Annotated[int, typer.Option(help="Samples per checkpoint, each beside a validation slice; 0: curves and tables only.")] = 1,
    tokens: Annotated[Optional[int], typer.Option(help="New tokens per sample (default: 500; audio: 1 second).")] = None,
    seconds: Annotated[Optional[float], typer.Option(help="Audio runs: seconds per sample (other runs take --tokens).")] = None,
    every: Annotated[
        Optional[int],
        typer.Option(help="Also sample the step checkpoints at multiples of N, to hear training progress (train with --keep-every)."),
    ] = None,
    temperature: Annotated[float, typer.Option(help="Softmax temperature, from 0.0001 to 10000; lower is more conservative.")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample from the k most likely tokens; 1 = greedy.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the samples and of the validation slices beside them.")] = 0,
    eval_tokens: Annotated[int, typer.Option(help="Validation tokens evaluated per run (best.pt); 0: no evaluation.")] = 100_000,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress messages.")] = False,
) -> None:
    """One self-contained HTML page to see and hear runs: loss curves, a bench's speed-ups, configuration, data, evaluation and samples.

    It opens offline and fetches nothing: curves and piano rolls are SVG, sounds are embedded WAV. Each sample (text; a piano roll with a rendered player; audio with its waveform and spectrogram) sits beside a validation slice of the same length."""
    from wgpt.report import ReportOptions, SampleOptions, write_report

    opts = SampleOptions(
        count=samples, tokens=tokens, seconds=seconds, every=every, temperature=temperature, top_k=top_k, seed=seed, device=device
    )
    say = (lambda _line: None) if quiet else (lambda line: err_console.print(_e(line), highlight=False, soft_wrap=True))
    path = write_report(sources, out, ReportOptions(opts, eval_tokens), say)
    size = path.stat().st_size
    out_console.print(
        f"wrote {_e(path)} ({size / 1e6:,.1f} MB)" if size >= 1e6 else f"wrote {_e(path)} ({size / 1e3:,.0f} kB)",
        highlight=False,
        soft_wrap=True,
    )


def run() -> None:
    """Run the app (``wgpt.__main__`` calls this), then leave without the interpreter's teardown.

    Tearing down an interpreter that has imported torch took 0.5-0.9 s on a 2-core machine, a
    quarter of a short ``wgpt sample`` run. Every file wgpt writes is complete and renamed into
    place before its command returns, so only the standard streams are left to flush.
    """
    try:
        app(prog_name="wgpt")
        code = 0
    except SystemExit as done:  # click ends every command with one
        code = done.code
    if code is not None and not isinstance(code, int):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)
