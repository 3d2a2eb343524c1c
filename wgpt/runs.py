"""Where a run's data, output folder and configs come from.

Precedence, lowest first: the preset, a ``--config`` file, then flags given on the command line.
A resumed run takes its model config and its training config from ``RUN/last.pt``; flags given
again (``--steps`` to train longer, say) override the training config. What would make it
another run (model flags, ``--seed``, ``--preset``, ``--config``) is refused, and data other
than the run's is named in a notice.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wgpt.config import MODALITY_NAMES, ModelConfig, TrainConfig, flag_of, is_numbers, is_paths, load_config_file, override, preset
from wgpt.errors import WgptError
from wgpt.lock import refuse_if_held

RUN_NAMES = {"none": "baseline", "haar": "haar", "learnable": "learnable"}
RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl", "metrics.csv", "loss.png")  # what a run writes and a fresh run replaces


STEP_CHECKPOINTS = "checkpoints"  # RUN/checkpoints/step-N.pt, kept by --keep-every


def step_checkpoint(out: Path, step: int) -> Path:
    return out / STEP_CHECKPOINTS / f"step-{step:07d}.pt"


def step_checkpoints(out: Path) -> dict[int, Path]:
    """The step checkpoints a run kept (``--keep-every``), by step."""
    found = sorted((out / STEP_CHECKPOINTS).glob("step-*.pt"))
    return {int(p.stem.removeprefix("step-")): p for p in found if p.stem.removeprefix("step-").isdigit()}


def clear_run(out: Path) -> None:
    """Remove a previous run's files from ``out`` so that a fresh run does not resume or append to them
    (``wgpt.training.train`` does, holding the folder's lock; ``plan_run`` refuses to without --overwrite)."""
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)
    for path in step_checkpoints(out).values():
        path.unlink()
    for events in (out / "tensorboard").glob("events.out.tfevents.*"):  # --logger tensorboard
        events.unlink()
    with contextlib.suppress(OSError):
        (out / STEP_CHECKPOINTS).rmdir()  # if empty


@dataclass
class RunPlan:
    data: list[Path]
    out: Path
    model: ModelConfig
    train: TrainConfig
    resume: bool
    data_weights: list[float] | None = None
    notices: list[str] = field(default_factory=list)  # one line each, for the user
    checkpoint: dict[str, Any] | None = None  # a resumed run's last.pt, loaded once for its configs and its state

    def take_checkpoint(self) -> dict[str, Any] | None:
        """The loaded last.pt, handed over once: the plan keeps no copy of the weights through training."""
        ckpt, self.checkpoint = self.checkpoint, None
        return ckpt


def default_data(modality: str) -> Path:
    if modality not in MODALITY_NAMES:
        raise WgptError(f"unknown --modality {modality!r}: choose one of {', '.join(MODALITY_NAMES)}")
    return Path("data") / modality


def plan_run(
    modality: str,
    data: list[Path] | None,
    out: Path | None,
    preset_name: str | None,
    config_file: Path | None,
    model_flags: dict[str, Any],
    train_flags: dict[str, Any],
    resume: bool = False,
    overwrite: bool = False,
    data_weights: list[float] | None = None,
) -> RunPlan:
    """Resolve the configs of a new or resumed run; ``None`` flags mean "not given"."""
    given_data = [Path(p) for p in data] if data else None
    file = load_config_file(config_file) if config_file is not None and not resume else {}
    if given_data is None and file.get("data") is not None:  # flags win over the file
        given_data = _folders(file["data"])
        data_weights = data_weights if data_weights is not None else file.get("data_weights")
    folders = given_data or [default_data(modality)]
    wavelet = model_flags.get("wavelet") or file.get("model", {}).get("wavelet") or "none"
    out = Path(out) if out is not None else Path("runs") / f"{'+'.join(p.name for p in folders)}-{RUN_NAMES.get(wavelet, wavelet)}"
    refuse_if_held(out)  # before anything else: a running run's files are not "an earlier run"
    if resume:
        for given, flag in ((preset_name, "--preset"), (config_file, "--config")):
            if given is not None:
                raise WgptError(f"{flag} sets up a new run; --resume continues {out} with the settings in its last.pt: drop {flag}")
        return _resumed(given_data, data_weights, out, model_flags, train_flags)
    if (out / "last.pt").exists() and not overwrite:
        raise WgptError(f"{out} already holds a run: pass --resume to continue it, --overwrite to replace it, or --out for a new folder")
    left = [name for name in RUN_FILES if (out / name).exists()]
    if left and not overwrite:  # a run that lost its last.pt still holds a best.pt or curves someone may want
        raise WgptError(
            f"{out} holds {', '.join(left)} from an earlier run but no last.pt to resume: pass --overwrite to replace them, or --out for a new folder"
        )
    model_cfg, train_cfg = preset(preset_name or "tiny")
    if "preset" in file:
        model_cfg, train_cfg = preset(file["preset"])
    model_cfg = override(model_cfg, file.get("model", {}), str(config_file))
    train_cfg = override(train_cfg, file.get("train", {}), str(config_file))
    model_cfg = override(model_cfg, model_flags, "flags")
    train_cfg = override(train_cfg, train_flags, "flags")
    return RunPlan(folders, out, model_cfg, train_cfg, resume=False, data_weights=data_weights)


def _resumed(
    data: list[Path] | None, weights: list[float] | None, out: Path, model_flags: dict[str, Any], train_flags: dict[str, Any]
) -> RunPlan:
    from wgpt.checkpoint import load_checkpoint, model_config_of, train_config_of

    if not (out / "last.pt").is_file():
        raise WgptError(f"nothing to resume: {out}/last.pt does not exist (drop --resume to start a new run, or pass --out RUN)")
    ckpt = load_checkpoint(out / "last.pt")
    saved_model = model_config_of(ckpt)
    given = {k: v for k, v in model_flags.items() if v is not None and not (k == "wavelet" and v == "none")}
    changed = {k: v for k, v in given.items() if getattr(saved_model, k) != v}
    if changed:
        flags = ", ".join(sorted(flag_of(ModelConfig, k) for k in changed))
        raise WgptError(f"cannot change the model when resuming ({flags}); start a new run with --out instead")
    saved_train = train_config_of(ckpt)
    if train_flags.get("seed") is not None and train_flags["seed"] != saved_train.seed:
        raise WgptError(
            f"{out} was trained with --seed {saved_train.seed}; resuming keeps its data order: drop --seed, or start a new run with --out"
        )
    train_cfg = override(saved_train, train_flags, "flags")
    recorded, recorded_weights = ckpt.get("data"), ckpt.get("data_weights")
    if not is_paths(recorded) or not (recorded_weights is None or is_numbers(recorded_weights)):
        raise WgptError(f"{out}/last.pt is damaged (its data folders are not recorded): pass --data, or start a new run with --out")
    saved = _folders(recorded)
    notices = []
    if data is None:  # the data the run was trained on, unless --data says otherwise
        data = saved
        weights = weights if weights is not None else recorded_weights
    elif [p.resolve() for p in data] != [p.resolve() for p in saved] and _same_tokenizer(data, ckpt["modality"]):
        notices.append(f"resuming on {', '.join(map(str, data))}, not the data {out} was trained on ({', '.join(map(str, saved))})")
    return RunPlan(data, out, saved_model, train_cfg, resume=True, data_weights=weights, notices=notices, checkpoint=ckpt)


def _folders(value: str | list[str]) -> list[Path]:
    """Data as configs and checkpoints record it: one folder, or a list of them."""
    return [Path(p) for p in ([value] if isinstance(value, str) else value)]


def _same_tokenizer(folders: list[Path], spec: dict[str, Any]) -> bool:
    """Whether every folder holds data of ``spec``'s modality and tokenizer (otherwise training refuses it, naming why)."""
    from wgpt.shards import read_meta

    try:
        return all(read_meta(folder).get("modality") == spec for folder in folders)
    except WgptError:
        return False
