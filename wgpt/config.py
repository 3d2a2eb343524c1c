"""Typed configuration for the model and the training run.

No torch import here: configs are plain data, validated in ``__post_init__`` so that a bad value
fails early with a message naming the flag that sets it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from wgpt.errors import WgptError

WaveletKind = Literal["none", "haar", "learnable"]
WAVELET_KINDS: tuple[str, ...] = ("none", "haar", "learnable")
MODALITY_NAMES: tuple[str, ...] = ("text", "midi", "audio")
# torch.compile's modes; reduce-overhead replays CUDA graphs, which is what a launch-bound small model needs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
MAX_SEED = 2**32 - 1  # batches seed a generator with seed * 1_000_003 + step, which must stay within 64 bits


def setting(default: Any, flag: str | None, help: str) -> Any:
    """A config field with the command-line flag that sets it and that flag's help: the one table
    ``wgpt train`` and ``wgpt bench`` build their options from, and error messages name flags by."""
    return field(default=default, metadata={"flag": flag, "help": help})


def flag_of(cfg: Any, name: str) -> str:
    """The flag a user types for config field ``name`` (``--layers`` for ``n_layer``)."""
    flag = next(f.metadata.get("flag") for f in fields(cfg) if f.name == name)
    return (flag or f"--{name.replace('_', '-')}").split("/")[0]


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the GPT decoder. Every default is the ``tiny`` preset."""

    vocab_size: int = setting(256, None, "Set from the prepared data.")
    n_layer: int = setting(4, "--layers", "Decoder blocks.")  # small enough for ~0.2 s per step on 2 CPU cores
    n_head: int = setting(4, "--heads", "Attention heads.")  # head size 32
    d_model: int = setting(128, "--width", "Embedding width d_model.")  # the paper's width
    d_ff: int = setting(512, "--ffn", "Feed-forward width.")  # 4 x d_model, as the paper
    context: int = setting(256, "--context", "Context length in tokens.")
    dropout: float = setting(0.0, "--dropout", "Dropout probability.")  # short runs do not overfit; 0 keeps runs deterministic
    wavelet: WaveletKind = setting(
        "none", "--wavelet-kind", "none, haar or learnable (learnable: small causal filters, ~0.3% more parameters)."
    )
    position: Literal["learned", "rope"] = setting("learned", "--position", "learned or rope position embeddings.")  # rope slides for free

    def __post_init__(self) -> None:
        _positive(self, "vocab_size", "n_layer", "n_head", "d_model", "d_ff", "context")
        _at_most(self, vocab_size=1 << 32, n_layer=1024, n_head=1024, d_model=1 << 16, d_ff=1 << 18, context=1 << 20)
        if self.d_model % self.n_head:
            raise WgptError(f"--width {self.d_model} must be divisible by --heads {self.n_head}")
        if self.position == "rope" and (self.d_model // self.n_head) % 2:
            raise WgptError("rotary positions need an even head size (--width / --heads)")
        if self.wavelet not in WAVELET_KINDS:
            raise WgptError(f"unknown --wavelet-kind {self.wavelet!r}: choose one of {', '.join(WAVELET_KINDS)}")
        if self.position not in ("learned", "rope"):
            raise WgptError(f"unknown --position {self.position!r}: choose learned or rope")
        if self.wavelet != "none" and self.d_model < 4:
            raise WgptError("the wavelet structure needs --width of at least 4")
        if not 0.0 <= self.dropout < 1.0:
            raise WgptError(f"--dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains. Batches are global: they do not change with the number of processes."""

    steps: int = setting(300, "--steps", "Optimiser steps in total (also when resuming).")  # a minute or two on a laptop CPU
    batch_size: int = setting(16, "--batch-size", "Sequences per optimiser step (global).")
    micro_batch: int = setting(0, "--micro-batch", "Sequences per forward pass (gradient accumulation); 0: the whole batch.")
    lr: float = setting(2e-3, "--lr", "Peak learning rate.")  # small models tolerate a high one
    min_lr_ratio: float = setting(0.1, "--min-lr-ratio", "The cosine schedule decays to lr times this.")
    warmup: int = setting(30, "--warmup", "Linear warm-up steps.")
    weight_decay: float = setting(0.1, "--weight-decay", "AdamW weight decay (matrices only, not norms, biases or wavelet filters).")
    beta2: float = setting(0.99, "--beta2", "AdamW beta2.")  # 0.99 suits small batches
    grad_clip: float = setting(1.0, "--grad-clip", "Gradient-norm clip; 0 disables.")
    eval_interval: int = setting(25, "--eval-interval", "Steps between validations and checkpoints.")
    eval_batches: int = setting(8, "--eval-batches", "Fixed validation batches per evaluation.")
    early_stop: int = setting(0, "--early-stop", "Stop after this many evaluations without a lower validation loss; 0: never.")
    keep_every: int = setting(
        0, "--keep-every", "Also keep the weights every N steps (RUN/checkpoints/step-N.pt), for `wgpt report --every`; 0: none."
    )  # weights only, no optimiser state: for sampling the run's progress, not for resuming
    seed: int = setting(1337, "--seed", "Seed of the weights and the data order.")  # equal seeds give equal batches
    device: str = setting("auto", "--device", "auto, cpu, cuda, cuda:N or mps.")
    compile: bool = setting(False, "--compile/--no-compile", "torch.compile the model (GPU runs).")
    compile_mode: str = setting(
        "default",
        "--compile-mode",
        "torch.compile's mode with --compile: default, reduce-overhead (CUDA graphs: small models) or max-autotune.",
    )

    def __post_init__(self) -> None:
        _positive(self, "steps", "batch_size", "eval_interval", "eval_batches")
        _at_most(self, batch_size=1 << 16, eval_batches=1 << 14, steps=1 << 40)
        if not (isinstance(self.seed, int) and 0 <= self.seed <= MAX_SEED):
            raise WgptError(f"--seed must be a whole number from 0 to {MAX_SEED:,}, got {self.seed!r}")
        if self.micro_batch < 0 or (self.micro_batch and self.batch_size % self.micro_batch):
            raise WgptError(f"--micro-batch {self.micro_batch} must divide --batch-size {self.batch_size}")
        if not 0 < self.lr < math.inf:
            raise WgptError(f"--lr must be a positive number, got {self.lr}")
        if self.warmup < 0:
            raise WgptError(f"--warmup must be >= 0, got {self.warmup}")
        if self.keep_every < 0:
            raise WgptError(f"--keep-every must be >= 0 (0 keeps no step checkpoints), got {self.keep_every}")
        if self.early_stop < 0:
            raise WgptError(f"--early-stop must be >= 0 (0 never stops early), got {self.early_stop}")
        if not 0 <= self.weight_decay < math.inf:
            raise WgptError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if not self.grad_clip >= 0:
            raise WgptError(f"--grad-clip must be >= 0 (0 disables clipping), got {self.grad_clip}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise WgptError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if not 0.0 <= self.beta2 < 1.0:
            raise WgptError(f"--beta2 must be in [0, 1), got {self.beta2}")
        check_device_name(self.device)
        if self.compile_mode not in COMPILE_MODES:
            raise WgptError(f"--compile-mode must be one of {', '.join(COMPILE_MODES)}, got {self.compile_mode!r}")
        if self.compile_mode != "default" and not self.compile:
            raise WgptError(f"--compile-mode {self.compile_mode} only applies to a compiled model: add --compile")


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # A minute or two on 2 CPU cores for a few hundred steps.
    "tiny": {"model": {}, "train": {}},
    # The paper's model: 10 layers, d_model 128, FFN 512, 8 heads, context 512.
    "paper": {
        "model": {"n_layer": 10, "n_head": 8, "d_model": 128, "d_ff": 512, "context": 512},
        "train": {"batch_size": 32, "lr": 1e-3, "warmup": 200, "steps": 5000, "eval_interval": 250},
    },
    # GPT-2 small's shape, for GPU throughput checks.
    "gpt2": {
        "model": {"n_layer": 12, "n_head": 12, "d_model": 768, "d_ff": 3072, "context": 1024},
        "train": {"batch_size": 32, "lr": 6e-4, "warmup": 500, "steps": 10000, "eval_interval": 500},
    },
}


def check_device_name(name: str) -> None:
    """``--device`` takes auto, cpu, cuda, cuda:N or mps."""
    if name not in ("auto", "cpu", "cuda", "mps") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise WgptError(f"unknown --device {name!r}: choose auto, cpu, cuda, cuda:N or mps")


def _at_most(cfg: object, **limits: int) -> None:
    """Sizes past these are typing mistakes, refused before anything is allocated for them."""
    for name, limit in limits.items():
        value = getattr(cfg, name)
        if value > limit:
            raise WgptError(f"{flag_of(cfg, name)} must be at most {limit:,}, got {value:,}")


def _positive(cfg: object, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not (isinstance(value, int) and value > 0):
            raise WgptError(f"{flag_of(cfg, name)} must be a positive integer, got {value!r}")


def preset(name: str) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs of a named preset."""
    if name not in PRESETS:
        raise WgptError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return ModelConfig(**PRESETS[name]["model"]), TrainConfig(**PRESETS[name]["train"])


CONFIG_SECTIONS = ("preset", "model", "train", "data", "data_weights")


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a run's settings from a JSON, TOML or YAML file.

    ``{"preset": NAME, "model": {...}, "train": {...}, "data": PATH or [PATHS], "data_weights": [...]}``,
    every part optional: the ``config.json`` a run writes is such a file, so it reproduces the run.
    """
    if not path.is_file():
        raise WgptError(f"config file {path} does not exist (or is not a file)")
    kind = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}.get(path.suffix.lower(), "JSON")
    try:
        text = path.read_text(encoding="utf-8")  # inside the try: a UnicodeDecodeError is a ValueError
        data = _parse(text, kind)
    except (ValueError, RecursionError) as err:  # yaml's and tomllib's errors are ValueErrors too
        detail = "nested too deeply" if isinstance(err, RecursionError) else " ".join(str(err).split())[:200]
        raise WgptError(f"config file {path} is not valid {path.suffix.lstrip('.').lower() or kind}: {detail}") from None
    if not isinstance(data, dict):
        raise WgptError(f'config file {path} must hold an object like {{"model": {{...}}, "train": {{...}}}}, not a {type(data).__name__}')
    unknown = set(data) - set(CONFIG_SECTIONS)
    if unknown:
        raise WgptError(f"config file {path}: unknown section(s) {sorted(unknown)}; use {', '.join(CONFIG_SECTIONS)}")
    for section in ("model", "train"):
        if not isinstance(data.get(section, {}), dict):
            raise WgptError(f"config file {path}: {section} must be a table of settings, not a {type(data[section]).__name__}")
    if not isinstance(data.get("preset", ""), str):
        raise WgptError(f"config file {path}: preset must be a name ({', '.join(PRESETS)}), got {data['preset']!r}")
    folders = data.get("data")
    if folders is not None and not is_paths(folders):
        raise WgptError(f"config file {path}: data must be a folder path or a list of them, got {folders!r}")
    weights = data.get("data_weights")
    if weights is not None and not is_numbers(weights):
        raise WgptError(f"config file {path}: data_weights must be a list of numbers, got {weights!r}")
    return data


def is_paths(value: Any) -> bool:
    """Data as configs and checkpoints record it: a folder path, or a non-empty list of them."""
    return isinstance(value, str) or (isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value))


def is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def _parse(text: str, kind: str) -> Any:
    if kind == "TOML":
        import tomllib

        return tomllib.loads(text)
    if kind == "YAML":
        import yaml

        try:
            return yaml.safe_load(text)  # plain data only: no tags that build Python objects
        except yaml.YAMLError as err:
            raise ValueError(str(err)) from None
    return json.loads(text)


def override(cfg: Any, values: dict[str, Any], source: str) -> Any:
    """A copy of ``cfg`` with ``values`` applied; ``None`` values are left alone."""
    names = {f.name for f in fields(cfg)}
    unknown = set(values) - names
    if unknown:
        raise WgptError(f"{source}: unknown setting(s) {sorted(unknown)}; known: {', '.join(sorted(names))}")
    given = {k: v for k, v in values.items() if v is not None}
    for name, value in given.items():
        _check_type(name, value, getattr(cfg, name), source)
    return replace(cfg, **given) if given else cfg


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def _check_type(name: str, value: Any, default: Any, source: str) -> None:
    """Config files are untyped: a string where a number belongs fails here, naming the setting."""
    expected = type(default)
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
    if not ok:
        raise WgptError(f"{source}: {name} must be {_TYPE_NAMES.get(expected, expected.__name__)}, got {value!r}")


def config_from_dict(cls: type, values: Any, source: str) -> Any:
    """A config rebuilt from a dict a file recorded (a checkpoint, an export), every value type-checked."""
    if not isinstance(values, dict):
        raise WgptError(f"{source} is damaged (not a table of settings); use a file a `wgpt train` run wrote")
    return override(cls(), values, source)


def to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)
