"""Alert delivery in-process against real endpoints: a webhook HTTP server in a thread, a
private Mosquitto, and the outbox in a real SQLite state file. The retry policy is made
short here so that exhausting it takes a second, not an hour."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from officesensor.alerts.delivery import (
    Deliverer,
    MqttChannel,
    RetryPolicy,
    WebhookChannel,
    outgoing,
)
from officesensor.alerts.engine import Transition
from officesensor.alerts.rules import parse_rules
from officesensor.alerts.service import AlertService
from officesensor.alerts.state import AlertState
from officesensor.analytics import WindowStats
from officesensor.config import MqttUrl, Settings, load_settings
from officesensor.live import Analysed
from officesensor.models import Reading
from officesensor.store.sqlite import SqliteStore
from tests.integration.alert_helpers import AlertWatcher, Webhook
from tests.integration.conftest import Broker, free_port, start_mosquitto, stop_process, wait_for
from tests.prometheus import parse

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
FAST = RetryPolicy(first_delay_s=0.05, max_delay_s=0.2, max_attempts=3)


def transition(state: str = "firing", sensor: str = "lab", value: float = 81.5) -> Transition:
    return Transition(
        rule="too-warm", kind="threshold", severity="warning", sensor=sensor,
        metric="Temperature", state=state, id="0123456789abcdef", value=value, threshold=80.0,
        since=T0, at=T0, notify=True, suppressed=False,
    )  # fmt: skip


@pytest.fixture
def state(tmp_path: Path) -> Iterator[AlertState]:
    opened = AlertState(tmp_path / "alerts.db")
    yield opened
    opened.close()


@pytest.fixture
def hook() -> Iterator[Webhook]:
    server = Webhook()
    yield server
    server.close()


def settings_for(hook: Webhook, fmt: str = "json", **changes: object) -> Settings:
    return load_settings(environ={}).replace(
        alerts_webhook_url=hook.url, alerts_webhook_format=fmt, **changes
    )


def owe(state: AlertState, settings: Settings, *transitions: Transition) -> None:
    now = datetime.now(UTC)
    state.record([(t, outgoing(t, settings)) for t in transitions], {}, now)


def run(state: AlertState, hook: Webhook, policy: RetryPolicy = FAST, **kwargs: float):
    deliverer = Deliverer(state, {"webhook": WebhookChannel(hook.url, **kwargs)}, policy)
    deliverer.start()
    return deliverer


def test_a_webhook_that_always_fails_ends_in_one_dead_letter(state: AlertState, hook: Webhook):
    hook.always_fail, hook.failure = True, 500
    owe(state, settings_for(hook), transition())
    deliverer = run(state, hook)
    try:
        wait_for(lambda: state.counts().dead_letters["webhook"] == 1, 10, "a dead letter")
    finally:
        deliverer.stop()
    counts = state.counts()
    assert hook.count() == FAST.max_attempts
    assert counts.retries["webhook"] == FAST.max_attempts - 1
    assert counts.pending == {"mqtt": 1, "webhook": 0}  # MQTT has no channel in this test
    assert "HTTP 500" in (deliverer.last_error or "")


def test_a_message_too_old_is_not_tried_again(state: AlertState, hook: Webhook):
    hook.always_fail = True
    owe(state, settings_for(hook), transition())
    young = RetryPolicy(first_delay_s=0.05, max_attempts=100, max_age=timedelta(seconds=0.3))
    deliverer = run(state, hook, young)
    try:
        wait_for(lambda: state.counts().dead_letters["webhook"] == 1, 10, "a dead letter")
    finally:
        deliverer.stop()
    assert 2 <= hook.count() < 100


def test_the_outbox_keeps_order_per_channel_through_retries(state: AlertState, hook: Webhook):
    hook.fail_first = 2
    settings = settings_for(hook)
    owe(state, settings, transition("firing"), transition("resolved", value=77.0))
    deliverer = run(state, hook)
    try:
        wait_for(lambda: len(hook.delivered()) == 2, 10, "both deliveries")
    finally:
        deliverer.stop()
    assert [d["state"] for d in hook.delivered()] == ["firing", "resolved"]
    assert [a.json()["state"] for a in hook.attempts] == ["firing"] * 3 + ["resolved"]
    assert state.counts().delivered["webhook"] == 2


def test_a_slow_webhook_times_out_and_is_retried(state: AlertState, hook: Webhook):
    hook.delay_s = 1.0
    owe(state, settings_for(hook), transition())
    deliverer = run(state, hook, timeout_s=0.2)
    try:
        wait_for(lambda: state.counts().retries["webhook"] >= 1, 10, "a timed-out attempt")
        assert "timed out" in (deliverer.last_error or "")
        hook.delay_s = 0.0
        wait_for(lambda: state.counts().delivered["webhook"] == 1, 10, "the delivery")
    finally:
        deliverer.stop()


def test_slack_messages_escape_device_strings(state: AlertState, hook: Webhook):
    owe(state, settings_for(hook, "slack"), transition(sensor="<!channel>&co"))
    deliverer = run(state, hook)
    try:
        wait_for(lambda: len(hook.delivered()) == 1, 10, "the delivery")
    finally:
        deliverer.stop()
    (body,) = hook.delivered()
    assert set(body) == {"text", "blocks"}
    assert "&lt;!channel&gt;&amp;co" in body["text"]
    assert "<!channel>" not in json.dumps(body)
    assert body["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "FIRING [warning] too-warm: Temperature of" in body["blocks"][0]["text"]["text"]


def test_a_redirecting_webhook_is_refused_for_good(state: AlertState):
    hook = Webhook(failure=302, always_fail=True)
    try:
        owe(state, settings_for(hook), transition())
        deliverer = run(state, hook)
        try:
            wait_for(lambda: state.counts().dead_letters["webhook"] == 1, 10, "a dead letter")
        finally:
            deliverer.stop()
        assert hook.count() == 1
    finally:
        hook.close()


def test_an_unreachable_webhook_is_retried(state: AlertState):
    url = f"http://127.0.0.1:{free_port()}/hook"
    owe(state, load_settings(environ={}).replace(alerts_webhook_url=url), transition())
    deliverer = Deliverer(state, {"webhook": WebhookChannel(url)}, FAST)
    deliverer.start()
    try:
        wait_for(lambda: state.counts().dead_letters["webhook"] == 1, 10, "a dead letter")
    finally:
        deliverer.stop()
    assert state.counts().retries["webhook"] == FAST.max_attempts - 1
    assert "refused" in (deliverer.last_error or "").lower()


# ----------------------------------------------------------------------------- MQTT


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path / "mosquitto")
    yield broker
    stop_process(broker.proc)


def test_mqtt_alerts_go_out_qos1_not_retained(state: AlertState, mosquitto: Broker):
    settings = load_settings(environ={}).replace(
        mqtt_url=MqttUrl("127.0.0.1", mosquitto.port, tls=False),
        mqtt_client_id="alerts-test",
        alerts_topic_prefix="site/alerts",
    )
    watcher = AlertWatcher(mosquitto, prefix="site/alerts")
    channel = MqttChannel(settings)
    channel.start()
    owe(state, settings, transition(), transition("resolved", value=70.0))
    deliverer = Deliverer(state, {"mqtt": channel}, FAST)
    deliverer.start()
    try:
        messages = watcher.wait(2, "site/alerts/lab/Temperature")
    finally:
        deliverer.stop()
        channel.close()
        watcher.close()
    assert [(m.body["state"], m.qos, m.retain) for m in messages] == [
        ("firing", 1, False), ("resolved", 1, False)
    ]  # fmt: skip
    assert state.counts().delivered["mqtt"] == 2


def test_mqtt_alerts_wait_for_the_broker(state: AlertState, tmp_path: Path):
    port = free_port()
    settings = load_settings(environ={}).replace(
        mqtt_url=MqttUrl("127.0.0.1", port, tls=False), mqtt_client_id="alerts-test"
    )
    channel = MqttChannel(settings)
    channel.start()
    owe(state, settings, transition())
    patient = RetryPolicy(first_delay_s=0.2, max_delay_s=0.5, max_attempts=1000)
    deliverer = Deliverer(state, {"mqtt": channel}, patient)
    deliverer.start()
    broker: Broker | None = None
    try:
        wait_for(lambda: state.counts().retries["mqtt"] >= 2, 10, "failed attempts")
        assert "not connected" in (deliverer.last_error or "")
        broker = start_mosquitto(tmp_path / "late", port=port)
        wait_for(lambda: state.counts().delivered["mqtt"] == 1, 40, "delivery once it is up")
    finally:
        deliverer.stop()
        channel.close()
        if broker is not None:
            stop_process(broker.proc)
    assert state.counts().pending["mqtt"] == 0


# ----------------------------------------------------------------------------- the service


def test_the_service_exposes_its_counters_for_prometheus(tmp_path: Path, hook: Webhook):
    rules = parse_rules([{"name": "warm", "kind": "threshold", "above": 80}])
    settings = settings_for(hook).replace(alerts_rules=rules, alerts_state=tmp_path / "a.db")
    store = SqliteStore(tmp_path / "readings.db")
    service = AlertService(
        settings, store, policy=FAST, channels={"webhook": WebhookChannel(hook.url)}
    )
    reading = Reading("lab", "Temperature", 1, datetime.now(UTC), 90.0)
    try:
        service.start()
        service.on_analysed([Analysed(reading, WindowStats(1, 90.0, None, None, None, False))])
        wait_for(lambda: len(hook.delivered()) == 1, 10, "the webhook delivery")
        families = parse("\n".join(service.metrics_lines()) + "\n")
    finally:
        service.stop()
        store.close()
    assert families["officesensor_alerts_firing"].value(severity="warning") == 1
    delivered = families["officesensor_alert_notifications_delivered_total"]
    assert delivered.value(channel="webhook") == 1
    assert families["officesensor_alert_outbox_pending"].value(channel="mqtt") == 1
    assert families["officesensor_alert_dead_letters_total"].value(channel="webhook") == 0
    assert families["officesensor_alert_batches_dropped_total"].value() == 0
