"""Alert rules as the ``[[alerts.rules]]`` tables of the TOML config say them (pure parsing).

    [[alerts.rules]]
    name = "too-warm"        # unique; letters, digits, '_', '.', '-'
    kind = "threshold"       # threshold | anomaly | stale
    sensor = "*"             # glob on the sensor name (default: every sensor)
    metric = "temperature"   # glob on the metric name (default: every metric)
    above = 80.0             # threshold: fire above and/or below a value, in the wire unit
    hysteresis = 1.0         # threshold: resolve only once back by this much
    for = "5m"               # the condition must hold this long before the alert fires
    cooldown = "15m"         # after resolving, the same alert stays quiet this long
    clear_after = 3          # anomaly: normal readings in a row that resolve it
    intervals = 5            # stale: missing readings (of the learned cadence) that fire it
    severity = "warning"     # warning | critical

Every error names the rule and the key, so ``alerts.rules: rule 'too-warm': above ...``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from fnmatch import fnmatchcase
from typing import Any

KINDS = ("threshold", "anomaly", "stale")
SEVERITIES = ("warning", "critical")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_GLOB = re.compile(r"[A-Za-z0-9_.*?\[\]!-]{1,64}")
_KEYS = {
    "name",
    "kind",
    "sensor",
    "metric",
    "above",
    "below",
    "hysteresis",
    "for",
    "cooldown",
    "clear_after",
    "intervals",
    "severity",
}
_KIND_KEYS = {
    "threshold": {"above", "below", "hysteresis"},
    "anomaly": {"clear_after"},
    "stale": {"intervals"},
}


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    kind: str
    sensor: str = "*"
    metric: str = "*"
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    for_: timedelta = timedelta(0)
    cooldown: timedelta = timedelta(minutes=15)
    clear_after: int = 1
    intervals: int = 5
    severity: str = "warning"

    def matches(self, sensor: str, metric: str) -> bool:
        """Whether this rule watches the series. Globs match case-insensitively, as the
        dashboard's metric pages do ("temperature" is the Temperature metric)."""
        return fnmatchcase(sensor.casefold(), self.sensor.casefold()) and fnmatchcase(
            metric.casefold(), self.metric.casefold()
        )


def parse_rules(raw: Any) -> tuple[AlertRule, ...]:
    """The rules from a list of tables; ValueError names the rule and key that are wrong."""
    if raw == "":
        return ()
    if not isinstance(raw, list):
        raise ValueError("must be a list of rule tables ([[alerts.rules]])")
    rules: list[AlertRule] = []
    for index, table in enumerate(raw):
        if not isinstance(table, dict):
            raise ValueError(f"rule {index + 1} must be a table")
        label = (
            f"rule {table['name']!r}"
            if isinstance(table.get("name"), str)
            else (f"rule {index + 1}")
        )
        try:
            rules.append(_rule(table))
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
    names = [rule.name for rule in rules]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"rule {name!r}: two rules have this name")
    return tuple(rules)


def _rule(table: dict[str, Any]) -> AlertRule:
    unknown = set(table) - _KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}")
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError("name must be 1 to 64 letters, digits, '_', '.' or '-'")
    kind = table.get("kind")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    foreign = (set(table) & set().union(*_KIND_KEYS.values())) - _KIND_KEYS[kind]
    if foreign:
        raise ValueError(f"{sorted(foreign)[0]!r} does not apply to a {kind} rule")
    rule = AlertRule(
        name=name,
        kind=kind,
        sensor=_glob(table, "sensor"),
        metric=_glob(table, "metric"),
        above=_number(table, "above"),
        below=_number(table, "below"),
        hysteresis=_number(table, "hysteresis", minimum=0.0) or 0.0,
        for_=_duration(table, "for", timedelta(0)),
        cooldown=_duration(table, "cooldown", timedelta(minutes=15)),
        clear_after=_count(table, "clear_after", 1),
        intervals=_count(table, "intervals", 5, minimum=2),
        severity=_choice(table, "severity", SEVERITIES),
    )
    if kind == "threshold":
        if rule.above is None and rule.below is None:
            raise ValueError("a threshold rule needs above, below or both")
        if rule.above is not None and rule.below is not None:
            if rule.below >= rule.above:
                raise ValueError("below must be less than above")
            if rule.hysteresis >= rule.above - rule.below:
                raise ValueError("hysteresis must be less than the gap between below and above")
    return rule


def _glob(table: dict[str, Any], key: str) -> str:
    value = table.get(key, "*")
    if not isinstance(value, str) or not _GLOB.fullmatch(value):
        raise ValueError(f"{key} must be a name or a glob such as 'office-*'")
    return value


def _number(table: dict[str, Any], key: str, minimum: float | None = None) -> float | None:
    if key not in table:
        return None
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} must be a number")
    if minimum is not None and value < minimum:
        raise ValueError(f"{key} must be at least {minimum:g}")
    return float(value)


def _duration(table: dict[str, Any], key: str, default: timedelta) -> timedelta:
    from officesensor.config import parse_duration

    if key not in table:
        return default
    value = table[key]
    if value in ("0", "0s", 0):
        return timedelta(0)
    if not isinstance(value, str):
        raise ValueError(f'{key} must be a duration such as "5m"')
    return parse_duration(value.strip())


def _count(table: dict[str, Any], key: str, default: int, minimum: int = 1) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 10_000:
        raise ValueError(f"{key} must be a whole number from {minimum} to 10000")
    return value


def _choice(table: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}")
    return str(value)
