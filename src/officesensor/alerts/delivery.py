"""Alert notifications: their formats, and their delivery from the outbox with retries.

Two channels, each tried independently (alerts/state.py keeps one FIFO per channel):

- MQTT: ``<alerts.topic_prefix>/<sensor>/<metric>``, QoS 1, not retained (a retained message
  would hold only the last rule's word on a series that several rules watch, and a
  "resolved" would shadow another rule's "firing"; the current state is ``/api/alerts``).
- HTTP webhook: POST of the same JSON, or a Slack incoming-webhook message, with a timeout,
  TLS verified, redirects not followed.

Delivery runs on its own thread, never on ingest's. A failure is retried with exponential
back-off; a message is dead after ``RetryPolicy.max_attempts`` attempts or once older than
``max_age``, and at once on an answer that retrying cannot change (a 4xx other than 408,
425, 429, or a redirect). Dead letters are counted in the state file and logged.

The webhook URL is a secret (it often holds a token): logs show only its scheme and host.
"""

from __future__ import annotations

import http.client
import json
import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as paho

from officesensor import __version__, mqtt
from officesensor.alerts.engine import Transition
from officesensor.alerts.state import AlertState, OutboxItem, Outgoing
from officesensor.config import Settings
from officesensor.errors import OfficeSensorError

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10.0
PUBACK_TIMEOUT_S = 10.0
#: Longest the delivery thread sleeps without being woken (new messages wake it at once).
IDLE_WAIT_S = 5.0
_RETRYABLE_HTTP = frozenset({408, 425, 429})


# ----------------------------------------------------------------------------- formats


def notification(t: Transition) -> dict[str, Any]:
    """The JSON body of an MQTT alert and of the ``json`` webhook."""
    return {
        "id": t.id,
        "rule": t.rule,
        "kind": t.kind,
        "state": t.state,
        "severity": t.severity,
        "sensor": t.sensor,
        "metric": t.metric,
        "value": t.value,
        "threshold": t.threshold,
        "since": _iso(t.since),
        "at": _iso(t.at),
    }


def topic_of(prefix: str, sensor: str, metric: str) -> str:
    # Ingest admits only names without '/', '+' or '#' (payload.SENSOR_NAME, METRIC_NAME).
    return f"{prefix}/{sensor}/{metric}"


def slack_escape(text: str) -> str:
    """Text for Slack's mrkdwn: &, < and > escaped (so a name cannot become a link or a
    @channel mention), as https://api.slack.com/reference/surfaces/formatting asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(note: Mapping[str, Any]) -> str:
    """One plain line saying what happened (not escaped)."""
    metric, sensor = note["metric"], note["sensor"]
    value, threshold = note["value"], note["threshold"]
    firing = note["state"] == "firing"
    if note["kind"] == "stale":
        silent = f"{value:.0f} s" if isinstance(value, int | float) else "a while"
        allowed = f" (allowed {threshold:.0f} s)" if isinstance(threshold, int | float) else ""
        what = (
            f"no reading for {silent}{allowed}" if firing else f"readings are back after {silent}"
        )
    elif note["kind"] == "anomaly":
        what = f"anomalous reading {_number(value)}" if firing else "readings are normal again"
    else:
        what = (
            f"{_number(value)}, beyond {_number(threshold)}"
            if firing
            else f"back to {_number(value)} (threshold {_number(threshold)})"
        )
    return (
        f"{note['state'].upper()} [{note['severity']}] {note['rule']}: {metric} of {sensor}: {what}"
    )


def slack_body(note: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``text`` (notifications, fallbacks) and one block."""
    icon = ":rotating_light:" if note["state"] == "firing" else ":white_check_mark:"
    line = slack_escape(summary(note))
    since = slack_escape(f"since {note['since'].replace('T', ' ')}")
    return {
        "text": f"{icon} {line}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{line}*\n{since}"}}
        ],
    }


def outgoing(t: Transition, settings: Settings) -> list[Outgoing]:
    """What a notified transition owes: an MQTT message and, if configured, a webhook POST."""
    note = notification(t)
    body = json.dumps(note, separators=(",", ":"), allow_nan=False).encode()
    messages = [Outgoing("mqtt", topic_of(settings.alerts_topic_prefix, t.sensor, t.metric), body)]
    if settings.alerts_webhook_url:
        if settings.alerts_webhook_format == "slack":
            body = json.dumps(slack_body(note), allow_nan=False).encode()
        messages.append(Outgoing("webhook", "", body))
    return messages


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) else "?"


# ----------------------------------------------------------------------------- channels


class DeliveryFailure(OfficeSensorError):
    """A channel could not deliver; ``permanent``: retrying cannot help."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class Channel(Protocol):
    def send(self, item: OutboxItem) -> None:
        """Deliver, or raise DeliveryFailure."""


class MqttChannel:
    """Its own paho client (``<mqtt.client_id>-alerts``: a second connection under ingest's
    id would disconnect ingest), clean session, reconnecting by itself."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client = mqtt.make_client(
            settings, client_id=f"{settings.mqtt_client_id}-alerts", persistent_session=False
        )
        self._client.on_connect = mqtt.guarded(self._on_connect)
        self._client.on_disconnect = mqtt.guarded(self._on_disconnect)

    def start(self) -> None:
        mqtt.connect(self._client, self._settings.mqtt_url)
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        mqtt.stop_network_loop(self._client)

    def _on_connect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            log.error("alerts: the broker refused the alert publisher: %s", reason)
            return
        mqtt.note_connected(client)
        log.info("alerts: publisher connected to %s", self._settings.mqtt_url)

    def _on_disconnect(
        self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        mqtt.note_disconnected(client, reason)

    def send(self, item: OutboxItem) -> None:
        if not self._client.is_connected():
            raise DeliveryFailure("not connected to the MQTT broker")
        info = self._client.publish(item.topic, item.payload, qos=1, retain=False)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise DeliveryFailure(f"publish failed: {mqtt.reason_text(info.rc)}")
        try:
            info.wait_for_publish(PUBACK_TIMEOUT_S)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryFailure(f"publish failed: {exc}") from None
        if not info.is_published():
            raise DeliveryFailure(f"no PUBACK within {PUBACK_TIMEOUT_S:g} s")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A webhook that redirects is misconfigured: say so instead of re-sending elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookChannel:
    def __init__(self, url: str, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        self._url = url
        self.shown = redact(url)
        self._timeout_s = timeout_s
        # Certificates and host names are always verified (the default context's behaviour).
        self._opener = urllib.request.build_opener(
            _NoRedirects(), urllib.request.HTTPSHandler(context=ssl.create_default_context())
        )

    def send(self, item: OutboxItem) -> None:
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in config)
            self._url,
            data=item.payload,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": f"officesensor/{__version__}",
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                response.read(65_536)
        except urllib.error.HTTPError as exc:
            exc.close()
            permanent = exc.code < 500 and exc.code not in _RETRYABLE_HTTP
            raise DeliveryFailure(f"HTTP {exc.code} {exc.reason}", permanent) from None
        except urllib.error.URLError as exc:
            raise DeliveryFailure(f"{exc.reason}") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DeliveryFailure(f"{type(exc).__name__}: {exc}") from None


def redact(url: str) -> str:
    """A URL as logs may show it: scheme and host, no path, query or credentials."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/…"


# ----------------------------------------------------------------------------- delivery


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential back-off: 1 s, 2 s, 4 s ... capped at 10 min; at most 15 attempts (about an
    hour of trying) and never past a day."""

    first_delay_s: float = 1.0
    max_delay_s: float = 600.0
    max_attempts: int = 15
    max_age: timedelta = timedelta(days=1)

    def delay_s(self, failures: int) -> float:
        """How long to wait after the ``failures``-th failed attempt."""
        return float(min(self.first_delay_s * 2 ** min(failures - 1, 60), self.max_delay_s))

    def exhausted(self, failures: int, created: datetime, now: datetime) -> bool:
        return failures >= self.max_attempts or now - created >= self.max_age


DEFAULT_RETRY = RetryPolicy()


class Deliverer:
    """The delivery thread: sends each channel's due head of the outbox, in order."""

    def __init__(
        self,
        state: AlertState,
        channels: Mapping[str, Channel],
        policy: RetryPolicy = DEFAULT_RETRY,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        names: Mapping[str, str] | None = None,
    ) -> None:
        self._state = state
        self._channels = dict(channels)
        self._policy = policy
        self._clock = clock
        self._names = dict(names or {})  # how logs call each channel
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alerts-delivery", daemon=True)
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout_s: float = WEBHOOK_TIMEOUT_S + 5) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
                wait_s = self._wait_s()
            except Exception:  # a bug or a broken state file must not end delivery
                log.exception("alerts: delivery failed unexpectedly; trying again soon")
                wait_s = 1.0
            self._wake.wait(wait_s)
            self._wake.clear()

    def deliver_due(self) -> None:
        """Send what is due now, channel by channel, until nothing more is due."""
        while not self._stop.is_set():
            items = [i for i in self._state.due(self._clock()) if i.channel in self._channels]
            if not items:
                return
            for item in items:
                self._attempt(item)

    def _attempt(self, item: OutboxItem) -> None:
        name = self._names.get(item.channel, item.channel)
        started = time.monotonic()
        try:
            self._channels[item.channel].send(item)
        except DeliveryFailure as exc:
            now = self._clock()
            failures = item.attempts + 1
            self.last_error = f"{item.channel}: {exc}"
            if exc.permanent or self._policy.exhausted(failures, item.created, now):
                self._state.dead(item)
                log.error(
                    "alerts: gave up delivering to %s after %d attempt(s): %s (dead letter)",
                    name, failures, exc,
                )  # fmt: skip
                return
            delay_s = self._policy.delay_s(failures)
            self._state.retry(item, now + timedelta(seconds=delay_s))
            log.warning(
                "alerts: delivery to %s failed (attempt %d): %s; retrying in %g s",
                name, failures, exc, delay_s,
            )  # fmt: skip
            return
        self._state.delivered(item)
        log.info("alerts: delivered to %s in %.0f ms", name, (time.monotonic() - started) * 1000)

    def _wait_s(self) -> float:
        due = self._state.next_due()
        if due is None:
            return IDLE_WAIT_S
        return min(max((due - self._clock()).total_seconds(), 0.01), IDLE_WAIT_S)
