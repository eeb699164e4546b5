"""Tiny inline-SVG trend lines for the overview cards: drawn by the server, kept up to date by
the page script."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 240
HEIGHT = 48
_PAD = 4.0


@dataclass(frozen=True, slots=True)
class Sparkline:
    line: str  # SVG polyline points
    area: str  # SVG polygon points: the line closed along the bottom
    low: float
    high: float
    span: str  # how much time the line covers, e.g. "24 h"
    width: int = WIDTH
    height: int = HEIGHT


def sparkline(points: Sequence[Sequence[float]]) -> Sparkline | None:
    """The trend of ``points`` ([epoch ms, value] pairs, oldest first), placed by time, or None
    with fewer than two. static/officesensor.js redraws it the same way as readings arrive."""
    if len(points) < 2:
        return None
    t0, t1 = points[0][0], points[-1][0]
    values = [p[1] for p in points]
    low, high = min(values), max(values)
    spread = high - low or 1.0
    duration = t1 - t0 or 1.0
    usable = HEIGHT - 2 * _PAD
    line = " ".join(
        f"{(t - t0) / duration * WIDTH:.1f},{_PAD + (high - v) / spread * usable:.1f}"
        for t, v in points
    )
    area = f"0,{HEIGHT} {line} {WIDTH},{HEIGHT}"
    return Sparkline(line, area, low, high, _duration((t1 - t0) / 1000))


def _duration(seconds: float) -> str:
    if seconds >= 86_400 * 1.5:
        return f"{seconds / 86_400:.0f} d"
    if seconds >= 3_600 * 0.95:
        return f"{seconds / 3_600:.1f} h".replace(".0 h", " h")
    return f"{max(seconds, 1) / 60:.0f} min"
