"""Ingest: MQTT (QoS 1, persistent session, manual acks) -> validate -> batch -> store -> ack.

Threads and ownership:
- paho's network thread runs the callbacks; ``on_message`` only puts the message on a bounded
  queue (a full queue blocks it, which stops reading from the broker: back-pressure);
- one writer thread takes everything queued (up to ``batch_size``), parses it, commits the
  readings in one transaction, and only then acknowledges the messages. A message from an
  earlier connection is never acknowledged on a later one (the broker redelivers it, and the
  store recognises the duplicate). Rejected messages are counted by reason and acknowledged,
  so a bad payload is not redelivered forever. If the store fails, the batch is retried with
  back-off and nothing is acknowledged meanwhile.

Several instances (``mqtt.share_group``, see officesensor.subscriptions): a message that came
only by the live subscription is analysed and shown, not stored (another instance stores it).
A read-only store (an AWS IoT rule writes the table) gets nothing written; everything else
goes on.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import paho.mqtt.client as paho

from officesensor import mqtt, subscriptions
from officesensor.admission import SeriesGate
from officesensor.config import Settings
from officesensor.errors import StoreError
from officesensor.histogram import STORE_WRITE_BUCKETS_S, Histogram
from officesensor.live import Analysed, LiveAnalytics, flagged
from officesensor.models import (
    IngestSnapshot,
    IngestTelemetry,
    QuarantinedMessage,
    Reading,
    Rejection,
    RejectReason,
    SensorStatus,
)
from officesensor.payload import (
    PayloadRules,
    is_status_topic,
    parse_message,
    parse_status,
    printable,
    status_filter,
)
from officesensor.store import Store

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
RETRY_MIN_S = 0.5
RETRY_MAX_S = 30.0
QUARANTINE_SIZE = 1_000  # newest rejected messages kept for inspection
IDLE_CHECK_S = 2.0  # when idle, check this often that the store is writable and paho alive
_PREVIEW_BYTES = 256


class _Received(NamedTuple):  # a tuple: cheapest to build on the network thread's hot path
    generation: int  # which connection delivered it
    mid: int
    qos: int
    topic: bytes
    payload: bytes | bytearray  # as paho hands it over; only its start when it is too large
    size: int  # the payload's real length
    stored: bool = True  # False: another instance stores it; here it only feeds live updates


class Ingest:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_analysed: Callable[[list[Analysed]], None] | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._listeners: list[Callable[[list[Analysed]], None]] = []
        self._status_listeners: list[Callable[[SensorStatus], None]] = []
        self._status_filter = status_filter(settings.topic)
        self._statuses: dict[str, SensorStatus] = {}
        if on_analysed is not None:
            self._listeners.append(on_analysed)
        self._rules = PayloadRules(max_payload_bytes=settings.ingest_max_payload_bytes)
        self._tz = settings.tz
        self._live = LiveAnalytics(store, settings.window, settings.z, settings.anomaly_method)
        # Read-only (an AWS IoT rule writes the table): analyse and show, write nothing.
        self._read_only = bool(getattr(store, "read_only", False))
        self._split = False  # deliveries say which subscription (store or live) they came by
        self._pending_subacks: set[int] = set()
        self._queue: queue.SimpleQueue[_Received] = queue.SimpleQueue()  # bounded in on_message
        self._received = 0  # written by the network thread only
        self._received_live = 0  # written by the live connection's network thread only
        self._live_client: paho.Client | None = None  # see _start_live_connection
        self._lock = threading.Lock()
        self._generation = 0
        self._connected = False
        self._subscribed = False  # our SUBACK arrived on the current connection
        self._link_changed = clock()  # when (connected and subscribed) last flipped
        self._write_seconds = Histogram(STORE_WRITE_BUCKETS_S)  # each committed batch
        self._accepting = True
        self._stopping = threading.Event()
        self._counts: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()
        self._last_error: str | None = None
        self._store_ok = True
        self._gate: SeriesGate | None = None  # built in start(), from the stored series
        self._quarantine: deque[QuarantinedMessage] = deque(maxlen=QUARANTINE_SIZE)
        self._last_check = time.monotonic()
        self._client = self._make_client()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        s = self._settings
        known = ((info.sensor, info.metric) for info in self._store.series())
        self._gate = SeriesGate(
            known, max_series=s.ingest_max_series, allowed_metrics=s.ingest_allowed_metrics
        )
        self._writer.start()
        mqtt.connect(self._client, self._settings.mqtt_url, persistent_session=True)
        self._client.loop_start()
        log.info(
            "ingest: subscribing to %s on %s as %s (MQTT %s%s)%s",
            self._settings.topic,
            self._settings.mqtt_url,
            self._settings.mqtt_client_id,
            self._settings.mqtt_protocol,
            f", share group {s.mqtt_share_group}" if s.mqtt_share_group else "",
            "; read-only store: analysing, writing nothing" if self._read_only else "",
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking messages, commit and acknowledge what was received, disconnect."""
        with self._lock:
            self._accepting = False  # later deliveries stay unacknowledged: redelivered later
        self._stopping.set()
        self._writer.join(timeout_s)
        if self._writer.is_alive():
            log.warning(
                "ingest: writer still busy after %.0f s; unacknowledged messages "
                "will be redelivered by the broker",
                timeout_s,
            )
        self._client.disconnect()
        mqtt.stop_network_loop(self._client)
        if self._live_client is not None:
            self._live_client.disconnect()
            mqtt.stop_network_loop(self._live_client)

    def snapshot(self) -> IngestSnapshot:
        with self._lock:
            loop_alive = mqtt.network_loop_alive(self._client) and self._writer.is_alive()
            return IngestSnapshot(
                connected=self._connected and self._subscribed and loop_alive,
                received=self._received + self._received_live,
                stored=self._counts["stored"],
                duplicates=self._counts["duplicates"],
                conflicts=self._counts["conflicts"],
                rejected=dict(self._rejected),
                # Received but not yet committed and acknowledged (queued or being written).
                backlog=self._received + self._received_live - self._counts["handled"],
                reconnects=max(0, self._counts["connects"] - 1),
                anomalies=self._counts["anomalies"],
                last_error=self._last_error,
                store_ok=self._store_ok,
            )

    def telemetry(self) -> IngestTelemetry:
        """Figures for /metrics only: store write latency, when the link last changed."""
        with self._lock:
            changed = self._link_changed
        return IngestTelemetry(self._write_seconds.snapshot(), changed)

    def _note_link_down(self) -> None:
        """Before clearing the connection flags (lock held): stamp the change if it was up."""
        if self._connected and self._subscribed:
            self._link_changed = self._clock()

    def quarantine(self, limit: int = QUARANTINE_SIZE) -> list[QuarantinedMessage]:
        """The newest rejected messages, newest first."""
        with self._lock:
            return list(itertools.islice(reversed(self._quarantine), limit))

    # ------------------------------------------------------------------ paho callbacks

    def _make_client(self) -> paho.Client:
        s = self._settings
        client = mqtt.make_client(s, persistent_session=True, manual_ack=True)
        client.on_connect = mqtt.guarded(self._on_connect)
        client.on_connect_fail = mqtt.guarded(self._on_connect_fail)
        client.on_disconnect = mqtt.guarded(self._on_disconnect)
        client.on_message = mqtt.guarded(self._on_message)
        client.on_subscribe = mqtt.guarded(self._on_subscribe)
        return client

    def _on_connect(
        self, client: paho.Client, _userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._last_error = f"broker refused the connection: {reason}"
            log.error("ingest: %s", self._last_error)
            return
        with self._lock:
            self._generation += 1
            self._connected = True
            self._subscribed = False
            self._counts["connects"] += 1
        mqtt.note_connected(client)
        log.info("ingest: connected (session present: %s)", flags.session_present)
        # Subscribing again is harmless when the session survived, and required when it did not
        # (and it brings the sensors' retained status messages again).
        s = self._settings
        identifiers = s.mqtt_protocol == "5" and mqtt.subscription_identifiers_available(properties)
        self._split = bool(s.mqtt_share_group) and identifiers
        if s.mqtt_share_group and not identifiers and self._live_client is None:
            self._start_live_connection()
        packets = subscriptions.ingest_subscriptions(
            s.topic, self._status_filter, s.mqtt_share_group, identifiers=identifiers
        )
        self._pending_subacks = set(mqtt.subscribe(client, packets))

    def _start_live_connection(self) -> None:
        """Several instances on a broker that cannot say which subscription delivered a message
        (MQTT 3.1.1, AWS IoT Core): a second connection, ``<client id>-live``, with a plain
        QoS 0 subscription and no session, brings every reading for live updates only."""
        s = self._settings
        client_id = f"{s.mqtt_client_id}-live"[:128]
        log.info(
            "ingest: the broker sends no subscription identifiers (MQTT %s); live updates come "
            "by a second connection as %s",
            s.mqtt_protocol,
            client_id,
        )
        client = mqtt.make_client(s, client_id, persistent_session=False)
        client.on_connect = mqtt.guarded(self._on_live_connect)
        client.on_message = mqtt.guarded(self._on_live_message)
        self._live_client = client
        mqtt.connect(client, s.mqtt_url, persistent_session=False)
        client.loop_start()

    def _on_live_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("ingest: live connection refused: %s", reason)
            return
        client.subscribe(self._settings.topic, 0)

    def _on_live_message(
        self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage
    ) -> None:
        if not self._accepting or self._queue.qsize() >= QUEUE_SIZE:
            return  # live updates only (QoS 0): never hold up storing for them
        self._received_live += 1
        self._queue.put(self._item(message, -1, 0, stored=False))  # never acknowledged

    def _on_connect_fail(self, client: paho.Client, _userdata: Any) -> None:
        # mqtt.Client logged why (once per new reason); keep it for /api/ingest.
        self._last_error = getattr(client, "connect_error", None) or "cannot reach the broker"

    def _on_subscribe(
        self, _client: paho.Client, _userdata: Any, mid: int, reasons: Any, _properties: Any
    ) -> None:
        refused = [reason for reason in reasons if reason.is_failure]
        if refused:
            self._last_error = f"subscription to {self._settings.topic} refused: {refused[0]}"
            log.error("ingest: %s", self._last_error)
            return
        self._pending_subacks.discard(mid)
        if self._pending_subacks:
            return  # subscribed once every SUBSCRIBE of this connection is acknowledged
        with self._lock:
            if self._connected and not self._subscribed:
                self._link_changed = self._clock()
            self._subscribed = True
        log.info("ingest: subscribed to %s and %s", self._settings.topic, self._status_filter)

    def _on_disconnect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        with self._lock:
            self._note_link_down()
            self._connected = False
            self._subscribed = False
            never_connected = self._counts["connects"] == 0
        if self._stopping.is_set():
            return
        self._last_error = f"disconnected: {mqtt.reason_text(reason)}"
        log.warning("ingest: %s; reconnecting", self._last_error)
        # A client id used twice, or (before any CONNACK) e.g. the broker's TLS alert.
        self._last_error = mqtt.note_disconnected(client, reason) or self._last_error
        if never_connected and getattr(client, "connect_error", None):
            self._last_error = client.connect_error  # type: ignore[attr-defined]
        if never_connected and self._settings.mqtt_protocol == "5":
            log.warning(
                "ingest: if the broker only speaks MQTT 3.1.1, set OFFICESENSOR_MQTT_PROTOCOL=3.1.1"
            )

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        # The hot path: no lock. on_connect runs on this same thread, so the generation cannot
        # change under us, and only this thread counts received messages.
        if not self._accepting:
            return  # stopping: left unacknowledged, the broker redelivers it next session
        self._received += 1
        stored = not self._split or subscriptions.is_stored(mqtt.subscription_identifiers(message))
        item = self._item(message, self._generation, message.qos, stored)
        # A full queue holds up the network thread: back-pressure to the broker.
        while self._queue.qsize() >= QUEUE_SIZE:
            if self._stopping.wait(0.01):
                return
        self._queue.put(item)

    def _item(
        self, message: paho.MQTTMessage, generation: int, qos: int, stored: bool
    ) -> _Received:
        # The raw topic bytes: paho's ``message.topic`` raises on a topic that is not UTF-8.
        payload = message.payload
        size = len(payload)
        if size > self._rules.max_payload_bytes:  # keep only what the quarantine shows
            payload = payload[:_PREVIEW_BYTES]
        return _Received(generation, message.mid, qos, bytes(message._topic), payload, size, stored)

    # ------------------------------------------------------------------ writer thread

    def _write_loop(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            try:
                self._write_once()
            except Exception:  # a bug must not end this thread: log it, get the batch again
                log.exception("ingest: unexpected error; reconnecting so the broker redelivers")
                self._force_redelivery()
                time.sleep(0.5)  # no busy loop on a persistent error

    def _write_once(self) -> None:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            if time.monotonic() - self._last_check >= IDLE_CHECK_S:
                self._check_health()
            return
        batch = [first]
        while len(batch) < self._settings.ingest_batch_size:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._handle(batch)

    def _force_redelivery(self) -> None:
        """Give up on every unacknowledged message of this connection: disconnecting ends
        paho's loop, the idle health check starts a new connection within seconds, and the
        broker redelivers (the store recognises what it already has)."""
        with self._lock:
            self._generation += 1  # nothing of the old connection is acknowledged any more
            self._note_link_down()
            self._connected = False
        self._client.disconnect()

    def _check_health(self) -> None:
        """Find faults while no message arrives: a store that stopped taking writes, and a
        paho network thread that died anyway (then nothing would ever be received again)."""
        self._last_check = time.monotonic()
        try:
            if self._read_only:  # writes nothing: being readable is all it needs
                self._store.ping()
            else:
                self._store.probe_write()
            if not self._store_ok:
                log.info("ingest: the store takes writes again")
            self._store_ok = True
        except StoreError as exc:
            if self._store_ok:
                log.error("ingest: the store does not take writes: %s", exc)
            self._store_ok = False
            self._last_error = str(exc)
        if not mqtt.network_loop_alive(self._client) and not self._stopping.is_set():
            self._last_error = "the MQTT network thread ended; restarted it"
            log.error("ingest: %s", self._last_error)
            with self._lock:  # its on_disconnect never ran: do its part
                self._generation += 1
                self._note_link_down()
                self._connected = False
            mqtt.restart_network_loop(
                self._client, self._settings.mqtt_url, persistent_session=True
            )

    def _handle(self, batch: list[_Received]) -> None:
        assert self._gate is not None, "start() builds the gate"
        now = self._clock()
        readings: list[Reading] = []
        live: list[Reading] = []  # stored by another instance: live updates only
        statuses: list[SensorStatus] = []
        for item in batch:
            if is_status_topic(item.topic):
                status = parse_status(item.topic, item.payload, now)
                if isinstance(status, Rejection):
                    self._count_rejection(status, item, now)
                else:
                    statuses.append(status)
                continue
            if item.size > self._rules.max_payload_bytes:
                limit = self._rules.max_payload_bytes
                detail = f"{item.size} bytes > {limit}"
                parsed: list[Reading] | Rejection = Rejection(
                    RejectReason.TOO_LARGE, detail, printable(item.topic)
                )
            else:
                parsed = parse_message(
                    item.topic, item.payload, now=now, sensor_tz=self._tz, rules=self._rules
                )
            if not isinstance(parsed, Rejection):
                refused = self._gate.admit(parsed, item.topic)
                parsed = refused or parsed
            if isinstance(parsed, Rejection):
                if item.stored:  # else the instance that stores it counts it
                    self._count_rejection(parsed, item, now)
            else:
                (readings if item.stored else live).extend(parsed)
        if not self._commit(readings, live):
            return  # stopping while the store is down: leave the batch to redelivery
        self._record_statuses(statuses)
        self._acknowledge(batch)
        with self._lock:
            self._counts["handled"] += len(batch)

    def _commit(self, readings: list[Reading], live: list[Reading]) -> bool:
        if self._read_only:  # the table's writer (an AWS IoT rule) stores them
            self._analyse([*readings, *live])
            return True
        delay = RETRY_MIN_S
        while True:
            try:
                started = time.perf_counter()
                result = self._store.write_many(readings)
                if readings:  # an all-rejected batch writes nothing: not a store latency
                    self._write_seconds.observe(time.perf_counter() - started)
                break
            except StoreError as exc:
                self._store_ok = False
                self._last_error = str(exc)
                log.error("ingest: store failed (%s); retrying in %.1f s", exc, delay)
                if self._stopping.wait(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_S)
        self._store_ok = True
        self._last_check = time.monotonic()
        with self._lock:
            self._counts["stored"] += result.stored
            self._counts["duplicates"] += result.duplicates
            self._counts["conflicts"] += result.conflicts
        for reading in result.conflicting:
            log.warning("ingest: conflicting reading kept aside: %s", reading)
        self._analyse([*result.new, *live])  # not redelivered duplicates
        return True

    def _analyse(self, readings: list[Reading]) -> None:
        """Live statistics, anomalies and listeners. A reading that arrived by both the shared
        and the live subscription is fed once: a series takes only readings newer than its
        newest."""
        try:  # committed: nothing below may keep the batch from being acknowledged
            analysed = self._live.update(readings)
            self._record_anomalies(analysed)
            for listener in self._listeners if analysed else ():
                listener(analysed)
        except Exception:
            log.exception("ingest: live analytics failed for a committed batch (ignored)")

    def sensor_statuses(self) -> dict[str, SensorStatus]:
        """Each sensor's latest status message (online, or offline by its last will)."""
        with self._lock:
            return dict(self._statuses)

    def add_status_listener(self, listener: Callable[[SensorStatus], None]) -> None:
        """Call ``listener`` (on the writer thread; it must not block) with each status
        message, in arrival order. Before ``start`` only."""
        self._status_listeners.append(listener)

    def _record_statuses(self, statuses: list[SensorStatus]) -> None:
        for status in statuses:
            with self._lock:
                previous = self._statuses.get(status.sensor)
                self._statuses[status.sensor] = status
                self._counts["statuses"] += 1
            if previous is None or previous.online != status.online:
                log.info(
                    "ingest: sensor %s is %s",
                    status.sensor,
                    "online" if status.online else "offline",
                )
            for listener in self._status_listeners:
                try:
                    listener(status)
                except Exception:
                    log.exception("ingest: a status listener failed (ignored)")

    def add_listener(self, listener: Callable[[list[Analysed]], None]) -> None:
        """Call ``listener`` (on the writer thread; it must not block) with each committed
        batch's new in-order readings and their live statistics. Before ``start`` only."""
        self._listeners.append(listener)

    def _record_anomalies(self, analysed: list[Analysed]) -> None:
        found = flagged(analysed)
        with self._lock:
            self._counts["anomalies"] += len(found)
        # Each instance records what it flags (idempotent: the first record stays).
        if found and not self._read_only:
            try:
                self._store.record_anomalies(found)
            except StoreError as exc:  # derived data: the readings themselves are committed
                log.error("ingest: could not record %d anomalies: %s", len(found), exc)

    def _acknowledge(self, batch: list[_Received]) -> None:
        # Holding the lock keeps on_connect from starting a new generation mid-loop.
        with self._lock:
            for item in batch:
                if item.qos > 0 and item.generation == self._generation and self._connected:
                    self._client.ack(item.mid, item.qos)

    def _count_rejection(self, rejection: Rejection, item: _Received, now: datetime) -> None:
        kept = QuarantinedMessage(
            received=now,
            topic=rejection.topic,
            reason=rejection.reason,
            detail=rejection.detail,
            payload_bytes=item.size,
            payload_preview=printable(item.payload[:_PREVIEW_BYTES], limit=4 * _PREVIEW_BYTES),
        )
        with self._lock:
            self._rejected[rejection.reason.value] += 1
            seen = self._rejected[rejection.reason.value]
            self._quarantine.append(kept)
        if seen <= 10 or seen % 1000 == 0:  # keep the log readable under a flood
            log.warning(
                "ingest: rejected message on %s: %s (%s; %d so far)",
                rejection.topic,
                rejection.reason.value,
                rejection.detail,
                seen,
            )
