"""Rich progress bars shared by prepare, train and sample."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def progress_bar(show: bool = True, *fields: str) -> Progress:
    """A bar with count, elapsed and remaining time, plus ``fields`` shown as ``name=value``."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        *(TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields),
    ]
    return Progress(*columns, console=console, disable=not show, transient=False)
