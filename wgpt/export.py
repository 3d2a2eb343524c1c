"""Exported models: weights in safetensors, settings in JSON, a model card; no optimiser, no pickle.

``wgpt export RUN_OR_CKPT --out DIR`` writes

- ``model.safetensors``: the weights only (the head is tied to the token embedding, so it is
  stored once, as ``tok_emb.weight``), readable by ``safetensors``' own loader;
- ``config.json``: the model config, the modality spec (which holds the tokenizer), a sentence
  saying what the ids are (``ids``) and a sha256 of the weights, checked on load;
- the tokenizer as files other libraries load (``tokenizer_files``): ``tokenizer.json`` for
  Hugging Face ``tokenizers`` (text BPE and chars) or in MidiTok's saved form (MIDI); text as
  bytes and audio need none (their ids are UTF-8 bytes, mu-law samples);
- ``README.md``: a model card with the data, the steps and the losses.

The folder is what ``huggingface_hub`` uploads as it is. ``wgpt eval`` and ``wgpt sample``
accept it wherever they accept a checkpoint (``wgpt.checkpoint.load_checkpoint`` reads both),
and ``load_pretrained`` returns the model and its modality.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wgpt.checkpoint import FORMAT, VERSION, load_checkpoint, modality_of, model_from_checkpoint, state_digest
from wgpt.errors import WgptError
from wgpt.io import atomic_path, json_safe, os_reason, usual_mode, write_json

EXPORT_FORMAT = "wgpt-export"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
TOKENIZER_FILES = ("tokenizer.json",)  # every name a modality's tokenizer_files may give
TIED = "head.weight"  # the same tensor as tok_emb.weight
TRAINED = ("data", "step", "best_val_loss", "best_step", "train_config")  # what eval and the card read from a run


def is_export(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / WEIGHTS).is_file()


def export(src: Path, out: Path) -> Path:
    """Write an export of ``src`` (a run folder, whose ``best.pt`` is used, or a checkpoint) into ``out``."""
    from safetensors.torch import save_file

    src, out = Path(src), Path(out)
    ckpt_path = src / "best.pt" if src.is_dir() and not is_export(src) else src
    ckpt = load_checkpoint(ckpt_path)
    model_from_checkpoint(ckpt)  # a damaged checkpoint fails here, before anything is written
    modality = modality_of(ckpt, ckpt_path)
    tensors = {k: v.contiguous() for k, v in ckpt["model"].items() if k != TIED}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WgptError(f"cannot create {out}: {os_reason(err)}; choose another --out") from None
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": EXPORT_FORMAT})
        usual_mode(tmp)  # safetensors writes its file 0600; an export is meant to be shared
    trained = {k: json_safe(ckpt.get(k)) for k in TRAINED}  # a run that never evaluated has a best loss of inf
    tokenizer = modality.tokenizer_files()
    settings = {"format": EXPORT_FORMAT, "version": VERSION, "model_config": ckpt["model_config"], "modality": ckpt["modality"], **trained}
    settings.update(ids=modality.describe_ids(), tokenizer_files=sorted(tokenizer))
    settings["weights_sha256"] = state_digest({"model": tensors})  # checked on load: a flipped bit is refused
    for stale in set(TOKENIZER_FILES) - set(tokenizer):  # left by an earlier export into this folder, of another tokenizer
        (out / stale).unlink(missing_ok=True)
    for name, text in tokenizer.items():
        with atomic_path(out / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    write_json(out / CONFIG, settings)
    with atomic_path(out / CARD) as tmp:
        tmp.write_text(model_card(ckpt, ckpt_path, settings["ids"], settings["tokenizer_files"]), encoding="utf-8")
    return out


def load_export(folder: Path) -> dict[str, Any]:
    """An export as the dict ``load_checkpoint`` gives (weights, model config, modality), for eval and sample."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        settings = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
        weights = load_file(str(folder / WEIGHTS))
    except (OSError, ValueError, SafetensorError) as err:
        raise WgptError(f"{folder} is not a readable wgpt export ({type(err).__name__}); export it again with `wgpt export`") from None
    if not isinstance(settings, dict) or settings.get("format") != EXPORT_FORMAT or "tok_emb.weight" not in weights:
        raise WgptError(f"{folder} is not a wgpt export: its {CONFIG} or {WEIGHTS} is not one `wgpt export` wrote")
    if "weights_sha256" in settings and settings["weights_sha256"] != state_digest({"model": weights}):
        raise WgptError(f"{folder / WEIGHTS} is corrupt: its weights differ from the checksum in {CONFIG}; export it again")
    weights[TIED] = weights["tok_emb.weight"]
    kept = {k: settings.get(k) for k in ("model_config", "modality", *TRAINED)}
    return {"format": FORMAT, "version": VERSION, **kept, "model": weights}


def load_pretrained(folder: Path) -> tuple[Any, Any]:
    """``(model, modality)`` of an export (or a checkpoint), the model in eval mode on the CPU."""
    ckpt = load_checkpoint(folder)
    return model_from_checkpoint(ckpt).eval(), modality_of(ckpt, folder)


def model_card(ckpt: dict[str, Any], source: Path, ids: str = "", tokenizer_files: Sequence[str] = ()) -> str:
    """A short README: what the model is, what it was trained on, how far, how well."""
    cfg, spec, train = ckpt["model_config"], ckpt.get("modality") or {}, ckpt.get("train_config") or {}
    wavelet = {
        "none": "no wavelet structure (baseline)",
        "haar": "the fixed Haar wavelet structure",
        "learnable": "learnable wavelet filters",
    }
    loss = ckpt.get("best_val_loss")
    lines = [
        "---",
        "library_name: wgpt",
        f"tags: [wgpt, waveletgpt, {spec.get('name', 'unknown')}]",
        "---",
        "",
        f"# WaveletGPT ({spec.get('name', 'unknown')})",
        "",
        f"A {cfg['n_layer']}-layer GPT decoder (width {cfg['d_model']}, {cfg['n_head']} heads, context {cfg['context']}, "
        f"vocabulary {cfg['vocab_size']}) with {wavelet.get(cfg.get('wavelet'), cfg.get('wavelet'))}, trained with wgpt.",
        "",
        f"- Data: `{ckpt.get('data', 'not recorded')}`",
        *([f"- Tokens: {ids}"] if ids else []),
        *([f"- Tokenizer files: {', '.join(f'`{n}`' for n in tokenizer_files)}"] if tokenizer_files else []),
        f"- Steps: {ckpt.get('step', 'not recorded')} of {train.get('steps', '?')}, batch {train.get('batch_size', '?')}, seed {train.get('seed', '?')}",
    ]
    if isinstance(loss, float) and math.isfinite(loss):
        lines.append(
            f"- Best validation loss: {loss:.4f} nats/token ({loss / math.log(2):.4f} bits/token) at step {ckpt.get('best_step', '?')}"
        )
    lines += [
        f"- Exported from: `{source}`",
        "",
        "```bash",
        "wgpt eval --ckpt THIS_FOLDER          # needs the prepared validation data it was trained on",
        "wgpt sample --ckpt THIS_FOLDER --out sample" + {"midi": ".mid", "audio": ".wav"}.get(spec.get("name"), ".txt"),
        "```",
        "",
        "```python",
        "from wgpt.export import load_pretrained",
        'model, modality = load_pretrained("THIS_FOLDER")',
        "```",
        "",
    ]
    return "\n".join(lines)
