"""Rich progress bars shared by prepare, train and sample."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True)


def progress_bar(show: bool = True, *fields: str, unit: str = "items") -> Progress:
    """A bar with elapsed and remaining time, plus ``fields`` shown as ``name value``. ``unit="bytes"``
    counts bytes and shows their rate (MB/s); else it counts items (steps, tokens)."""
    amount = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        *amount,
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
        *(TextColumn(f"{name} {{task.fields[{name}]}}") for name in fields),
    ]
    return Progress(*columns, console=console, disable=not show, transient=False)
