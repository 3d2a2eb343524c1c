"""Self-contained checkpoints, loaded only through ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and JSON-like values: model weights, the model and
training configs, the modality spec (with its tokenizer), optimiser state, step, best validation
loss and RNG states. Nothing in it is code, so loading a crafted file cannot execute anything.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from wgpt.config import ModelConfig, TrainConfig, to_dict
from wgpt.errors import WgptError
from wgpt.io import atomic_path
from wgpt.model import GPT

FORMAT = "wgpt-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, model: GPT, modality_spec: dict[str, Any], train_cfg: TrainConfig | None = None, **state: Any) -> None:
    """Write atomically; ``state`` holds optimizer, step, best_val_loss, rng, data..."""
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "model_config": to_dict(model.cfg),
        "train_config": None if train_cfg is None else to_dict(train_cfg),
        "modality": modality_spec,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **state,
    }
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint (or a folder ``wgpt export`` wrote) safely; refuse anything else."""
    path = Path(path)
    from wgpt.export import is_export, load_export  # here: wgpt.export builds on this module

    if is_export(path):
        return load_export(path)
    if path.is_dir():
        raise WgptError(f"checkpoint {path} is a folder: pass the .pt file in it (e.g. {path}/best.pt)")
    if not path.is_file():
        raise WgptError(f"checkpoint {path} does not exist: pass the .pt file a `wgpt train` run wrote (e.g. runs/NAME/best.pt)")
    if not zipfile.is_zipfile(path):  # wgpt writes torch's zip format; anything else is never unpickled
        raise WgptError(
            f"{path} is not a wgpt checkpoint (not a PyTorch zip archive: truncated, or another kind of file); "
            "pass a .pt file a `wgpt train` run wrote"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WgptError(f"{path} is not a safe wgpt checkpoint (it asks to run code when loaded); refusing to load it") from None
    except Exception as err:  # truncated, not a zip, not torch at all
        raise WgptError(
            f"{path} is not a readable checkpoint ({type(err).__name__}); it may be truncated or another kind of file"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise WgptError(f"{path} is not a wgpt checkpoint")
    if ckpt.get("version") != VERSION:
        raise WgptError(f"{path} has checkpoint version {ckpt.get('version')}; this wgpt reads version {VERSION}")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> GPT:
    model = GPT(model_config_of(ckpt))
    load_weights(model, ckpt)
    return model


def model_config_of(ckpt: dict[str, Any]) -> ModelConfig:
    """The model config a checkpoint records; a damaged one is one line."""
    try:
        return ModelConfig(**ckpt["model_config"])
    except (KeyError, TypeError) as err:
        raise _damaged(err) from None


def load_weights(model: GPT, ckpt: dict[str, Any]) -> None:
    """Load a checkpoint's weights into ``model``; weights of another shape, or missing ones, are one line."""
    try:
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, RuntimeError) as err:
        raise _damaged(err) from None


def _damaged(err: Exception) -> WgptError:
    detail = f"missing {err}" if isinstance(err, KeyError) else " ".join(str(err).split())[:200]
    return WgptError(f"the checkpoint is damaged ({detail}); use a .pt file a `wgpt train` run wrote")


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
