"""Tiny inline-SVG trend lines for the overview cards: no JavaScript, nothing to load."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from officesensor.models import Reading

#: Readings drawn per card: an hour at the original sensor's 15 s interval.
SPARK_READINGS = 240
WIDTH = 240
HEIGHT = 48
_PAD = 4.0


@dataclass(frozen=True, slots=True)
class Sparkline:
    line: str  # SVG polyline points
    area: str  # SVG polygon points: the line closed along the bottom
    low: float
    high: float
    span: str  # how much time the line covers, e.g. "1 h"
    width: int = WIDTH
    height: int = HEIGHT


def sparkline(readings: Sequence[Reading]) -> Sparkline | None:
    """The trend of ``readings`` (oldest first), or None with fewer than two."""
    if len(readings) < 2:
        return None
    values = [r.value for r in readings]
    low, high = min(values), max(values)
    spread = high - low or 1.0
    step = WIDTH / (len(values) - 1)
    usable = HEIGHT - 2 * _PAD
    points = [
        f"{i * step:.1f},{_PAD + (high - v) / spread * usable:.1f}" for i, v in enumerate(values)
    ]
    line = " ".join(points)
    area = f"0,{HEIGHT} {line} {WIDTH},{HEIGHT}"
    seconds = (readings[-1].ts - readings[0].ts).total_seconds()
    return Sparkline(line, area, low, high, _duration(seconds))


def _duration(seconds: float) -> str:
    if seconds >= 86_400 * 1.5:
        return f"{seconds / 86_400:.0f} d"
    if seconds >= 3_600 * 0.95:
        return f"{seconds / 3_600:.1f} h".replace(".0 h", " h")
    return f"{max(seconds, 1) / 60:.0f} min"
