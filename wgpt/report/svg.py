"""Hand-written SVG: loss curves, a piano roll and a waveform, drawn as plain elements.

SVG keeps the page self-contained and sharp at any width (a phone or a laptop), and each mark
is an element a test can find: a curve is one ``<polyline>``, a note one ``<rect>``. Every
drawing has a fixed ``viewBox`` and scales to the width of its container.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

import numpy as np

WIDTH, HEIGHT = 640, 340  # a chart's viewBox; the page scales it to the column
LEFT, RIGHT, TOP, BOTTOM = 58, 14, 12, 40  # room for tick labels (left, bottom)
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Scale:
    """Maps data values in ``[lo, hi]`` linearly onto pixels ``[start, end]``; ``end < start`` flips
    the axis (SVG's y grows downward). A range of zero width maps everything to its middle."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, value: float) -> float:
        if self.hi == self.lo:
            return (self.start + self.end) / 2
        return self.start + (value - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 times a power of ten apart) inside ``[lo, hi]``."""
    if not hi > lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + i * step, 12) for i in range(int((hi - first) / step + 1e-9) + 1)]


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


@dataclass
class Series:
    """One curve: ``xs``/``ys`` in data units, drawn solid or dashed in ``color``."""

    name: str
    xs: list[float]
    ys: list[float]
    color: str
    dashed: bool = False


@dataclass
class Marker:
    """A labelled point on a chart (a variant reaching the baseline's best loss)."""

    x: float
    y: float
    color: str
    label: str = ""


@dataclass
class Chart:
    """Curves with shared axes, optional horizontal reference lines (y, colour) and markers."""

    series: list[Series]
    x_label: str
    y_label: str
    markers: list[Marker] = field(default_factory=list)
    lines: list[tuple[float, str]] = field(default_factory=list)

    def scales(self) -> tuple[Scale, Scale]:
        xs = [x for s in self.series for x in s.xs] + [m.x for m in self.markers]
        ys = [y for s in self.series for y in s.ys] + [m.y for m in self.markers] + [y for y, _ in self.lines]
        lo, hi = min(ys), max(ys)
        pad = (hi - lo) * 0.05 or 0.5  # room above and below the extreme points
        return Scale(0.0, max(xs), LEFT, WIDTH - RIGHT), Scale(lo - pad, hi + pad, HEIGHT - BOTTOM, TOP)


def line_chart(chart: Chart) -> str:
    """The chart as an ``<svg>``: axes with round ticks, one ``<polyline class="series">`` per curve,
    dashed reference lines, and a circle per marker with its label."""
    sx, sy = chart.scales()
    parts = [_svg_open(WIDTH, HEIGHT, "chart"), _axes(sx, sy, chart.x_label, chart.y_label)]
    for y, color in chart.lines:
        parts.append(
            f'<line class="target" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="{color}" stroke-dasharray="2 3"/>'
        )
    for s in chart.series:
        points = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(s.xs, s.ys, strict=True))
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        parts.append(
            f'<polyline class="series" data-name="{escape(s.name)}" points="{points}" fill="none" stroke="{s.color}" stroke-width="2"{dash}/>'
        )
        if len(s.xs) == 1:  # one evaluation draws no line: show the point
            parts.append(f'<circle class="point" cx="{sx(s.xs[0]):.1f}" cy="{sy(s.ys[0]):.1f}" r="3" fill="{s.color}"/>')
    for m in chart.markers:
        cx, cy = sx(m.x), sy(m.y)
        parts.append(f'<circle class="marker" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{m.color}" stroke="#fff" stroke-width="1.5"/>')
        if m.label:
            parts.append(
                f'<text x="{cx:.1f}" y="{cy - 9:.1f}" text-anchor="middle" font-size="12" fill="{m.color}">{escape(m.label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _svg_open(width: float, height: float, cls: str) -> str:
    return f'<svg class="{cls}" viewBox="0 0 {width:g} {height:g}" role="img">'


def _axes(sx: Scale, sy: Scale, x_label: str, y_label: str) -> str:
    """Frame, grid lines at round values, tick labels and axis titles."""
    x0, x1, y0, y1 = sx.start, sx.end, sy.start, sy.end
    parts = [f'<rect x="{x0}" y="{y1}" width="{x1 - x0}" height="{y0 - y1}" fill="none" stroke="#999"/>']
    for t in nice_ticks(sx.lo, sx.hi):
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y1}" y2="{y0}" stroke="#eee"/>')
        parts.append(f'<text x="{x:.1f}" y="{y0 + 15}" text-anchor="middle" font-size="11" fill="#555">{_label(t)}</text>')
    for t in nice_ticks(sy.lo, sy.hi):
        y = sy(t)
        parts.append(f'<line x1="{x0}" x2="{x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#555">{_label(t)}</text>')
    parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{y0 + 33}" text-anchor="middle" font-size="12">{escape(x_label)}</text>')
    parts.append(
        f'<text transform="translate(14 {(y0 + y1) / 2:.1f}) rotate(-90)" text-anchor="middle" font-size="12">{escape(y_label)}</text>'
    )
    return "".join(parts)


@dataclass(frozen=True)
class Note:
    """A note in seconds; ``program`` colours it, drums get their own colour."""

    start: float
    end: float
    pitch: int
    program: int = 0
    is_drum: bool = False


ROLL_ROW = 5  # pixels per semitone
ROLL_LEFT, ROLL_BOTTOM = 34, 18  # room for pitch names (left) and seconds (bottom)
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def piano_roll(notes: list[Note], width: float = WIDTH) -> str:
    """Notes as ``<rect class="note">``: time runs left to right from 0 s to the last note's end,
    pitch bottom to top, one row of ``ROLL_ROW`` pixels per semitone over the notes' range (at
    least an octave). C rows are shaded and named. No notes: a short message instead."""
    if not notes:
        return '<p class="empty">no notes (nothing in this sample decodes to a note)</p>'
    lo, hi = min(n.pitch for n in notes), max(n.pitch for n in notes)
    if hi - lo < 12:
        lo = max(0, lo - (12 - (hi - lo)) // 2)
        hi = lo + 12
    plot_h = (hi - lo + 1) * ROLL_ROW
    height = plot_h + ROLL_BOTTOM
    sx = Scale(0.0, max(n.end for n in notes), ROLL_LEFT, width - 4)
    parts = [
        _svg_open(width, height, "pianoroll"),
        f'<rect x="{ROLL_LEFT}" y="0" width="{width - 4 - ROLL_LEFT}" height="{plot_h}" fill="#fafafa" stroke="#bbb"/>',
    ]
    for pitch in range(lo, hi + 1):
        if pitch % 12 == 0:
            y = (hi - pitch) * ROLL_ROW
            parts.append(f'<rect x="{ROLL_LEFT}" y="{y}" width="{width - 4 - ROLL_LEFT}" height="{ROLL_ROW}" fill="#ececec"/>')
            parts.append(
                f'<text x="{ROLL_LEFT - 3}" y="{y + ROLL_ROW}" text-anchor="end" font-size="9" fill="#555">C{pitch // 12 - 1}</text>'
            )
    for t in nice_ticks(sx.lo, sx.hi, 8):
        parts.append(f'<text x="{sx(t):.1f}" y="{height - 4}" text-anchor="middle" font-size="10" fill="#555">{_label(t)} s</text>')
    for n in notes:
        color = "#444" if n.is_drum else PALETTE[n.program % len(PALETTE)]
        x, w = sx(n.start), max(sx(n.end) - sx(n.start), 0.5)
        parts.append(
            f'<rect class="note" x="{x:.2f}" y="{(hi - n.pitch) * ROLL_ROW}" width="{w:.2f}" height="{ROLL_ROW}" fill="{color}">'
            f"<title>{_NAMES[n.pitch % 12]}{n.pitch // 12 - 1} {n.start:.2f}-{n.end:.2f} s</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def waveform(samples: np.ndarray, width: int = WIDTH, height: int = 80) -> str:
    """The signal's envelope (the min and max of each pixel column) as one filled ``<path>``;
    amplitudes in [-1, 1] span the full height."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return '<p class="empty">no audio</p>'
    columns = np.array_split(x, min(width, x.size))
    hi = np.array([c.max() for c in columns])
    lo = np.array([c.min() for c in columns])
    sx, sy = Scale(0, max(len(columns) - 1, 1), 0, width), Scale(-1.0, 1.0, height, 0)
    top = [f"{sx(i):.1f},{sy(min(v, 1.0)):.1f}" for i, v in enumerate(hi)]
    bottom = [f"{sx(i):.1f},{sy(max(v, -1.0)):.1f}" for i, v in reversed(list(enumerate(lo)))]
    path = "M" + " L".join(top + bottom) + " Z"
    return f'{_svg_open(width, height, "waveform")}<rect width="{width}" height="{height}" fill="#f6f6f6"/><path d="{path}" fill="#1f77b4"/></svg>'
