"""Pure rules of ingest's subscriptions (sharing among instances), the client-id watch, and
the ALPN choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from officesensor.config import MqttUrl, load_settings
from officesensor.errors import ConfigError
from officesensor.mqtt import AWS_IOT_ALPN, alpn_protocols, tls_context
from officesensor.sensor.service_unit import render_config
from officesensor.subscriptions import (
    LIVE_ID,
    STORE_ID,
    ClientIdWatch,
    Subscription,
    ingest_subscriptions,
    is_stored,
)


def test_without_a_share_group_ingest_subscribes_as_before() -> None:
    assert ingest_subscriptions("office/metrics/+", "office/status/+", "", identifiers=True) == [
        [Subscription("office/metrics/+", 1), Subscription("office/status/+", 1)]
    ]


def test_sharing_with_identifiers_stores_by_the_share_and_shows_by_the_plain_topic() -> None:
    packets = ingest_subscriptions("office/metrics/+", "office/status/+", "g", identifiers=True)
    assert packets == [
        [Subscription("$share/g/office/metrics/+", 1, STORE_ID)],
        [Subscription("office/metrics/+", 0, LIVE_ID), Subscription("office/status/+", 1, LIVE_ID)],
    ]
    for packet in packets:  # MQTT 5: one subscription identifier per SUBSCRIBE packet
        assert len({s.identifier for s in packet}) == 1
    assert max(s.qos for packet in packets for s in packet) <= 1  # AWS IoT Core: QoS 0/1


def test_sharing_without_identifiers_keeps_only_the_shared_subscription() -> None:
    assert ingest_subscriptions("office/#", "office/status/+", "g", identifiers=False) == [
        [Subscription("$share/g/office/#", 1), Subscription("office/status/+", 1)]
    ]


@pytest.mark.parametrize(
    ("identifiers", "stored"),
    [([STORE_ID], True), ([LIVE_ID], False), ([LIVE_ID, STORE_ID], True), ([], True)],
)
def test_only_a_delivery_by_the_live_subscription_alone_is_not_stored(
    identifiers: list[int], stored: bool
) -> None:
    assert is_stored(identifiers) is stored


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_session_taken_over_is_reported_at_once() -> None:
    watch = ClientIdWatch("ingest-1", clock=FakeClock())
    watch.connected()
    problem = watch.disconnected(taken_over=True, lost=True)
    assert problem is not None
    assert "'ingest-1'" in problem
    assert "mqtt.client_id" in problem


def test_three_quick_drops_in_a_row_are_reported_and_slow_ones_are_not() -> None:
    clock = FakeClock()
    watch = ClientIdWatch("ingest-1", clock=clock)
    results = []
    for gap_s in (1.0, 1.0, 60.0, 1.0, 1.0, 1.0):
        watch.connected()
        clock.now += gap_s
        results.append(watch.disconnected(taken_over=False, lost=True))
        clock.now += 1.0
    assert [r is not None for r in results] == [False, False, False, False, False, True]
    watch.connected()  # an orderly disconnect is never counted
    assert watch.disconnected(taken_over=False, lost=False) is None


@pytest.mark.parametrize(
    ("url", "alpn", "expected"),
    [
        (MqttUrl("a.iot.example", 443, tls=True), "auto", [AWS_IOT_ALPN]),
        (MqttUrl("a.iot.example", 8883, tls=True), "auto", []),
        (MqttUrl("a.iot.example", 443, tls=True), "none", []),
        (MqttUrl("a.iot.example", 8883, tls=True), "mqtt", ["mqtt"]),
        (MqttUrl("broker", 443, tls=False), "x-amzn-mqtt-ca", []),  # no TLS, no ALPN
    ],
)
def test_alpn_follows_the_setting(url: MqttUrl, alpn: str, expected: list[str]) -> None:
    assert alpn_protocols(alpn, url) == expected


def test_tls_always_verifies_and_an_unusable_file_names_its_setting(tmp_path: Path) -> None:
    settings = load_settings(environ={"OFFICESENSOR_MQTT_URL": "mqtts://broker:8883"})
    context = tls_context(settings)
    assert context.check_hostname is True
    assert context.verify_mode.name == "CERT_REQUIRED"
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="OFFICESENSOR_MQTT_CA_FILE"):
        tls_context(settings.replace(mqtt_ca_file=bad))


def test_the_sensor_service_keeps_the_alpn_setting(tmp_path: Path) -> None:
    settings = load_settings(
        environ={"OFFICESENSOR_MQTT_URL": "mqtts://broker:443", "OFFICESENSOR_MQTT_ALPN": "none"}
    )
    config = tmp_path / "sensor.toml"
    config.write_text(render_config(settings, tmp_path / "outbox.db"))
    assert load_settings(config, environ={}).mqtt_alpn == "none"
