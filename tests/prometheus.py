"""A small, strict reader of the Prometheus text exposition format 0.0.4, for the tests.

It refuses anything a Prometheus server would refuse (and a little more): bad names, bad
escapes, samples before their TYPE, a family split in two, duplicate samples, histograms
whose buckets are not cumulative or do not end with ``+Inf`` equal to ``_count``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
VALUE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}

Labels = tuple[tuple[str, str], ...]


@dataclass
class MetricFamily:
    name: str
    kind: str = "untyped"
    help: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def values(self, suffix: str = "") -> dict[Labels, float]:
        """Samples named ``name + suffix``, keyed by their sorted labels."""
        return {
            tuple(sorted(labels.items())): value
            for name, labels, value in self.samples
            if name == self.name + suffix
        }

    def value(self, **labels: str) -> float:
        """The one plain sample with exactly these labels."""
        return self.values()[tuple(sorted(labels.items()))]

    def histogram(self, **labels: str) -> Histogram:
        key = dict(labels)
        buckets = [
            (_le(ls["le"]), v)
            for n, ls, v in self.samples
            if n == self.name + "_bucket" and {k: x for k, x in ls.items() if k != "le"} == key
        ]
        sums = [v for n, ls, v in self.samples if n == self.name + "_sum" and ls == key]
        counts = [v for n, ls, v in self.samples if n == self.name + "_count" and ls == key]
        assert len(sums) == 1, f"no single histogram {self.name}{labels}"
        assert len(counts) == 1, f"no single histogram {self.name}{labels}"
        return Histogram(buckets, sums[0], counts[0])

    def label_sets(self, suffix: str = "") -> list[dict[str, str]]:
        return [labels for name, labels, _ in self.samples if name == self.name + suffix]


@dataclass
class Histogram:
    buckets: list[tuple[float, float]]
    sum: float
    count: float


def _le(text: str) -> float:
    return math.inf if text == "+Inf" else float(text)


def parse(text: str) -> dict[str, MetricFamily]:
    """The families of ``text``; raises AssertionError at the first thing out of order."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, MetricFamily] = {}
    closed: set[str] = set()  # families whose samples are finished (another one started)
    current: str | None = None
    seen: set[tuple[str, Labels]] = set()
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert METRIC_NAME.fullmatch(name), where
                family = families.setdefault(name, MetricFamily(name))
                assert name not in closed, f"{where}: after samples"
                assert not family.samples, f"{where}: after samples"
                if current is not None and current != name:
                    closed.add(current)
                current = name
                if parts[1] == "HELP":
                    assert family.help is None, f"{where}: second HELP"
                    family.help = _unescape_help(parts[3] if len(parts) == 4 else "", where)
                else:
                    assert len(parts) == 4, where
                    assert parts[3] in TYPES, where
                    assert family.kind == "untyped", f"{where}: second TYPE"
                    family.kind = parts[3]
            continue
        name, labels, value = _parse_sample(line, where)
        family_name = _family_of(name, families)
        assert family_name is not None, f"{where}: no TYPE before it"
        assert family_name not in closed, f"{where}: family {family_name} split"
        if current is not None and current != family_name:
            closed.add(current)
        current = family_name
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"{where}: duplicate sample"
        seen.add(key)
        families[family_name].samples.append((name, labels, value))
    for family in families.values():
        if family.kind == "histogram":
            _check_histogram(family)
        else:
            assert all(n == family.name for n, _, _ in family.samples), family.name
    return families


def _family_of(name: str, families: dict[str, MetricFamily]) -> str | None:
    if name in families and families[name].kind != "histogram":
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and base in families and families[base].kind == "histogram":
            return base
    return None


def _parse_sample(line: str, where: str) -> tuple[str, dict[str, str], float]:
    match = METRIC_NAME.match(line)
    assert match, where
    name, rest = match[0], line[match.end() :]
    labels: dict[str, str] = {}
    if rest.startswith("{"):
        i = 1
        while rest[i] != "}":
            label = LABEL_NAME.match(rest, i)
            assert label, where
            assert rest[label.end() : label.end() + 2] == '="', where
            i = label.end() + 2
            chars = []
            while rest[i] != '"':
                if rest[i] == "\\":
                    escaped = rest[i + 1]
                    assert escaped in '\\"n', f"{where}: bad escape \\{escaped}"
                    chars.append("\n" if escaped == "n" else escaped)
                    i += 2
                else:
                    assert rest[i] != "\n", where
                    chars.append(rest[i])
                    i += 1
            i += 1
            assert label[0] not in labels, f"{where}: label {label[0]} twice"
            labels[label[0]] = "".join(chars)
            if rest[i] == ",":
                i += 1
                assert rest[i] != "}", f"{where}: trailing comma"
            else:
                assert rest[i] == "}", where
        rest = rest[i + 1 :]
    assert rest.startswith(" "), where
    fields = rest[1:].split(" ")
    assert len(fields) in (1, 2), where  # value [timestamp]
    assert VALUE.fullmatch(fields[0]), where
    value = fields[0]
    number = math.nan if value == "NaN" else float(value.replace("Inf", "inf"))
    return name, labels, number


def _unescape_help(text: str, where: str) -> str:
    def one(match: re.Match[str]) -> str:
        assert match[1] in "\\n", f"{where}: bad escape in HELP"
        return "\n" if match[1] == "n" else "\\"

    return re.sub(r"\\(.)", one, text)


def _check_histogram(family: MetricFamily) -> None:
    groups: dict[Labels, list[tuple[float, float]]] = {}
    for name, labels, value in family.samples:
        if name == family.name + "_bucket":
            assert "le" in labels, f"{family.name}: bucket without le"
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            groups.setdefault(rest, []).append((_le(labels["le"]), value))
        else:
            assert "le" not in labels, f"{family.name}: le outside a bucket"
    sums, counts = family.values("_sum"), family.values("_count")
    assert set(groups) == set(sums) == set(counts), f"{family.name}: incomplete histogram"
    for labels, buckets in groups.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(set(bounds)), family.name
        assert bounds[-1] == math.inf, f"{family.name}{labels}: no +Inf bucket"
        values = [v for _, v in buckets]
        assert values == sorted(values), f"{family.name}{labels}: buckets not cumulative"
        assert values[-1] == counts[labels], f"{family.name}{labels}: +Inf != _count"
