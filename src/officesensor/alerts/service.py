"""The alert service: ingest's readings -> the engine -> the state file -> delivery.

Threads:
- ingest's writer thread calls ``on_analysed`` / ``on_status``, which only queue the batch
  (never block: past ``QUEUE_LIMIT`` batches waiting, new ones are dropped and counted);
- the ``alerts`` thread runs the engine on what is queued, ticks it every ``TICK_S`` (stale
  series, ``for`` durations) and commits each round's transitions, changed keys and owed
  notifications in one transaction; it also retries learning the stored series' cadences
  (every ``SEED_RETRY_S``) when the store did not answer at start;
- the ``alerts-delivery`` thread (alerts/delivery.py) sends them.

Without rules nothing runs; an existing state file is still opened, so its history stays
visible and acknowledgeable. Readings are judged where ingest runs, from every reading it
analyses: with ``mqtt.share_group`` that includes the readings other instances store (they
arrive by ingest's live subscription), so one instance with rules sees them all.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from officesensor.alerts.delivery import (
    DEFAULT_RETRY,
    Channel,
    Deliverer,
    MqttChannel,
    RetryPolicy,
    WebhookChannel,
    outgoing,
    redact,
)
from officesensor.alerts.engine import CADENCE_GAPS, Engine, Key, Transition
from officesensor.alerts.rules import AlertRule
from officesensor.alerts.state import (
    CHANNELS,
    AlertState,
    AlertStateClosed,
    DeliveryCounts,
    Episode,
    Event,
)
from officesensor.config import Settings
from officesensor.errors import StoreError
from officesensor.models import SensorStatus
from officesensor.store import Store

if TYPE_CHECKING:
    from officesensor.live import Analysed

log = logging.getLogger(__name__)

TICK_S = 1.0
#: How soon to try again to learn stored cadences the store did not give at start.
SEED_RETRY_S = 30.0
QUEUE_LIMIT = 10_000
#: Queued items the engine takes before committing what they changed.
ROUND_ITEMS = 1_000


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    counts: DeliveryCounts
    last_error: str | None
    dropped_batches: int  # batches of readings never evaluated (the queue was full)


_NO_COUNTS = DeliveryCounts(*({c: 0 for c in CHANNELS} for _ in range(4)))


class AlertService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy: RetryPolicy = DEFAULT_RETRY,
        channels: Mapping[str, Channel] | None = None,
    ) -> None:
        self.rules: tuple[AlertRule, ...] = settings.alerts_rules
        self._settings = settings
        self._store = store
        self._clock = clock
        self._policy = policy
        self._given_channels = channels
        self._state: AlertState | None = None
        if self.rules or settings.alerts_state.exists():
            self._state = AlertState(settings.alerts_state)
        self._engine = Engine(self.rules)
        self._queue: queue.SimpleQueue[tuple[str, Any, datetime]] = queue.SimpleQueue()
        self._dropped = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._mqtt: MqttChannel | None = None
        self._deliverer: Deliverer | None = None
        self._unsaved: list[Transition] = []
        self._unsaved_keys: dict[Key, dict[str, Any] | None] = {}
        #: Series whose stored cadence is still to be learned (None: not listed yet).
        self._to_seed: list[tuple[str, str]] | None = None
        self._started_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        """Whether rules are evaluated here."""
        return bool(self.rules)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        state = self._state
        if not self.rules or state is None:
            return
        now = self._clock()
        closed = self._engine.restore(state.load_states(), now)
        self._started_at = now
        self._seed()
        self._commit(closed, now)
        given = self._given_channels
        channels = dict(given) if given is not None else self._make_channels()
        if "webhook" not in channels and (dropped := state.drop_channel("webhook")):
            log.warning(
                "alerts: no webhook configured: %d undelivered POSTs dead-lettered", dropped
            )
        names = {"webhook": redact(self._settings.alerts_webhook_url or "")}
        self._deliverer = Deliverer(state, channels, self._policy, clock=self._clock, names=names)
        if self._mqtt is not None:
            self._mqtt.start()
        self._deliverer.start()
        self._thread.start()
        log.info(
            "alerts: %d rule(s); publishing on %s/<sensor>/<metric>%s",
            len(self.rules),
            self._settings.alerts_topic_prefix,
            f" and to {names['webhook']}" if "webhook" in channels else "",
        )

    def _make_channels(self) -> dict[str, Channel]:
        self._mqtt = MqttChannel(self._settings)
        channels: dict[str, Channel] = {"mqtt": self._mqtt}
        if self._settings.alerts_webhook_url:
            channels["webhook"] = WebhookChannel(self._settings.alerts_webhook_url)
        return channels

    def _seed(self) -> bool:
        """Learn the cadence of every stored series a stale rule watches; True once done.

        A store that does not answer (a throttled DynamoDB) must not stop the start: what it
        did not give is asked again every ``SEED_RETRY_S`` by the alerts thread, and live
        readings teach cadences meanwhile. Seeded as at the start (``_started_at``), so a
        late seed grants no longer an allowance than a timely one."""
        assert self._started_at is not None
        if self._to_seed is None:
            try:
                listed = self._store.series()
            except StoreError as exc:
                log.warning("alerts: cannot list the stored series (will retry): %s", exc)
                return False
            watches = self._engine.watches_silence
            self._to_seed = [(i.sensor, i.metric) for i in listed if watches(i.sensor, i.metric)]
        left: list[tuple[str, str]] = []
        error: StoreError | None = None
        for sensor, metric in self._to_seed:
            try:
                latest = self._store.latest(sensor, metric, CADENCE_GAPS + 1)
            except StoreError as exc:
                left.append((sensor, metric))
                error = exc
                continue
            self._engine.seed(sensor, metric, [r.ts for r in latest], self._started_at)
        if left:
            log.warning("alerts: %d series not seeded yet (will retry): %s", len(left), error)
        self._to_seed = left
        return not left

    def stop(self, timeout_s: float = 10.0) -> None:
        """Evaluate and commit what is queued, stop delivering (what is undelivered stays in
        the outbox for the next start), close the state file: from then on the reads below
        raise ``AlertStateClosed`` (web threads may still be answering)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._deliverer is not None:
            self._deliverer.stop()
        if self._mqtt is not None:
            self._mqtt.close()
        if self._state is not None:
            self._state.close()

    # ------------------------------------------------------------------ ingest listeners

    def on_analysed(self, batch: Sequence[Analysed]) -> None:
        """Ingest's listener (its writer thread): queue the batch, never wait."""
        if self.rules:
            self._put("readings", batch)

    def on_status(self, status: SensorStatus) -> None:
        if self.rules:
            self._put("status", status)

    def _put(self, kind: str, item: Any) -> None:
        if self._queue.qsize() >= QUEUE_LIMIT:
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                log.error("alerts: evaluation is behind; %d batches dropped", self._dropped)
            return
        self._queue.put((kind, item, self._clock()))

    # ------------------------------------------------------------------ the alerts thread

    def _run(self) -> None:
        next_tick = time.monotonic()
        next_seed = None if self._to_seed == [] else time.monotonic() + SEED_RETRY_S
        while True:
            stopping = self._stopping.is_set()
            try:
                if next_seed is not None and time.monotonic() >= next_seed and not stopping:
                    next_seed = None if self._seed() else time.monotonic() + SEED_RETRY_S
                transitions = self._take(
                    0.0 if stopping else max(0.0, next_tick - time.monotonic())
                )
                if time.monotonic() >= next_tick:
                    transitions += self._engine.tick(self._clock())
                    next_tick = time.monotonic() + TICK_S
                self._commit(transitions, self._clock())
            except Exception:  # a bug must not end evaluation
                log.exception("alerts: evaluation failed (continuing)")
                time.sleep(0.5)
            if stopping and self._queue.empty():
                return

    def _take(self, wait_s: float) -> list[Transition]:
        """Evaluate what is queued (waiting up to ``wait_s`` for the first item)."""
        out: list[Transition] = []
        for n in range(ROUND_ITEMS):
            try:
                kind, item, now = (
                    self._queue.get(timeout=wait_s) if n == 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if kind == "readings":
                for analysed in item:
                    r = analysed.reading
                    anomaly = bool(analysed.stats.anomaly)
                    out += self._engine.observe(r.sensor, r.metric, r.value, r.ts, anomaly, now)
            else:
                self._engine.sensor_status(item.sensor, item.online, now)
        return out

    def _commit(self, transitions: list[Transition], now: datetime) -> None:
        """Persist a round (and any earlier round a failed write left behind)."""
        self._unsaved += transitions
        self._unsaved_keys.update(self._engine.take_dirty())
        if not self._unsaved and not self._unsaved_keys:
            return
        assert self._state is not None
        items = [(t, outgoing(t, self._settings) if t.notify else []) for t in self._unsaved]
        try:
            self._state.record(items, self._unsaved_keys, now)
        except StoreError as exc:
            log.error("alerts: cannot save alert state (will retry): %s", exc)
            return
        for t in self._unsaved:
            _log_transition(t)
        self._unsaved, self._unsaved_keys = [], {}
        if self._deliverer is not None and any(messages for _, messages in items):
            self._deliverer.wake()

    # ------------------------------------------------------------------ for the web

    def active(self) -> list[Episode]:
        return self._state.active() if self._state is not None else []

    def events(
        self,
        *,
        state: str | None = None,
        sensor: str | None = None,
        metric: str | None = None,
        before: int | None = None,
        limit: int = 100,
    ) -> list[Event]:
        if self._state is None:
            return []
        return self._state.events(
            state=state, sensor=sensor, metric=metric, before=before, limit=limit
        )

    def acknowledge(self, episode_id: str) -> Episode | None:
        if self._state is None:
            return None
        episode = self._state.acknowledge(episode_id, self._clock())
        if episode is not None:
            log.info(
                "alerts: %s on %s/%s acknowledged", episode.rule, episode.sensor, episode.metric
            )
        return episode

    def delivery(self) -> DeliveryStatus:
        counts = self._state.counts() if self._state is not None else _NO_COUNTS
        last_error = self._deliverer.last_error if self._deliverer is not None else None
        return DeliveryStatus(counts, last_error, self._dropped)

    def metrics_lines(self) -> list[str]:
        """Prometheus exposition lines (HELP, TYPE, samples) for /metrics."""
        try:
            status, active = self.delivery(), self.active()
        except AlertStateClosed:  # stopped: a scrape during the shutdown goes without them
            return []
        firing: dict[str, int] = {"warning": 0, "critical": 0}
        for episode in active:
            firing[episode.severity] = firing.get(episode.severity, 0) + 1
        lines: list[str] = []
        _family(lines, "alerts_firing", "gauge", "Alerts firing now, by severity.",
                [(f'severity="{k}"', v) for k, v in sorted(firing.items())])  # fmt: skip
        c = status.counts
        for name, kind, text, values in (
            ("alert_notifications_delivered_total", "counter",
             "Alert notifications delivered, by channel.", c.delivered),
            ("alert_delivery_retries_total", "counter",
             "Failed alert deliveries that were retried, by channel.", c.retries),
            ("alert_dead_letters_total", "counter",
             "Alert notifications given up on, by channel.", c.dead_letters),
            ("alert_outbox_pending", "gauge",
             "Alert notifications waiting to be delivered, by channel.", c.pending),
        ):  # fmt: skip
            _family(lines, name, kind, text, [(f'channel="{k}"', v) for k, v in values.items()])
        _family(lines, "alert_batches_dropped_total", "counter",
                "Reading batches not evaluated because evaluation was behind.",
                [("", status.dropped_batches)])  # fmt: skip
        return lines


def _family(
    lines: list[str], name: str, kind: str, text: str, samples: list[tuple[str, int]]
) -> None:
    full = f"officesensor_{name}"
    lines += [f"# HELP {full} {text}", f"# TYPE {full} {kind}"]
    lines += [f"{full}{{{labels}}} {v}" if labels else f"{full} {v}" for labels, v in samples]


def _log_transition(t: Transition) -> None:
    note = (
        "" if t.notify else " (suppressed by the cooldown)" if t.suppressed else " (not notified)"
    )
    log.log(
        logging.WARNING if t.state == "firing" else logging.INFO,
        "alerts: %s %s on %s/%s: value %s, threshold %s%s",
        t.rule, t.state, t.sensor, t.metric, t.value, t.threshold, note,
    )  # fmt: skip
