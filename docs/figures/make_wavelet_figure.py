"""Draws docs/figures/wavelet_windows.png: the window each coordinate averages over.

python docs/figures/make_wavelet_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np
from matplotlib import pyplot as plt

from wgpt.wavelet import coordinate_levels


def main(d_model: int = 128, context: int = 512, step: int = 400) -> None:
    split = d_model // 2
    levels = coordinate_levels(d_model - split, context).numpy()
    windows = np.concatenate([np.ones(split, dtype=int), 2**levels])  # unchanged coordinates: a window of 1
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), dpi=110, gridspec_kw={"width_ratios": [1.1, 1]})
    image = np.zeros((d_model, context))
    for i, w in enumerate(windows):
        image[i, max(0, step - w + 1) : step + 1] = 1.0
    left.imshow(image, aspect="auto", cmap="Blues", interpolation="nearest", origin="lower")
    left.axvline(step, color="crimson", lw=1)
    left.set_xlabel(f"time step (the output at t = {step} averages the shaded span)")
    left.set_ylabel("embedding coordinate")
    left.set_title(f"windows per coordinate (d_model {d_model}, context {context})")
    right.step(np.arange(d_model), windows, where="mid", color="navy")
    right.set_yscale("log", base=2)
    right.set_xlabel("embedding coordinate")
    right.set_ylabel("window w(i), log scale")
    right.set_title("first half: unchanged; second half: levels 1..9")
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(Path(__file__).with_name("wavelet_windows.png"))


if __name__ == "__main__":
    main()
