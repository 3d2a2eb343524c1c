"""Reading validation curves: a run's best point, when it reached a loss, whether it overfits.

Rows are ``metrics.jsonl`` rows: ``step``, ``val_loss`` and, where measured, ``train_loss``.
Training uses them to say when a run overfits or should stop early; ``wgpt bench`` to measure
the speed-up against the baseline's best.
"""

from __future__ import annotations

from typing import Any


def steps_to_reach(rows: list[dict[str, Any]], target: float, x: str = "step") -> float | None:
    """First (interpolated) step at which ``val_loss`` is at or below ``target``; None if never.

    ``x="elapsed_s"`` gives the wall-clock seconds instead (both start from 0 before the first row)."""
    prev_step, prev_loss = 0, None
    for row in rows:
        step, loss = row[x], row["val_loss"]
        if loss <= target:
            if prev_loss is None or prev_loss == loss:
                return float(step)
            return prev_step + (prev_loss - target) * (step - prev_step) / (prev_loss - loss)
        prev_step, prev_loss = step, loss
    return None


def best_point(rows: list[dict[str, Any]]) -> tuple[float, int]:
    """The lowest validation loss of a run and the first step where it was reached."""
    best = min(rows, key=lambda r: r["val_loss"])
    return best["val_loss"], best["step"]


def overfit(rows: list[dict[str, Any]], patience: int = 3) -> bool:
    """Validation loss has not improved for the last ``patience`` evaluations while training loss fell."""
    if len(rows) <= patience:
        return False
    _, best_step = best_point(rows)
    tail = rows[-patience - 1 :]
    train = [r.get("train_loss") for r in tail]
    return best_step <= tail[0]["step"] and None not in train and train[-1] < train[0]
