"""The Prometheus text exposition format (0.0.4), written by hand: no client library needed.

A ``Family`` is one metric with its HELP and TYPE and its samples; ``render`` writes families
as the format wants them: ``# HELP`` and ``# TYPE`` first, label values escaped (sensor and
metric names come from devices: a quote or newline in one must not break the scrape or forge
a sample), histograms as cumulative ``_bucket{le=...}`` lines ending with ``+Inf``, then
``_sum`` and ``_count``. Pure: plain values in, text out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from officesensor.histogram import HistogramSnapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = Mapping[str, str]

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_KINDS = frozenset({"counter", "gauge", "histogram", "untyped"})


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family. Counters and gauges carry ``samples``, histograms ``histograms``."""

    name: str
    kind: str
    help: str
    samples: Sequence[tuple[Labels, float]] = ()
    histograms: Sequence[tuple[Labels, HistogramSnapshot]] = ()

    def __post_init__(self) -> None:
        if not _METRIC_NAME.fullmatch(self.name):
            raise ValueError(f"not a metric name: {self.name!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"not a metric type: {self.kind!r}")
        if self.kind == "histogram" and self.samples:
            raise ValueError("a histogram family takes histograms, not samples")
        if self.kind != "histogram" and self.histograms:
            raise ValueError(f"a {self.kind} family takes samples, not histograms")

    @classmethod
    def counter(cls, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> Family:
        return cls(name, "counter", help_text, samples=list(samples))

    @classmethod
    def gauge(cls, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> Family:
        return cls(name, "gauge", help_text, samples=list(samples))

    @classmethod
    def histogram(
        cls, name: str, help_text: str, histograms: Iterable[tuple[Labels, HistogramSnapshot]]
    ) -> Family:
        return cls(name, "histogram", help_text, histograms=list(histograms))

    def lines(self) -> list[str]:
        """The family's lines, HELP and TYPE first (always written, even with no samples)."""
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in self.samples:
            lines.append(sample_line(self.name, labels, value))
        for labels, histogram in self.histograms:
            if "le" in labels:
                raise ValueError("'le' is the bucket label of a histogram")
            for bound, count in histogram.cumulative():
                le = format_value(bound)
                lines.append(sample_line(f"{self.name}_bucket", {**labels, "le": le}, count))
            lines.append(sample_line(f"{self.name}_sum", labels, histogram.total))
            lines.append(sample_line(f"{self.name}_count", labels, histogram.count))
        return lines


def render(families: Iterable[Family]) -> str:
    """The exposition: every family once, in order; a repeated name is a programming error."""
    seen: set[str] = set()
    lines: list[str] = []
    for family in families:
        if family.name in seen:
            raise ValueError(f"metric family {family.name} written twice")
        seen.add(family.name)
        lines.extend(family.lines())
    return "\n".join(lines) + "\n"


def sample_line(name: str, labels: Labels, value: float) -> str:
    if not labels:
        return f"{name} {format_value(value)}"
    for key in labels:
        if not _LABEL_NAME.fullmatch(key) or key.startswith("__"):
            raise ValueError(f"not a label name: {key!r}")
    text = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
    return f"{name}{{{text}}} {format_value(value)}"


def escape_label(value: str) -> str:
    """A label value as the format writes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and newline escaped (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """Integers as integers, floats in full precision (repr), infinities and NaN spelled as
    the format spells them."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))
