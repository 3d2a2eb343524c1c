"""Text, MIDI and audio behind one interface (``wgpt.modalities.base.Modality``)."""

from __future__ import annotations

import importlib
from typing import Any

from wgpt.errors import WgptError
from wgpt.modalities.base import Modality, SkipFile

_CLASSES = {
    "text": "wgpt.modalities.text:TextModality",
    "midi": "wgpt.modalities.midi:MidiModality",
    "audio": "wgpt.modalities.audio:AudioModality",
}


def modality_class(name: str) -> type[Modality]:
    """The class of a modality by name; imported lazily so text needs no MIDI or audio packages."""
    if name not in _CLASSES:
        raise WgptError(f"unknown modality {name!r}: choose one of {', '.join(_CLASSES)}")
    module, cls = _CLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def modality_from_spec(spec: dict[str, Any]) -> Modality:
    """Rebuild a modality (with its tokenizer) from the spec stored in shards and checkpoints.

    Specs come from files, which may be damaged or crafted: whatever the rebuild raises is one line.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or spec["name"] not in _CLASSES:
        raise WgptError("the recorded modality is damaged (no known modality name): prepare the data again")
    cls = modality_class(spec["name"])
    try:
        return cls.from_spec(spec)
    except WgptError:
        raise
    except Exception as err:
        detail = f"missing {err}" if isinstance(err, KeyError) else " ".join(str(err).split())[:160] or type(err).__name__
        raise WgptError(f"the recorded {spec['name']} tokenizer is damaged ({detail}): prepare the data again") from None


__all__ = ["Modality", "SkipFile", "modality_class", "modality_from_spec"]
