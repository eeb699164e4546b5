"""Several instances on one broker and one store (``mqtt.share_group``).

- Two ``officesensor serve`` processes, distinct client ids, one share group, one store; a
  numbered QoS 1 stream; one instance is killed with SIGKILL mid-stream and later replaced
  (same client id: Mosquitto keeps the dead member's share of the messages in its session).
  Every reading ends up stored exactly once, and both dashboards' live streams showed
  readings while they ran, including those the other instance stored.
- In process: one instance receives each message twice (shared and plain subscription) and
  counts it once; a read-only store gets nothing written while live updates go on.

The store is SQLite (one WAL file, two processes) and DynamoDB (moto's server).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from officesensor.config import load_settings
from officesensor.ingest import Ingest
from officesensor.live import Analysed
from officesensor.models import WriteResult
from officesensor.store import Store, open_store
from officesensor.store.sqlite import SqliteStore
from tests.integration.conftest import (
    Broker,
    Publisher,
    Server,
    start_mosquitto,
    start_serve,
    stop_process,
    wait_for,
)
from tests.integration.test_faults import BASE, Stream
from tests.integration.test_live_stream import EventStream
from tests.moto_server import REGION, MotoServer, fake_aws_env, start_moto

pytestmark = pytest.mark.integration

# Every instance's away-time share must stay queued at the broker (default: 1,000).
QUEUE_CONF = "max_queued_messages 1000000\n"
#: Readings in the stream and their rate, per store: a 10 s stream (moto's DynamoDB is slow).
STREAMS = {"sqlite": (3000, 300.0), "dynamodb": (600, 60.0)}
SENSOR = "fault"  # what test_faults' Stream sends
GROUP = "office"


@dataclass
class SharedStore:
    kind: str
    url: str
    env: dict[str, str]  # what a serve process needs to reach it

    def open(self) -> Store:
        return open_store(self.url)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    broker = start_mosquitto(tmp_path / "mosquitto", extra_conf=QUEUE_CONF)
    yield broker
    stop_process(broker.proc)


def create_original_table(moto: MotoServer, table: str) -> None:
    """The original sample's table: Metric (S) / ID (N), on demand."""
    client = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=moto.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    client.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "Metric", "KeyType": "HASH"},
            {"AttributeName": "ID", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "Metric", "AttributeType": "S"},
            {"AttributeName": "ID", "AttributeType": "N"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.close()


# The stores both instances share. DynamoDB runs on moto's server over real HTTP.
STORES = ["sqlite", "dynamodb"]


@pytest.fixture(params=STORES)
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SharedStore]:
    if request.param == "sqlite":
        yield SharedStore("sqlite", f"sqlite:///{tmp_path / 'shared.db'}", {})
        return
    moto = start_moto()
    try:
        create_original_table(moto, "OfficeSensor")
        env = fake_aws_env()
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # for this process's reads (boto3's default chain)
        try:
            yield SharedStore("dynamodb", moto.store_url("OfficeSensor"), env)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    finally:
        moto.stop()


class LiveCollector:
    """Reads one dashboard's /api/stream in a thread; records each reading event's ID."""

    def __init__(self, server: Server) -> None:
        self.stream = EventStream(server.base, f"?sensor={SENSOR}")
        self.ids: list[int] = []
        self.opened = threading.Event()  # the stream's first block (retry, "connected") came
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while True:
                fields = self.stream.next_fields(time.monotonic() + 3600)
                self.opened.set()
                if fields.get("event") == "reading":
                    self.ids.append(json.loads(fields["data"])["id"])
        except OSError:  # the stream closed: the instance stopped or was killed
            pass

    def close(self) -> None:
        self.stream.close()
        self.thread.join(5)


def start_instance(
    broker: Broker, workdir: Path, client_id: str, store: SharedStore
) -> tuple[Server, LiveCollector]:
    server = start_serve(
        broker,
        workdir,
        OFFICESENSOR_MQTT_CLIENT_ID=client_id,
        OFFICESENSOR_MQTT_SHARE_GROUP=GROUP,
        OFFICESENSOR_STORE=store.url,
        **store.env,
    )
    try:
        live = LiveCollector(server)
        assert live.opened.wait(10), "the live stream did not open"
    except BaseException:
        stop_process(server.proc)
        raise
    return server, live


def stored_counts(store: Store) -> Counter[int]:
    readings = store.range(SENSOR, "Temperature", BASE, BASE + timedelta(hours=1))
    return Counter(r.reading_id for r in readings)


def test_two_instances_share_ingest_and_one_is_killed_mid_stream(
    mosquitto: Broker, shared_store: SharedStore, tmp_path: Path
) -> None:
    a, live_a = start_instance(mosquitto, tmp_path / "a", "officesensor-a", shared_store)
    try:
        b, live_b = start_instance(mosquitto, tmp_path / "b", "officesensor-b", shared_store)
    except BaseException:
        stop_process(a.proc)
        raise
    b2: Server | None = None
    count, rate = STREAMS[shared_store.kind]
    stream = Stream(mosquitto, count, rate).start()
    reader = shared_store.open()
    try:
        wait_for(lambda: stream.published >= count // 3, 60, "a third of the stream")
        stored_by_b = b.json("/api/ingest")["stored"]
        os.kill(b.proc.pid, signal.SIGKILL)
        b.proc.wait(10)
        live_b.thread.join(10)
        seen_by_b = len(live_b.ids)

        stream.wait_all_acked(120)
        # The replacement takes over b's session and its queued share.
        b2 = start_serve(
            mosquitto,
            tmp_path / "b2",
            OFFICESENSOR_MQTT_CLIENT_ID="officesensor-b",
            OFFICESENSOR_MQTT_SHARE_GROUP=GROUP,
            OFFICESENSOR_STORE=shared_store.url,
            **shared_store.env,
        )
        wait_for(lambda: len(stored_counts(reader)) >= count, 120, f"{count} readings stored")
        wait_for(lambda: len(live_a.ids) >= count, 30, "a's live stream to show every reading")
        counts = stored_counts(reader)
        stored_by_a = a.json("/api/ingest")["stored"]
    finally:
        stream.close()
        reader.close()
        live_a.close()
        live_b.close()
        codes = [stop_process(server.proc) for server in (a, b2) if server is not None]
        stop_process(b.proc)  # killed already, unless the test failed before

    missing = sorted(set(range(count)) - set(counts))
    duplicated = {key: n for key, n in counts.items() if n != 1}
    assert missing == [], f"{len(missing)} readings missing, first {missing[:10]}"
    assert duplicated == {}
    assert set(counts) == set(range(count))
    # Sharing happened: both stored part of the stream, neither all of it.
    assert 0 < stored_by_b < count
    assert 0 < stored_by_a < count
    # Each dashboard showed readings the other instance stored, each of them once.
    assert seen_by_b > stored_by_b
    assert sorted(live_a.ids) == list(range(count))
    assert len(set(live_b.ids)) == len(live_b.ids)
    assert codes == [0, 0], a.log() + (b2.log() if b2 else "")
    print(  # the figures, with -s
        f"\n{shared_store.kind}: a stored {stored_by_a}, b stored {stored_by_b} "
        f"before SIGKILL; b's dashboard had shown {seen_by_b}; "
        f"final: {len(counts)} of {count} stored, each once"
    )


# ------------------------------------------------------------------------- in process


def settings_for(broker: Broker, tmp_path: Path, **env: str) -> Any:
    return load_settings(
        environ={
            "OFFICESENSOR_MQTT_URL": broker.url,
            "OFFICESENSOR_MQTT_CLIENT_ID": "inprocess-shared",
            "OFFICESENSOR_MQTT_SHARE_GROUP": GROUP,
            "OFFICESENSOR_STORE": f"sqlite:///{tmp_path / 'office.db'}",
            **env,
        }
    )


def numbered(count: int) -> list[tuple[str, bytes]]:
    start = datetime.now(UTC) - timedelta(hours=1)
    messages = []
    for i in range(count):
        ts = start + timedelta(seconds=i)
        # Every seventh reading jumps: anomalies for the live detector to flag.
        value = 70.0 + (i % 3) / 10 + (15.0 if i % 7 == 6 else 0.0)
        body = {"Temperature": value, "ID": i, "Timestamp": ts.isoformat(), "Sensor": "twice"}
        messages.append(("office/metrics/Temperature", json.dumps(body).encode()))
    return messages


def run_ingest(settings: Any, store: Store) -> tuple[Ingest, list[Analysed]]:
    seen: list[Analysed] = []
    ingest = Ingest(settings, store, on_analysed=seen.extend)
    ingest.start()
    wait_for(lambda: ingest.snapshot().connected, 10, "ingest to subscribe")
    return ingest, seen


def test_one_instance_getting_each_message_twice_counts_it_once(
    mosquitto: Broker, tmp_path: Path
) -> None:
    store = SqliteStore(tmp_path / "office.db")
    ingest, seen = run_ingest(settings_for(mosquitto, tmp_path), store)
    publisher = Publisher(mosquitto)
    try:
        for topic, payload in numbered(50):
            publisher.publish(topic, payload)
        wait_for(lambda: ingest.snapshot().received >= 100, 15, "both copies of each message")
        wait_for(lambda: ingest.snapshot().backlog == 0, 15, "ingest to handle them")
        snapshot = ingest.snapshot()
    finally:
        publisher.close()
        ingest.stop()
    stored = store.range("twice", "Temperature", BASE, datetime.now(UTC))
    anomalies = store.anomalies("twice", "Temperature", BASE, datetime.now(UTC))
    store.close()
    assert snapshot.received == 100  # the shared and the plain subscription each delivered all
    assert (snapshot.stored, snapshot.duplicates) == (50, 0)
    assert [a.reading.reading_id for a in seen] == list(range(50))  # live: each once, in order
    flagged = [a.reading.reading_id for a in seen if a.stats.anomaly]
    assert flagged  # the jumps were seen, and counted once each
    assert snapshot.anomalies == len(flagged)
    assert sorted(r.reading.reading_id for r in anomalies) == flagged
    assert [r.reading_id for r in stored] == list(range(50))


class ReadOnlySqlite(SqliteStore):
    """SQLite saying ``read_only`` as the DynamoDB store does when an IoT rule writes the
    table; any write would fail the test."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.read_only = True

    def write_many(self, readings: Any) -> WriteResult:
        raise AssertionError("a read-only store was written to")

    def record_anomalies(self, items: Any) -> None:
        raise AssertionError("a read-only store was written to")


def test_a_read_only_store_is_never_written_and_live_updates_go_on(
    mosquitto: Broker, tmp_path: Path
) -> None:
    store = ReadOnlySqlite(tmp_path / "office.db")
    settings = settings_for(mosquitto, tmp_path, OFFICESENSOR_MQTT_SHARE_GROUP="")
    ingest, seen = run_ingest(settings, store)
    publisher = Publisher(mosquitto)
    try:
        for topic, payload in numbered(20):
            publisher.publish(topic, payload)
        wait_for(lambda: len(seen) >= 20, 15, "live updates for every reading")
        wait_for(lambda: ingest.snapshot().backlog == 0, 15, "ingest to acknowledge them")
        snapshot = ingest.snapshot()
    finally:
        publisher.close()
        ingest.stop()
    readings = store.range("twice", "Temperature", BASE, datetime.now(UTC))
    store.close()
    assert [a.reading.reading_id for a in seen] == list(range(20))
    assert snapshot.stored == 0
    assert snapshot.rejected == {}
    assert readings == []
    assert snapshot.connected
    assert snapshot.store_ok


def test_without_subscription_identifiers_every_instance_still_sees_every_reading_live(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """MQTT 3.1.1 (like AWS IoT Core) sends no subscription identifiers: each instance stores
    its share through ``$share`` and takes live updates from a second, ``-live`` connection."""
    stores = [SqliteStore(tmp_path / "office.db"), SqliteStore(tmp_path / "office.db")]
    instances = [
        run_ingest(
            settings_for(
                mosquitto,
                tmp_path,
                OFFICESENSOR_MQTT_PROTOCOL="3.1.1",
                OFFICESENSOR_MQTT_CLIENT_ID=f"instance-{i}",
            ),
            store,
        )
        for i, store in enumerate(stores)
    ]
    publisher = Publisher(mosquitto)
    try:
        # Both live connections subscribed: a reading published now reaches both.
        wait_for(
            lambda: all(ingest._live_client is not None for ingest, _ in instances),
            10,
            "the live connections",
        )
        time.sleep(0.5)  # their SUBACKs (nothing observable waits on them)
        for topic, payload in numbered(60):
            publisher.publish(topic, payload)
        for ingest, seen in instances:
            wait_for(lambda seen=seen: len(seen) >= 60, 15, "every reading live on each")
            wait_for(lambda ingest=ingest: ingest.snapshot().backlog == 0, 15, "handled")
        snapshots = [ingest.snapshot() for ingest, _ in instances]
    finally:
        publisher.close()
        for ingest, _ in instances:
            ingest.stop()
    stored = stores[0].range("twice", "Temperature", BASE, datetime.now(UTC))
    for store in stores:
        store.close()
    for _, seen in instances:
        assert [a.reading.reading_id for a in seen] == list(range(60))  # each once, in order
    assert [r.reading_id for r in stored] == list(range(60))  # every reading stored once
    stored_each = [snapshot.stored for snapshot in snapshots]
    assert sum(stored_each) == 60
    assert all(0 < n < 60 for n in stored_each), stored_each  # storing was shared
