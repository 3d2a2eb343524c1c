"""Command-line options made from the config table (``wgpt.config.setting``).

Every field of ``ModelConfig`` and ``TrainConfig`` that names a flag becomes a typer option with
that flag, that help, and the presets' values shown beside it; ``config_options`` adds them to a
command and hands the command one dict per config (``None``: not given, the preset's value
stands). Nothing maps a flag to a field by hand, so a new field with a flag is a new option.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import fields
from typing import Annotated, Any, Optional

import typer

from wgpt.config import PRESETS, preset

_CLI_TYPES = {int: int, float: float, bool: bool}  # everything else (str, Literal choices) is read as text


def _preset_values(cls: type, name: str) -> str:
    """What each preset sets ``name`` to, for the help: "tiny 4, paper 10, gpt2 12"."""
    values = {p: getattr(next(c for c in preset(p) if isinstance(c, cls)), name) for p in PRESETS}
    if len(set(map(str, values.values()))) == 1:
        return f"every preset: {next(iter(values.values()))}"
    return "presets: " + ", ".join(f"{p} {v}" for p, v in values.items())


def option_parameters(cls: type, only: tuple[str, ...] | None = None, helps: dict[str, str] | None = None) -> list[inspect.Parameter]:
    """One keyword parameter (default None) per flagged field of ``cls``, as typer reads them."""
    hints = typing.get_type_hints(cls)
    params = []
    for f in fields(cls):
        flag = f.metadata.get("flag")
        if flag is None or (only is not None and f.name not in only):
            continue
        kind = _CLI_TYPES.get(hints[f.name], str)
        help_text = f"{(helps or {}).get(f.name, f.metadata['help'])} ({_preset_values(cls, f.name)})"  # not [...]: rich markup
        option = typer.Option(*flag.split("/", 1) if kind is not bool else (flag,), help=help_text, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[Optional[kind], option]))
    return params


def config_options(**groups: tuple[type, tuple[str, ...] | None]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the options of each config class to a command, before its ``quiet`` option; the command
    receives, for each ``group=(ConfigClass, only)``, a dict ``group`` of field name -> value or None."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        keyword = inspect.Parameter.KEYWORD_ONLY  # typer passes every option by name
        hints = typing.get_type_hints(command, include_extras=True)  # the command's own options, resolved
        own = [
            p.replace(kind=keyword, annotation=hints.get(name, p.annotation))
            for name, p in inspect.signature(command).parameters.items()
            if name not in groups
        ]
        added = {group: option_parameters(cls, only) for group, (cls, only) in groups.items()}
        tail = [p for p in own if p.name == "quiet"]
        head = [p for p in own if p.name != "quiet"]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            for group, params in added.items():
                kwargs[group] = {p.name: kwargs.pop(p.name) for p in params}
            return command(**kwargs)

        generated = [p for params in added.values() for p in params]
        signature = inspect.Signature([*head, *generated, *tail])
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
        return wrapper

    return decorate
