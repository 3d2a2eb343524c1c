"""Self-contained checkpoints, loaded only through ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and JSON-like values: model weights, the model and
training configs, the modality spec (with its tokenizer), optimiser state, step, best validation
loss and RNG states. Nothing in it is code, so loading a crafted file cannot execute anything.
A sha256 of everything else in it (``state_digest``) is saved with it and checked on load: a
flipped bit in a weight is refused, not evaluated.
"""

from __future__ import annotations

import hashlib
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from wgpt.config import MODALITY_NAMES, ModelConfig, TrainConfig, config_from_dict, to_dict
from wgpt.errors import WgptError
from wgpt.io import atomic_path
from wgpt.limits import check_fits, model_params
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
    ckpt["sha256"] = state_digest(ckpt)
    with atomic_path(path) as tmp:
        try:
            torch.save(ckpt, tmp)
        except (OSError, RuntimeError) as err:  # torch's zip writer reports a full disk as a RuntimeError
            full = shutil.disk_usage(Path(path).parent).free < 64 << 20
            reason = "the disk is full" if full else " ".join(str(err).split())[:160]
            raise WgptError(
                f"cannot write {path} ({reason}); the previous {Path(path).name} is unchanged: free some space, then run the same command with --resume"
            ) from None


def state_digest(obj: Any) -> str:
    """sha256 over every tensor's dtype, shape and bytes and every other value, in key order; the
    ``sha256`` entry itself excluded. The same before saving and after loading."""
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in obj.items() if k != "sha256"}, "")
    return digest.hexdigest()


def _feed(digest: Any, obj: Any, key: str) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            _feed(digest, obj[k], f"{key}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _feed(digest, v, f"{key}/{i}")
    else:
        digest.update(f"{key}={obj!r}\n".encode())


def _is_zip(path: Path) -> bool:
    """``zipfile.is_zipfile``, which itself raises ``BadZipFile`` on some damaged end records (a flipped byte there)."""
    try:
        return zipfile.is_zipfile(path)
    except zipfile.BadZipFile:
        return False


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint (or a folder ``wgpt export`` wrote) safely; refuse anything else."""
    path = Path(path)
    from wgpt.export import is_export, load_export  # here: wgpt.export builds on this module

    if is_export(path):
        ckpt = load_export(path)
        check_contents(ckpt, path)
        return ckpt
    if path.is_dir():
        raise WgptError(f"checkpoint {path} is a folder: pass the .pt file in it (e.g. {path}/best.pt)")
    if not path.is_file():
        raise WgptError(f"checkpoint {path} does not exist: pass the .pt file a `wgpt train` run wrote (e.g. runs/NAME/best.pt)")
    if not _is_zip(path):  # wgpt writes torch's zip format; anything else is never unpickled
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
    check_contents(ckpt, path)
    return ckpt


def check_contents(ckpt: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose contents differ from its checksum, lack a part every command
    needs, or hold non-finite weights (a crafted or damaged file), in one line naming it."""
    if "sha256" in ckpt and ckpt["sha256"] != state_digest(ckpt):  # files written before checksums have none
        raise WgptError(
            f"{path} is corrupt: its contents differ from the checksum saved with them (damaged on disk or in a copy); "
            "use another checkpoint, e.g. the run's other .pt file"
        )
    weights, spec = ckpt.get("model"), ckpt.get("modality")
    if not isinstance(ckpt.get("model_config"), dict) or not isinstance(weights, dict) or not weights:
        raise WgptError(f"{path} is damaged (no model config or weights); use a .pt file a `wgpt train` run wrote")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise WgptError(f"{path} is damaged (its weights are not all named tensors); use a .pt file a `wgpt train` run wrote")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] not in MODALITY_NAMES:
        raise WgptError(f"{path} is damaged (it does not say which modality it models); use a .pt file a `wgpt train` run wrote")
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise WgptError(f"{path} holds NaN or infinite weights ({name}): it cannot be used; take an earlier checkpoint")


def modality_of(ckpt: dict[str, Any], path: Path) -> Any:
    """The modality (with its tokenizer) a checkpoint records, checked against its model's vocabulary."""
    from wgpt.modalities import modality_from_spec

    try:
        modality = modality_from_spec(ckpt["modality"])
    except WgptError as err:
        raise WgptError(f"{path}: {err}") from None
    vocab = model_config_of(ckpt).vocab_size
    if modality.vocab_size != vocab:
        raise WgptError(
            f"{path} is damaged: its tokenizer has {modality.vocab_size:,} ids but its model {vocab:,}; use a .pt file a `wgpt train` run wrote"
        )
    return modality


def model_from_checkpoint(ckpt: dict[str, Any]) -> GPT:
    cfg = model_config_of(ckpt)
    described = model_params(cfg)
    held = sum(t.numel() for name, t in ckpt["model"].items() if name != "head.weight")  # the head is tied
    if described > 2 * held + 100_000:  # a crafted config must not make us allocate what the file does not hold
        raise WgptError(f"the checkpoint is damaged: its config describes {described:,} parameters but it holds {held:,}")
    check_fits(4 * described, f"a model of {described:,} parameters", "use a machine with more memory")
    model = GPT(cfg)
    load_weights(model, ckpt)
    return model


def model_config_of(ckpt: dict[str, Any]) -> ModelConfig:
    """The model config a checkpoint records; a damaged one is one line."""
    return config_from_dict(ModelConfig, ckpt.get("model_config"), "the checkpoint's model config")


def train_config_of(ckpt: dict[str, Any]) -> TrainConfig:
    """The training config a checkpoint records; a damaged one is one line."""
    return config_from_dict(TrainConfig, ckpt.get("train_config"), "the checkpoint's training config")


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
