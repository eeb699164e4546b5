"""One contestant in its own process: ``python bench/_contestants.py '<json spec>'``.

Each connects to the broker under the consumer's client id with a persistent session, drains
the messages queued for it, and writes a JSON result (wall time and process CPU time of the
drain) to ``spec["result"]``. A process of its own per run keeps the contestants from sharing
an interpreter, a heap or threads, and makes ``time.process_time()`` the contestant's CPU only.

- ``ours``: ``officesensor.ingest.Ingest`` with a fresh ``SqliteStore`` (validation, batched
  durable commits, ack after commit), timed from ``start()`` until every message is stored
  and acknowledged (``snapshot().stored == N`` and ``backlog == 0``).
- ``bare``: a paho subscriber that only counts QoS 1 messages (paho acknowledges each when
  ``on_message`` returns): the ceiling of one Python MQTT connection.
- ``naive``: a paho subscriber whose ``on_message`` does ``json.loads`` + ``INSERT`` + a
  durable ``COMMIT`` per message (SQLite WAL, ``synchronous=FULL``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from _mosquitto import HOST
from _traffic import TOPIC_FILTER, connect_kwargs
from officesensor.config import load_settings
from officesensor.ingest import Ingest
from officesensor.live import Analysed
from officesensor.models import to_epoch_us
from officesensor.store.sqlite import SqliteStore

POLL_S = 0.005  # how often the drain loop looks at ingest's counters


def _result(elapsed_s: float, cpu_s: float, messages: int, **extra: Any) -> dict[str, Any]:
    return {"elapsed_s": elapsed_s, "cpu_s": cpu_s, "messages": messages, **extra}


# ----------------------------------------------------------------------------- ours


def _ingest(spec: dict[str, Any], db: Path, on_analysed: Callable[[list[Analysed]], None] | None):
    environ = {
        "OFFICESENSOR_MQTT_URL": f"mqtt://{HOST}:{spec['port']}",
        "OFFICESENSOR_MQTT_PROTOCOL": spec["protocol"],
        "OFFICESENSOR_MQTT_CLIENT_ID": spec["client_id"],
        "OFFICESENSOR_STORE": f"sqlite:///{db}",
        "OFFICESENSOR_TOPIC": TOPIC_FILTER,
        "OFFICESENSOR_SENSOR_TIMEZONE": "UTC",
        "OFFICESENSOR_LOG_LEVEL": "WARNING",
        **spec.get("ingest_env", {}),
    }
    settings = load_settings(environ=environ)
    store = SqliteStore(db)
    return Ingest(settings, store, on_analysed=on_analysed), store


def _count_rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])


def run_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """Drain ``spec["messages"]`` pre-queued messages through Ingest."""
    expected = spec["messages"]
    db = Path(spec["workdir"]) / "ours.db"
    ingest, store = _ingest(spec, db, None)
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        ingest.start()
        while True:
            snap = ingest.snapshot()
            settled = snap.stored + snap.duplicates + snap.conflicts + sum(snap.rejected.values())
            if settled >= expected and snap.backlog == 0:
                break
            if time.perf_counter() - t0 > spec["timeout_s"]:
                raise TimeoutError(f"ingest drained {snap.stored} of {expected} in time: {snap}")
            time.sleep(POLL_S)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        ingest.stop()
        store.close()
    rows = _count_rows(db)
    ok = snap.stored == expected and rows == expected and not snap.rejected
    return _result(
        elapsed,
        cpu,
        expected,
        ok=ok,
        stored=snap.stored,
        rows=rows,
        duplicates=snap.duplicates,
        rejected=snap.rejected,
    )


def run_ours_latency(spec: dict[str, Any]) -> dict[str, Any]:
    """Run Ingest until the paced publisher's readings are committed; a reading's latency is
    the time ``on_analysed`` (called right after the commit) sees it, minus its Timestamp,
    which the publisher set to the moment it sent it."""
    expected = spec["messages"]
    db = Path(spec["workdir"]) / "ours-latency.db"
    latencies_ms: list[float] = []

    def on_analysed(analysed: list[Analysed]) -> None:
        now_us = time.time_ns() / 1000
        latencies_ms.extend((now_us - to_epoch_us(a.reading.ts)) / 1000 for a in analysed)

    ingest, store = _ingest(spec, db, on_analysed)
    cpu0, t0 = time.process_time(), time.perf_counter()
    try:
        ingest.start()
        while not ingest.snapshot().connected:
            if time.perf_counter() - t0 > 30:
                raise TimeoutError("ingest did not connect and subscribe within 30 s")
            time.sleep(0.05)
        Path(spec["ready"]).touch()
        while True:
            snap = ingest.snapshot()
            if snap.stored >= expected and snap.backlog == 0:
                break
            if time.perf_counter() - t0 > spec["timeout_s"]:
                raise TimeoutError(f"ingest stored {snap.stored} of {expected} in time")
            time.sleep(0.05)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        ingest.stop()
        store.close()
    rows = _count_rows(db)
    ok = snap.stored == expected and rows == expected and len(latencies_ms) == expected
    return _result(elapsed, cpu, expected, ok=ok, rows=rows, latencies_ms=latencies_ms)


# ----------------------------------------------------------------------------- peers


def _drain_with_paho(
    spec: dict[str, Any], on_message: Callable[[paho.MQTTMessage], None], done: threading.Event
) -> tuple[float, float]:
    v5 = spec["protocol"] == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=spec["client_id"],
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else False,
    )
    client.on_connect = lambda c, *_args: c.subscribe(TOPIC_FILTER, qos=1)
    client.on_message = lambda _c, _u, message: on_message(message)
    cpu0, t0 = time.process_time(), time.perf_counter()
    client.connect_async(HOST, spec["port"], **connect_kwargs(spec["protocol"], clean_start=False))
    client.loop_start()
    try:
        if not done.wait(spec["timeout_s"]):
            raise TimeoutError("the peer did not receive every message in time")
        return time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        client.disconnect()
        client.loop_stop()


def run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    expected = spec["messages"]
    done = threading.Event()
    count = 0

    def on_message(message: paho.MQTTMessage) -> None:
        nonlocal count
        if message.qos == 1:
            count += 1
            if count >= expected:
                done.set()

    elapsed, cpu = _drain_with_paho(spec, on_message, done)
    return _result(elapsed, cpu, expected, ok=count == expected, received=count)


def run_naive(spec: dict[str, Any]) -> dict[str, Any]:
    expected = spec["messages"]
    db = Path(spec["workdir"]) / "naive.db"
    conn = sqlite3.connect(db, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE readings (metric TEXT NOT NULL, id INTEGER NOT NULL, ts TEXT NOT NULL, "
        "value REAL NOT NULL, PRIMARY KEY (metric, id))"
    )
    conn.commit()
    done = threading.Event()
    count = 0

    def on_message(message: paho.MQTTMessage) -> None:
        nonlocal count
        metric = message.topic.rsplit("/", 1)[-1]
        document = json.loads(message.payload)
        conn.execute(
            "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)",
            (metric, document["ID"], document["Timestamp"], document[metric]),
        )
        conn.commit()  # one durable transaction per message; paho acks when this returns
        count += 1
        if count >= expected:
            done.set()

    try:
        elapsed, cpu = _drain_with_paho(spec, on_message, done)
    finally:
        conn.close()
    rows = _count_rows(db)
    return _result(elapsed, cpu, expected, ok=rows == expected, rows=rows)


CONTESTANTS = {
    "ours": run_ours,
    "ours-latency": run_ours_latency,
    "bare": run_bare,
    "naive": run_naive,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        result = CONTESTANTS[spec["contestant"]](spec)
    except Exception as exc:
        logging.exception("contestant %s failed", spec["contestant"])
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    Path(spec["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
