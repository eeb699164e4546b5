"""A real alert state file with history, written as the alert service writes it (the engine's
transitions, committed by AlertState), for the web tests of /alerts and /api/alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from officesensor.alerts.delivery import outgoing
from officesensor.alerts.engine import Engine, Transition
from officesensor.alerts.rules import AlertRule, parse_rules
from officesensor.alerts.state import AlertState
from officesensor.config import Settings

RULES = parse_rules(
    [
        {"name": "too-warm", "kind": "threshold", "metric": "temperature", "above": 80.0,
         "hysteresis": 1.0, "cooldown": "0s"},
        {"name": "odd", "kind": "anomaly", "severity": "critical", "cooldown": "0s"},
    ]
)  # fmt: skip
#: (sensor, metric, value, flagged by the detector)
Step = tuple[str, str, float, bool]


def write_history(
    path: Path,
    settings: Settings,
    steps: Sequence[Step],
    rules: Sequence[AlertRule] = RULES,
    start: datetime | None = None,
) -> list[Transition]:
    """Run ``steps`` (15 s apart) through the engine into the state file at ``path``."""
    engine = Engine(rules)
    state = AlertState(path)
    now = start or datetime.now(UTC) - timedelta(hours=1)
    found: list[Transition] = []
    try:
        for sensor, metric, value, anomaly in steps:
            now += timedelta(seconds=15)
            made = engine.observe(sensor, metric, value, now, anomaly, now)
            owed = [(t, outgoing(t, settings) if t.notify else []) for t in made]
            state.record(owed, engine.take_dirty(), now)
            found += made
    finally:
        state.close()
    return found
