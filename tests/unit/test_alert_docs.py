"""docs/alerts.md stays true: its configuration example loads, its rule table lists every
key the parser takes, and its example message has the fields alerts carry."""

from __future__ import annotations

import json
import re
from pathlib import Path

from officesensor.alerts import rules as rules_module
from officesensor.alerts.delivery import notification
from officesensor.alerts.service import AlertService
from officesensor.config import load_settings
from tests.unit.test_alert_formats import transition

DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_configuration_example_loads(tmp_path: Path):
    (example,) = blocks("toml")
    path = tmp_path / "officesensor.toml"
    path.write_text(example, encoding="utf-8")
    settings = load_settings(path, environ={})
    assert [r.name for r in settings.alerts_rules] == [
        "too-warm", "too-dry", "odd-readings", "sensor-silent"
    ]  # fmt: skip
    warm = settings.alerts_rules[0]
    assert (warm.above, warm.hysteresis, warm.for_.total_seconds()) == (80.0, 1.5, 300.0)
    assert settings.alerts_webhook_format == "slack"


def table(header: str) -> set[str]:
    """The backquoted names in the first column of the table that starts with ``header``."""
    text = DOC.read_text(encoding="utf-8").split(header, 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \|", text, re.M)
    return {name for row in rows for name in row if name}


def test_the_rule_table_lists_every_key():
    assert table("| Key | Kinds |") == rules_module._KEYS


def test_the_metrics_table_lists_every_family(tmp_path: Path):
    settings = load_settings(environ={}).replace(alerts_state=tmp_path / "none.db")
    lines = AlertService(settings, None).metrics_lines()  # type: ignore[arg-type]
    families = {line.split()[2] for line in lines if line.startswith("# TYPE ")}
    assert table("| Metric | Type |") == families


def test_the_example_messages_have_the_real_fields():
    mqtt, slack = (json.loads(b) for b in blocks("json"))
    assert set(mqtt) == set(notification(transition()))
    assert set(slack) == {"text", "blocks"}
