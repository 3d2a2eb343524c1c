"""Loss-curve figures (PNG) from metrics rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wgpt.io import atomic_path


def plot_losses(rows: list[dict[str, Any]], path: Path, title: str = "loss") -> None:
    """Train and validation loss against step for one run."""
    plot_curves({"train": _series(rows, "train_loss"), "val": _series(rows, "val_loss")}, path, title)


def plot_curves(
    curves: dict[str, tuple[list[float], list[float]]],
    path: Path,
    title: str,
    ylabel: str = "loss (nats/token)",
    styles: dict[str, dict[str, str]] | None = None,
    points: dict[str, tuple[float, float]] | None = None,
) -> None:
    """One line per named (steps, values) series; ``styles`` gives matplotlib styles per name (colour, line style);
    ``points`` marks one (step, value) per name, in its colour (a run's best validation loss)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for name, (steps, values) in curves.items():
        if steps:
            style = (styles or {}).get(name, {})
            ax.plot(steps, values, label=name, marker="o" if len(steps) < 30 else None, markersize=3, **style)
            if points and name in points:
                ax.plot(*points[name], marker="*", markersize=11, color=style.get("color"), linestyle="none")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    many = len(curves) > 6
    ax.legend(fontsize="small" if many else None, ncol=2 if many else 1)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    kept = [r for r in rows if r.get(key) is not None]
    return [r["step"] for r in kept], [r[key] for r in kept]
