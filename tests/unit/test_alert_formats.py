"""Alert notification formats and the retry policy (alerts/delivery.py), pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from officesensor.alerts.delivery import (
    RetryPolicy,
    notification,
    outgoing,
    redact,
    slack_body,
    slack_escape,
    summary,
)
from officesensor.alerts.engine import Transition
from officesensor.config import load_settings

T0 = datetime(2026, 3, 1, 9, 0, 15, 250_000, tzinfo=UTC)


def transition(**changes: object) -> Transition:
    fields: dict[str, object] = {
        "rule": "too-warm", "kind": "threshold", "severity": "critical", "sensor": "lab",
        "metric": "Temperature", "state": "firing", "id": "0123456789abcdef", "value": 81.5,
        "threshold": 80.0, "since": T0, "at": T0 + timedelta(minutes=5), "notify": True,
        "suppressed": False,
    }  # fmt: skip
    fields.update(changes)
    return Transition(**fields)  # type: ignore[arg-type]


def test_the_notification_has_exactly_the_documented_fields():
    assert notification(transition()) == {
        "id": "0123456789abcdef",
        "rule": "too-warm",
        "kind": "threshold",
        "state": "firing",
        "severity": "critical",
        "sensor": "lab",
        "metric": "Temperature",
        "value": 81.5,
        "threshold": 80.0,
        "since": "2026-03-01T09:00:15.250Z",
        "at": "2026-03-01T09:05:15.250Z",
    }


def test_outgoing_is_mqtt_only_without_a_webhook():
    settings = load_settings(environ={})
    (message,) = outgoing(transition(), settings)
    assert (message.channel, message.topic) == ("mqtt", "office/alerts/lab/Temperature")
    assert json.loads(message.payload) == notification(transition())


@pytest.mark.parametrize("fmt", ["json", "slack"])
def test_outgoing_with_a_webhook(fmt: str):
    settings = load_settings(environ={}).replace(
        alerts_webhook_url="https://hooks.example.com/x", alerts_webhook_format=fmt,
        alerts_topic_prefix="site/alerts",
    )  # fmt: skip
    mqtt, webhook = outgoing(transition(), settings)
    assert mqtt.topic == "site/alerts/lab/Temperature"
    body = json.loads(webhook.payload)
    if fmt == "json":
        assert webhook.payload == mqtt.payload
    else:
        assert set(body) == {"text", "blocks"}
        assert body["text"].startswith(":rotating_light: FIRING [critical] too-warm")


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("a<b>c", "a&lt;b&gt;c"),
        ("<!channel>", "&lt;!channel&gt;"),
        ("<https://evil.example|click>", "&lt;https://evil.example|click&gt;"),
        ("&amp;", "&amp;amp;"),
        ("plain", "plain"),
    ],
)
def test_slack_escaping(text: str, escaped: str):
    assert slack_escape(text) == escaped


def test_slack_bodies_escape_names_but_not_their_own_markup():
    body = slack_body(notification(transition(sensor="<@U123>", state="resolved", value=77.0)))
    block = body["blocks"][0]["text"]["text"]
    assert body["text"].startswith(":white_check_mark: RESOLVED")
    assert "&lt;@U123&gt;" in body["text"]
    assert "<@U123>" not in block
    assert block.startswith(":white_check_mark: *RESOLVED")
    assert "since 2026-03-01 09:00:15.250Z" in block


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({}, "Temperature of lab: 81.5, beyond 80"),
        ({"state": "resolved", "value": 77.0}, "back to 77 (threshold 80)"),
        ({"kind": "anomaly", "threshold": None}, "anomalous reading 81.5"),
        ({"kind": "anomaly", "state": "resolved"}, "readings are normal again"),
        ({"kind": "stale", "value": 61.2, "threshold": 60.0}, "no reading for 61 s (allowed 60 s)"),
        ({"kind": "stale", "state": "resolved", "value": 300.0}, "readings are back after 300 s"),
        ({"kind": "stale", "value": None, "threshold": None}, "no reading for a while"),
    ],
)
def test_summaries(changes: dict[str, object], text: str):
    assert summary(notification(transition(**changes))).endswith(text)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/…"),
        ("http://user:pw@example.com:8080/hook?key=1", "http://example.com:8080/…"),
    ],
)
def test_webhook_urls_are_redacted_in_logs(url: str, shown: str):
    assert redact(url) == shown


def test_the_retry_policy_backs_off_exponentially_and_gives_up():
    policy = RetryPolicy()
    assert [policy.delay_s(n) for n in range(1, 13)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600
    ]  # fmt: skip
    assert policy.delay_s(10_000) == 600
    created = datetime(2026, 1, 1, tzinfo=UTC)
    assert not policy.exhausted(14, created, created + timedelta(hours=1))
    assert policy.exhausted(15, created, created + timedelta(hours=1))
    assert policy.exhausted(1, created, created + timedelta(days=1))
    total_s = sum(policy.delay_s(n) for n in range(1, policy.max_attempts))
    assert 3000 < total_s < 4000  # about an hour of trying
