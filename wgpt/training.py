"""The training loop: one loop for every modality, single process or DDP under torchrun.

Batches are a pure function of (seed, step) (``wgpt.batches.train_offsets``): a baseline and a
wavelet run with the same seed see identical batches, a resumed run sees the batches it would
have seen, and a run under N processes splits each global batch N ways.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wgpt import distributed as dist
from wgpt.batches import batch_offsets, check_length, eval_offsets, get_batch
from wgpt.checkpoint import load_checkpoint, load_weights, model_config_of, rng_state, save_checkpoint, set_rng_state
from wgpt.config import ModelConfig, TrainConfig, to_dict
from wgpt.curves import overfit
from wgpt.devices import autocast_dtype, pick_device
from wgpt.errors import WgptError
from wgpt.evaluation import estimate_loss
from wgpt.generation import generate
from wgpt.io import os_reason, write_json
from wgpt.limits import check_fits, model_params, training_bytes
from wgpt.lock import run_lock
from wgpt.loggers import Logger, check_loggers, open_loggers
from wgpt.modalities import modality_from_spec
from wgpt.model import GPT
from wgpt.progress import progress_bar
from wgpt.runs import clear_run, step_checkpoint
from wgpt.shards import TrainingData, open_training_data

MAX_LOG_AUDIO_S = 30.0  # seconds of sound per evaluation: generation costs training time
OVERFIT_PATIENCE = 3  # evaluations without a lower validation loss, while training loss falls, before saying so


@dataclass
class TrainResult:
    out: Path
    step: int
    best_val_loss: float
    val_loss: float
    params: int
    interrupted: bool = False
    stopped_early: bool = False  # --early-stop ended the run before --steps
    best_step: int = 0


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not norms, biases or wavelet filters)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "wavelet" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, cfg.beta2), fused=device.type == "cuda")


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; a torn last line (a crash mid-write) is dropped, as resuming drops rows past last.pt."""
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise WgptError(f"{path} line {i + 1} is not JSON: repair or delete the line, or start a new run with --overwrite") from None
    return rows


def resume_state(out: Path, model_cfg: ModelConfig, data: TrainingData, ckpt: dict[str, Any] | None = None) -> dict[str, Any]:
    """The saved state of ``out/last.pt`` (``ckpt`` if it is already loaded), checked against this run's model and data."""
    ckpt = load_checkpoint(out / "last.pt") if ckpt is None else ckpt
    if ckpt["modality"] != data.modality_spec:  # first: other data changes the vocabulary, hence the model config
        raise WgptError(f"{out}/last.pt was trained on other data (different modality or tokenizer); pass the same --data")
    if ckpt["model_config"] != to_dict(model_cfg):
        raise WgptError(f"{out}/last.pt was trained with a different model config; resume without changing model flags")
    return ckpt


def check_training_fits(model_cfg: ModelConfig, train_cfg: TrainConfig, world_size: int, device: torch.device) -> None:
    """Refuse, before allocating, a model and batch that cannot fit in memory (``wgpt.limits``)."""
    micro = train_cfg.micro_batch or train_cfg.batch_size // world_size
    where = str(device) if device.type == "cuda" else "cpu"
    params = model_params(model_cfg)
    what = f"training {params:,} parameters"
    check_fits(16 * params, what, "lower --layers, --width or --ffn", where)  # the weights and AdamW alone
    check_fits(
        training_bytes(model_cfg, micro),
        f"{what} on micro-batches of {micro} x {model_cfg.context} tokens",
        "lower --batch-size or --context, or pass --micro-batch to split each batch into smaller passes",
        where,
    )


def restore(ckpt: dict[str, Any], model: GPT, optimizer: torch.optim.Optimizer, defaults: dict[str, Any], path: Path) -> dict[str, Any]:
    """Load a resumed run's weights, optimiser and RNG states; its loop state, checked field by field
    (checkpoints before --early-stop lack its counters: they take ``defaults``)."""
    fresh = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        _check_optimizer(optimizer, fresh)
    except Exception as err:  # a crafted state fails in many ways inside torch; each is damage
        detail = f"missing {err}" if isinstance(err, KeyError) else " ".join(str(err).split())[:160]
        raise WgptError(f"{path} is damaged ({detail}): resume from another checkpoint, or start a new run with --out") from None
    state = {k: ckpt.get(k, default) for k, default in defaults.items()}
    interval = state["interval"] if isinstance(state["interval"], list) and len(state["interval"]) == 2 else [None, None]
    numbers = [state["best_val_loss"], state["elapsed_s"], interval[0]]
    counts = [state["step"], state["best_step"], state["evals_since_best"], interval[1]]
    if not (all(_is_number(v) for v in numbers) and all(_is_number(v) and isinstance(v, int) and v >= 0 for v in counts)):
        raise WgptError(
            f"{path} is damaged (its step counters are not numbers): resume from another checkpoint, or start a new run with --out"
        )
    return state


def _check_optimizer(optimizer: torch.optim.Optimizer, fresh: list[dict[str, Any]]) -> None:
    """Raise if a loaded optimiser state would fail at its first step: torch's ``load_state_dict``
    takes any value (betas = None, a moment that is not a tensor) and fails only when it steps.
    Hyperparameters must have the types this run's own optimiser gives them; per-parameter state
    must be tensors, scalars or of the parameter's shape."""
    for group, own in zip(optimizer.param_groups, fresh, strict=True):
        wrong = [k for k, v in own.items() if type(group.get(k)) is not type(v)]
        if wrong:
            raise ValueError(f"optimiser setting {wrong[0]} is {group.get(wrong[0])!r}")
        for param in group["params"]:
            for key, value in optimizer.state.get(param, {}).items():
                if not isinstance(value, torch.Tensor) or (value.dim() and value.shape != param.shape):
                    raise ValueError(f"optimiser state {key} is not a tensor of its parameter's shape")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def initial_weights(path: Path, data: TrainingData) -> dict[str, Any]:
    """The checkpoint a fine-tuning run starts from, checked against its data: same modality and tokenizer."""
    ckpt = load_checkpoint(path)
    if ckpt.get("modality") != data.modality_spec:
        theirs, ours = (ckpt.get("modality") or {}).get("name"), data.modality_spec.get("name")
        what = f"{theirs} data, not {ours}" if theirs != ours else f"{ours} data with another tokenizer"
        raise WgptError(
            f"--init-from {path} was trained on {what}: fine-tune on data prepared with its tokenizer "
            f"(wgpt prepare {theirs} ... --tokenizer-from THE_FOLDER_IT_WAS_TRAINED_ON)"
        )
    return ckpt


def train(
    data: Path | list[Path],
    out: Path,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    resume: bool = False,
    show_progress: bool = True,
    data_weights: list[float] | None = None,
    verify: bool | None = None,
    init_from: Path | None = None,
    loggers: list[str] | None = None,
    log_audio: float = 0.0,
    resumed: dict[str, Any] | None = None,
) -> TrainResult:
    """Train a GPT on prepared shards at ``data`` (one folder, or several trained on as one, weighed
    by ``data_weights``); writes ``out/{last,best}.pt`` and ``out/metrics.jsonl``. ``verify``:
    checksum every shard first (None: only folders small enough to check in about a second).
    ``init_from``: start from a checkpoint's weights (fine-tuning), with its model shape and
    ``model_cfg``'s dropout, a fresh optimiser and schedule. ``loggers``: ``wgpt.loggers`` names
    that also get the metrics rows (rank 0), and ``log_audio`` seconds of a generated sample at
    each evaluation of a MIDI or audio run where a logger plays sound (0: none). ``resumed``: with
    ``resume``, ``out/last.pt`` as the caller already loaded it (``RunPlan.checkpoint``): read once."""
    out = Path(out)
    check_loggers(loggers or [])
    if not 0 <= log_audio <= MAX_LOG_AUDIO_S:
        raise WgptError(f"--log-audio must be from 0 to {MAX_LOG_AUDIO_S:g} seconds, got {log_audio}")
    ctx = dist.setup(train_cfg.device)
    device = ctx.device if ctx.active else pick_device(train_cfg.device)
    shards = open_training_data(data, data_weights, verify)
    start = None if init_from is None else initial_weights(Path(init_from), shards)
    if start is not None:
        model_cfg = replace(model_config_of(start), dropout=model_cfg.dropout)
    model_cfg = replace(model_cfg, vocab_size=shards.vocab_size)
    if shards.weights is not None:  # weighed folders are sampled on their own
        for folder, weight in zip(shards.folders, shards.weights, strict=True):
            if weight > 0:
                check_length(folder.train, model_cfg.context, "train", folder.path)
    check_length(shards.train, model_cfg.context, "train", shards.paths[0])
    check_length(shards.val, model_cfg.context, "val", shards.paths[0])
    if train_cfg.batch_size % ctx.world_size:
        raise WgptError(f"--batch-size {train_cfg.batch_size} must be divisible by the number of processes ({ctx.world_size})")
    if resume and not (out / "last.pt").is_file():
        raise WgptError(f"nothing to resume: {out}/last.pt does not exist (drop --resume to start a new run)")

    check_training_fits(model_cfg, train_cfg, ctx.world_size, device)
    torch.manual_seed(train_cfg.seed)  # same seed, same initial weights (wavelet adds no random state)
    model = GPT(model_cfg).to(device)
    if start is not None:
        load_weights(model, start)
    optimizer = make_optimizer(model, train_cfg, device)
    state: dict[str, Any] = {
        "step": 0,
        "best_val_loss": float("inf"),
        "best_step": 0,
        "evals_since_best": 0,
        "elapsed_s": 0.0,
        "interval": [0.0, 0],
    }
    if resume:
        state = restore(resume_state(out, model_cfg, shards, resumed), model, optimizer, state, out / "last.pt")
        resumed = None  # the weights and optimiser state are in the model now: let the loaded copy go
        if state["step"] >= train_cfg.steps:
            raise WgptError(f"{out}/last.pt is already at step {state['step']}: pass a larger --steps to continue")
    with contextlib.ExitStack() as held:
        if ctx.is_main:
            held.enter_context(_locked_run_folder(out))
            if not resume:  # a fresh run: nothing of an earlier one may be resumed or appended to
                clear_run(out)
            write_json(
                out / "config.json",
                {"model": to_dict(model_cfg), "train": to_dict(train_cfg), "data": shards.describe(), "data_weights": shards.weights},
            )
        runner = Runner(model, optimizer, shards, model_cfg, train_cfg, device, ctx, out, state, loggers or [], log_audio)
        return runner.run(show_progress)


@contextlib.contextmanager
def _locked_run_folder(out: Path) -> Iterator[None]:
    """Make ``out`` if needed and hold its lock (``wgpt.lock``) while the run writes there."""
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WgptError(f"cannot create the run folder {out}: {os_reason(err)}; choose another --out") from None
    try:
        with run_lock(out):
            yield
    except BaseException:
        if made and not (out / "last.pt").exists():  # failed before its first checkpoint: no half-made folder is left
            clear_run(out)
            (out / "config.json").unlink(missing_ok=True)
        raise
    finally:
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if empty


class Runner:
    """State of one training run; ``run`` is the loop, the rest are its steps."""

    def __init__(
        self,
        model: GPT,
        optimizer: torch.optim.Optimizer,
        shards: TrainingData,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        device: torch.device,
        ctx: dist.DistContext,
        out: Path,
        state: dict[str, Any],
        logger_names: list[str] | None = None,
        log_audio: float = 0.0,
    ) -> None:
        self.model, self.optimizer, self.shards = model, optimizer, shards
        self.model_cfg, self.cfg, self.device, self.ctx, self.out, self.state = model_cfg, train_cfg, device, ctx, out, state
        self.ddp = ctx.wrap(model)
        self.forward = torch.compile(self.ddp, mode=train_cfg.compile_mode) if train_cfg.compile else self.ddp
        # CUDA graphs (reduce-overhead) reuse their output memory: each micro-step starts a new replay.
        self.graphed = train_cfg.compile and train_cfg.compile_mode != "default" and device.type == "cuda"
        self.amp = autocast_dtype(device)
        if device.type == "cuda":  # TF32 matmuls: ~free precision trade on Ampere and later
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.scaler = torch.amp.GradScaler(enabled=self.amp == torch.float16)
        self.val_offsets = eval_offsets(len(shards.val), model_cfg.context, train_cfg.eval_batches * train_cfg.batch_size)
        self.micro = train_cfg.micro_batch or train_cfg.batch_size // ctx.world_size
        self.params = model.num_params()
        self.saved_step = state["step"]  # the step of the last.pt on disk; 0: none yet
        self.overfit_said = False
        self.flops_per_token = dist.flops_per_token(model_cfg)
        self.logger_names, self.log_audio = logger_names or [], log_audio  # seconds of sound per evaluation
        self.loggers: list[Logger] = []  # opened by ``run`` on rank 0

    def mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation of each device at a global throughput of ``tokens_per_s``."""
        return dist.mfu(self.flops_per_token * tokens_per_s / self.ctx.world_size, self.device)

    def speed(self, tokens_per_s: float) -> str:
        """The progress bar's tok/s field, with the MFU where the device's peak is known."""
        use = self.mfu(tokens_per_s) if self.device.type == "cuda" else None
        return f"{tokens_per_s:,.0f}" + ("" if use is None else f" (MFU {use:.0%})")

    def train_step(self, step: int) -> float:
        """One optimiser step on the global batch of ``step``; returns its mean loss."""
        cfg, ctx = self.cfg, self.ctx
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        offsets = batch_offsets(self.shards, self.model_cfg.context, cfg.batch_size, cfg.seed, step)
        local = offsets[ctx.rank :: ctx.world_size]  # this process's share of the global batch
        chunks = local.split(self.micro)
        total = 0.0
        for i, chunk in enumerate(chunks):
            x, y = (
                t.to(self.device, non_blocking=True)
                for t in get_batch(self.shards.train, chunk, self.model_cfg.context, self.model_cfg.vocab_size)
            )
            sync = i == len(chunks) - 1
            if self.graphed:
                torch.compiler.cudagraph_mark_step_begin()
            with ctx.no_sync(self.ddp, sync), torch.autocast(self.device.type, dtype=self.amp) if self.amp else nullcontext():
                _, loss = self.forward(x, y)
                loss = loss * len(chunk) / len(local)
            self.scaler.scale(loss).backward()
            total += loss.detach()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return ctx.mean(total)

    def checkpoint(self, name: str, step: int) -> None:
        save_checkpoint(
            self.out / name,
            self.model,
            self.shards.modality_spec,
            self.cfg,
            optimizer=self.optimizer.state_dict(),
            step=step,
            best_val_loss=self.state["best_val_loss"],
            best_step=self.state["best_step"],
            evals_since_best=self.state["evals_since_best"],
            elapsed_s=self.state["elapsed_s"],
            interval=self.state["interval"],
            rng=rng_state(),
            data=self.shards.describe(),
            data_weights=self.shards.weights,
        )
        if name == "last.pt":
            self.saved_step = step

    def keep(self, step: int) -> None:
        """The weights at ``step`` (``--keep-every``), with what sampling needs and no optimiser state."""
        path = step_checkpoint(self.out, step)
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, self.model, self.shards.modality_spec, self.cfg, step=step, data=self.shards.describe())

    def diverged(self, what: str, value: float, step: int) -> WgptError:
        if self.saved_step:
            kept = f"{self.out}/last.pt keeps the last good state (step {self.saved_step}); lower --lr or raise --warmup, then --resume"
        else:
            kept = "no checkpoint was written yet; lower --lr or raise --warmup and train again"
        return WgptError(f"{what} became {value} at step {step}: training diverged. {kept}")

    def evaluate(self, step: int, train_time: float, interval_tokens: int) -> dict[str, Any]:
        """Validation, a metrics row, and checkpoints (rank 0 only)."""
        val_loss = estimate_loss(self.model, self.shards.val, self.val_offsets, self.model_cfg.context, self.cfg.batch_size, self.device)
        if not math.isfinite(val_loss):  # never overwrite last.pt with weights whose loss is NaN
            raise self.diverged("validation loss", val_loss, step)
        loss_sum, n = self.state["interval"]
        tokens_per_s = interval_tokens / train_time if train_time > 0 else 0.0
        row = {
            "step": step,
            "tokens_seen": step * self.cfg.batch_size * self.model_cfg.context,
            "epoch": step
            * self.cfg.batch_size
            * self.model_cfg.context
            / len(self.shards.train),  # training tokens seen over those there are
            "train_loss": loss_sum / n if n else None,
            "val_loss": val_loss,
            "lr": lr_at(step - 1, self.cfg),
            "tokens_per_s": tokens_per_s,
            "elapsed_s": self.state["elapsed_s"],
        }
        if self.device.type == "cuda":
            row["mfu"] = self.mfu(tokens_per_s)
        self.state["interval"] = [0.0, 0]
        with open(self.out / "metrics.jsonl", "a", encoding="utf-8") as f:  # before last.pt: a resume drops rows past it
            f.write(json.dumps(row) + "\n")
        for logger in self.loggers:
            logger.log(row)
        self.log_sound(step)
        if val_loss < self.state["best_val_loss"]:
            self.state.update(best_val_loss=val_loss, best_step=step, evals_since_best=0)
            self.checkpoint("best.pt", step)
        else:
            self.state["evals_since_best"] += 1
        self.checkpoint("last.pt", step)
        return row

    @functools.cached_property
    def modality(self) -> Any:
        """The data's modality with its tokenizer, built once, when a sound is first logged."""
        return modality_from_spec(self.shards.modality_spec)

    def log_sound(self, step: int) -> None:
        """A short sample of a MIDI or audio model, for the loggers that play sound."""
        seconds, listeners = self.log_audio, [lg for lg in self.loggers if lg.takes_audio]
        if not (seconds and listeners) or self.modality.prints_as_text:
            return
        modality = self.modality
        per_second = modality.tokens_per_second
        tokens = math.ceil(seconds * per_second) if per_second else self.model_cfg.context  # MIDI: a context of notes, cut
        ids = generate(self.model, modality.start_ids(), tokens, seed=step)[0]
        self.model.train()  # generate leaves the model in eval mode
        samples, rate = modality.waveform(ids)
        if not len(samples):  # an early MIDI model's notes may decode to nothing
            return
        for logger in listeners:
            logger.audio("sample", samples[: round(seconds * rate)], rate, step)

    def notices(self, rows: list[dict[str, Any]], say: Callable[[str], None]) -> None:
        """One line, once each: the run passed one epoch; validation loss stalls while training loss falls."""
        row = rows[-1]
        if row["epoch"] >= 1 > (rows[-2]["epoch"] if len(rows) > 1 else 0.0):
            say(f"step {row['step']}: training passed one epoch (every training token seen once); watch validation loss for overfitting")
        if not self.overfit_said and overfit(rows, OVERFIT_PATIENCE):
            self.overfit_said = True
            say(
                f"step {row['step']}: validation loss has not improved for {OVERFIT_PATIENCE} evaluations while training loss fell: "
                f"overfitting. best.pt keeps step {self.state['best_step']} (val loss {self.state['best_val_loss']:.4f})"
                + ("" if self.cfg.early_stop else "; --early-stop N ends such runs")
            )

    def run(self, show_progress: bool) -> TrainResult:
        """Open the loggers (rank 0), train, close them."""
        cfg, ctx = self.cfg, self.ctx
        start_step = self.state["step"]
        rows: list[dict[str, Any]] = []
        if ctx.is_main:  # drop rows a killed run wrote after its last checkpoint
            rows = [r for r in read_metrics(self.out / "metrics.jsonl") if r["step"] <= start_step]
            (self.out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
            config = {"model": to_dict(self.model_cfg), "train": to_dict(cfg)}
            self.loggers = open_loggers(self.logger_names, self.out, rows, config)
        try:
            return self._loop(show_progress, start_step, rows)
        finally:
            for logger in self.loggers:
                logger.close()

    def _loop(self, show_progress: bool, start_step: int, rows: list[dict[str, Any]]) -> TrainResult:
        cfg, state, ctx = self.cfg, self.state, self.ctx
        tokens_per_step = cfg.batch_size * self.model_cfg.context
        val_loss, interrupted, stopped_early = float("nan"), False, False
        self.model.train()
        with StopRequest() as stop, progress_bar(show_progress and ctx.is_main, "loss", "lr", "tok/s") as bar:
            task = bar.add_task("training", total=cfg.steps, completed=start_step, loss="-", lr="-", **{"tok/s": "-"})
            train_time, interval_tokens = 0.0, 0
            for step in range(start_step, cfg.steps):
                t0 = time.perf_counter()
                loss = self.train_step(step)
                if not math.isfinite(loss):
                    raise self.diverged("loss", loss, step + 1)
                dt = time.perf_counter() - t0
                train_time, interval_tokens = train_time + dt, interval_tokens + tokens_per_step
                state["elapsed_s"] += dt
                state["interval"] = [state["interval"][0] + loss, state["interval"][1] + 1]
                state["step"] = step + 1
                if cfg.keep_every and (step + 1) % cfg.keep_every == 0 and ctx.is_main:
                    self.keep(step + 1)
                bar.update(task, advance=1, loss=f"{loss:.3f}", lr=f"{lr_at(step, cfg):.2e}", **{"tok/s": self.speed(tokens_per_step / dt)})
                done = step + 1 == cfg.steps
                stop_now = ctx.any(stop.signal is not None)
                if (step + 1) % cfg.eval_interval == 0 or done:
                    t1 = time.perf_counter()
                    if ctx.is_main:
                        rows.append(self.evaluate(step + 1, train_time, interval_tokens))
                        val_loss = rows[-1]["val_loss"]
                        self.notices(rows, bar.console.print if show_progress else lambda _line: None)
                    state["elapsed_s"] += time.perf_counter() - t1
                    train_time, interval_tokens = 0.0, 0
                    ctx.barrier()
                    patience = cfg.early_stop
                    if ctx.any(ctx.is_main and patience > 0 and state["evals_since_best"] >= patience and not done):
                        stopped_early = True
                        if ctx.is_main:
                            bar.console.print(
                                f"step {step + 1}: no lower validation loss in {patience} evaluations (--early-stop {patience}): "
                                f"stopping; best.pt is step {state['best_step']}"
                            )
                        break
                elif stop_now and ctx.is_main:
                    self.checkpoint("last.pt", step + 1)
                if stop_now:
                    interrupted = True
                    break
        if ctx.is_main:
            from wgpt.plot import plot_losses

            plot_losses(read_metrics(self.out / "metrics.jsonl"), self.out / "loss.png")
        val_loss, state["best_val_loss"] = ctx.from_main(val_loss), ctx.from_main(state["best_val_loss"])  # rank 0 evaluates
        ctx.close()
        return TrainResult(
            self.out, state["step"], state["best_val_loss"], val_loss, self.params, interrupted, stopped_early, state["best_step"]
        )
