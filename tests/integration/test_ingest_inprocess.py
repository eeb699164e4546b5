"""Ingest in-process against a real Mosquitto: what cannot be seen from outside the process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from officesensor.config import load_settings
from officesensor.errors import StoreError
from officesensor.ingest import Ingest
from officesensor.store.sqlite import SqliteStore
from tests.integration.conftest import Broker, Publisher, start_mosquitto, stop_process, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path / "mosquitto")
    yield broker
    stop_process(broker.proc)


@pytest.fixture
def ingest(mosquitto: Broker, tmp_path: Path) -> Iterator[Ingest]:
    settings = load_settings(
        environ={
            "OFFICESENSOR_MQTT_URL": mosquitto.url,
            "OFFICESENSOR_MQTT_CLIENT_ID": "inprocess-ingest",
            "OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'office.db'}",
        }
    )
    store = SqliteStore(tmp_path / "office.db")
    running = Ingest(settings, store)
    running.start()
    wait_for(lambda: running.snapshot().connected, 10, "ingest to subscribe")
    yield running
    running.stop()
    store.close()


def message(reading_id: int) -> bytes:
    return json.dumps(
        {"Temperature": 70.5, "ID": reading_id, "Timestamp": f"2026-01-05T09:00:{reading_id:02d}Z"}
    ).encode()


# The injected fault is exactly an exception nobody handles in paho's thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_network_thread_turns_health_red_and_is_restarted(
    ingest: Ingest, mosquitto: Broker
) -> None:
    publisher = Publisher(mosquitto)
    try:
        publisher.publish("office/metrics/Temperature", message(1))
        wait_for(lambda: ingest.snapshot().stored == 1, 10, "the first reading")

        # Something escapes every guard (here a SystemExit from a callback): paho's network
        # thread ends and, by itself, would never receive anything again.
        client: Any = ingest._client
        original = client.on_message

        def fatal(*_args: Any) -> None:
            client.on_message = original
            raise SystemExit("simulated fatal error in the network thread")

        client.on_message = fatal
        publisher.publish("office/metrics/Temperature", message(2))
        wait_for(lambda: not ingest.snapshot().connected, 5, "health to turn red")
        wait_for(lambda: ingest.snapshot().connected, 15, "the watchdog to restart paho")
        publisher.publish("office/metrics/Temperature", message(3))
        # Message 2 was never acknowledged: the broker redelivers it to the new connection.
        wait_for(lambda: ingest.snapshot().stored == 3, 15, "readings 2 and 3")
        assert "network thread ended" in (ingest.snapshot().last_error or "")
    finally:
        publisher.close()


def test_a_failed_commit_is_retried_and_nothing_counted_stored_until_it_succeeds(
    ingest: Ingest, mosquitto: Broker
) -> None:
    publisher = Publisher(mosquitto)
    store: Any = ingest._store
    real_write = store.write_many
    calls: list[int] = []

    def failing_write(readings: Any) -> Any:
        calls.append(len(readings))
        raise StoreError("disk gone")

    store.write_many = failing_write
    try:
        publisher.publish("office/metrics/Temperature", message(5))
        wait_for(lambda: calls, 10, "a write attempt")
        wait_for(lambda: not ingest.snapshot().store_ok, 5, "store_ok to turn false")
        assert ingest.snapshot().stored == 0
        assert ingest.snapshot().backlog == 1
        store.write_many = real_write  # the store is back: the retry commits, then acks
        wait_for(lambda: ingest.snapshot().stored == 1, 15, "the retried write")
        wait_for(lambda: ingest.snapshot().backlog == 0, 5, "the backlog to clear")
        assert ingest.snapshot().store_ok
    finally:
        store.write_many = real_write
        publisher.close()


def test_a_failure_after_the_commit_still_acknowledges_the_batch(
    ingest: Ingest, mosquitto: Broker
) -> None:
    """Live statistics failing must not strand committed messages unacknowledged (they would
    hold the broker's in-flight slots until it stops delivering)."""
    live: Any = ingest._live
    real_update = live.update

    def broken_update(readings: Any) -> Any:
        live.update = real_update
        raise RuntimeError("simulated bug in live analytics")

    live.update = broken_update
    publisher = Publisher(mosquitto)
    try:
        publisher.publish("office/metrics/Temperature", message(7))
        wait_for(lambda: ingest.snapshot().stored == 1, 10, "the reading")
        wait_for(lambda: ingest.snapshot().backlog == 0, 5, "the ack")
        assert ingest.snapshot().reconnects == 0  # no redelivery was needed
    finally:
        live.update = real_update
        publisher.close()


def test_an_unexpected_error_before_the_commit_gets_the_batch_redelivered(
    ingest: Ingest, mosquitto: Broker
) -> None:
    gate: Any = ingest._gate
    real_admit = gate.admit

    def broken_admit(*args: Any) -> Any:
        gate.admit = real_admit
        raise RuntimeError("simulated bug before the commit")

    gate.admit = broken_admit
    publisher = Publisher(mosquitto)
    try:
        publisher.publish("office/metrics/Temperature", message(8))
        # Ingest reconnects so the broker redelivers what it had not acknowledged.
        wait_for(lambda: ingest.snapshot().stored == 1, 20, "the redelivered reading")
        assert ingest.snapshot().reconnects >= 1
        wait_for(lambda: ingest.snapshot().connected, 10, "ingest to be healthy again")
    finally:
        gate.admit = real_admit
        publisher.close()
