"""Two instances started with the same client id: the broker lets one connection hold the
session, so each keeps kicking the other out. Both must say so, naming the setting."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from officesensor.config import load_settings
from officesensor.ingest import Ingest
from officesensor.store.sqlite import SqliteStore
from tests.integration.conftest import Broker, start_mosquitto, stop_process, wait_for

pytestmark = pytest.mark.integration

EXPECTED = "every instance needs its own mqtt.client_id (OFFICESENSOR_MQTT_CLIENT_ID)"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path / "mosquitto")
    yield broker
    stop_process(broker.proc)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_client_id_used_twice_is_reported(
    mosquitto: Broker, tmp_path: Path, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        environ={
            "OFFICESENSOR_MQTT_URL": mosquitto.url,
            "OFFICESENSOR_MQTT_PROTOCOL": protocol,
            "OFFICESENSOR_MQTT_CLIENT_ID": "officesensor-twin",
            "OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'office.db'}",
        }
    )
    stores = [SqliteStore(tmp_path / "office.db"), SqliteStore(tmp_path / "office.db")]
    first, second = (Ingest(settings, store) for store in stores)
    try:
        first.start()
        wait_for(lambda: first.snapshot().connected, 10, "the first instance to subscribe")
        second.start()

        def reported() -> bool:
            errors = [s.last_error or "" for s in (first.snapshot(), second.snapshot())]
            return any(EXPECTED in error for error in errors)

        # MQTT 5 says "Session taken over" at once; on 3.1.1 it takes three quick drops.
        wait_for(reported, 20, "an instance to report the shared client id")
        assert any(
            EXPECTED in r.getMessage() and "'officesensor-twin'" in r.getMessage()
            for r in caplog.records
            if r.levelname == "ERROR"
        )
    finally:
        second.stop()
        first.stop()
        for store in stores:
            store.close()
