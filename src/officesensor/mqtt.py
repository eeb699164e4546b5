"""The one place that configures paho-mqtt clients (protocol, session, TLS, limits, reconnects).

paho stays at the edge: ingest and the sensor publisher get a configured client from here and
keep their callbacks small and exception-proof (an exception escaping a paho callback ends the
network thread silently).

TLS is always verified: the broker's certificate must chain to ``mqtt.ca_file`` (or the
system's CAs) and name the host of ``mqtt.url``. There is deliberately no setting that turns
either check off. The limits here are AWS IoT Core's (QoS 0/1, 100 messages in flight each
way), which suit every other broker too.
"""

from __future__ import annotations

import functools
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, LogLevel, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from officesensor.config import MqttUrl, Settings
from officesensor.errors import ConfigError
from officesensor.subscriptions import SESSION_TAKEN_OVER, ClientIdWatch, Subscription

log = logging.getLogger(__name__)

#: How long the broker keeps our session (subscriptions, unacknowledged messages) after a
#: disconnect, for MQTT 5. MQTT 3.1.1 sessions with clean_session=false never expire by spec.
SESSION_EXPIRY_S = 7 * 24 * 3600
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
#: AWS IoT Core allows 100 unacknowledged QoS 1 messages each way per connection: we publish
#: at most this many at once and ask the broker (MQTT 5 Receive Maximum) to send no more.
MAX_INFLIGHT = 100
#: The ALPN protocol AWS IoT Core expects for MQTT with a client certificate on port 443.
AWS_IOT_ALPN = "x-amzn-mqtt-ca"

F = TypeVar("F", bound=Callable[..., Any])


def guarded(callback: F) -> F:
    """Wrap a paho callback so no exception can escape into (and kill) the network thread."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except Exception:
            log.exception(
                "error in MQTT callback %s (ignored, the client keeps running)", callback.__name__
            )
            return None

    return cast(F, wrapper)


class Client(paho.Client):
    """paho's client, remembering why the last connection attempt failed.

    paho retries a failed connection silently (the error reaches only its own log at DEBUG);
    ``connect_error`` keeps it, in words naming the setting to check, for ``/api/ingest``
    and the log. paho's own error lines (e.g. a TLS alert from the broker after the
    handshake) are passed to our log and kept too.
    """

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connect_error: str | None = None
        self.id_watch = ClientIdWatch(kwargs["client_id"], clock=time.monotonic)
        self._settings = settings

    def _create_socket(self) -> Any:
        try:
            sock = super()._create_socket()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            self._report(describe_connect_error(exc, self._settings))
            raise
        return sock

    def _easy_log(self, level: LogLevel, fmt: str, *args: Any) -> None:
        # Called for every packet: only errors and warnings are worth anything here.
        if level == LogLevel.MQTT_LOG_ERR or level == LogLevel.MQTT_LOG_WARNING:
            text = fmt % args if args else fmt
            if "SSL" in text:  # e.g. the broker's alert refusing our (missing) certificate
                self._report(text + tls_hint(self._settings))
            else:  # a dropped connection: the caller's on_disconnect says so
                log.debug("MQTT %s (paho): %s", self._settings.mqtt_url, text)

    def _report(self, text: str) -> None:
        level = (
            logging.ERROR if text != self.connect_error else logging.DEBUG
        )  # once, not per retry
        log.log(level, "MQTT %s: %s", self._settings.mqtt_url, text)
        self.connect_error = text


def make_client(
    settings: Settings,
    client_id: str | None = None,
    *,
    persistent_session: bool = False,
    manual_ack: bool = False,
) -> Client:
    """A client for ``settings.mqtt_url`` (TLS, ALPN and certificates from ``settings``), as
    ``client_id`` (default ``mqtt.client_id``); call ``connect(client, ...)`` then
    ``loop_start``. Raises ConfigError, naming the setting, when a certificate file cannot be
    used."""
    s = settings
    v5 = s.mqtt_protocol == "5"
    client = Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or s.mqtt_client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else not persistent_session,
        manual_ack=manual_ack,
        reconnect_on_failure=True,
        settings=s,
    )
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    if s.mqtt_url.tls:
        client.tls_set_context(tls_context(s))
    if s.mqtt_url.username:
        client.username_pw_set(s.mqtt_url.username, s.mqtt_url.password)
    return client


def alpn_protocols(alpn: str, url: MqttUrl) -> list[str]:
    """The ALPN protocols to offer: ``auto`` offers AWS IoT Core's ``x-amzn-mqtt-ca`` for
    mqtts on port 443 (where AWS IoT tells MQTT from HTTPS by it) and nothing elsewhere;
    ``none`` offers nothing; any other value is offered as the one protocol."""
    if not url.tls or alpn == "none":
        return []
    if alpn == "auto":
        return [AWS_IOT_ALPN] if url.port == 443 else []
    return [alpn]


def tls_context(settings: Settings) -> ssl.SSLContext:
    """A client TLS context that verifies the broker (chain and host name: always on) and
    presents the client certificate, if any, offering ALPN per ``mqtt.alpn``."""
    s = settings
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=_path(s.mqtt_ca_file))
    except (OSError, ValueError) as exc:  # unreadable, or no certificate in it
        raise ConfigError(
            "OFFICESENSOR_MQTT_CA_FILE", f"cannot load CA certificates: {exc}"
        ) from None
    # create_default_context already requires a valid chain and checks the host name; said
    # again so no later change here can weaken it unnoticed.
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if s.mqtt_cert_file is not None:
        try:
            context.load_cert_chain(str(s.mqtt_cert_file), _path(s.mqtt_key_file))
        except (OSError, ValueError) as exc:
            raise ConfigError(
                "OFFICESENSOR_MQTT_CERT_FILE",
                f"cannot load the client certificate {s.mqtt_cert_file} with its key "
                f"{s.mqtt_key_file} (do they belong together?): {exc}",
            ) from None
    protocols = alpn_protocols(s.mqtt_alpn, s.mqtt_url)
    if protocols:
        context.set_alpn_protocols(protocols)
    return context


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)


def describe_connect_error(exc: BaseException, settings: Settings) -> str:
    """Why a connection attempt failed, in words that name the setting to check."""
    url = settings.mqtt_url
    if isinstance(exc, ssl.SSLCertVerificationError):
        problem = exc.verify_message or str(exc)
        if "mismatch" in problem.lower():
            hint = f"the certificate is not for {url.host}: mqtt.url must name a host it lists"
        else:
            hint = "check mqtt.ca_file: it must hold the CA that signed the broker's certificate"
        return f"the broker's TLS certificate was refused ({problem}); {hint}"
    if isinstance(exc, ssl.CertificateError):  # paho's own host name check, on old contexts
        return f"the broker's TLS certificate was refused ({exc}); mqtt.url must name its host"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {url.host}:{url.port} failed ({exc}){tls_hint(settings)}"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot connect to {url.host}:{url.port}: connection refused (check mqtt.url)"
    return f"cannot connect to {url.host}:{url.port}: {exc}"


def tls_hint(settings: Settings) -> str:
    if settings.mqtt_cert_file is None:
        return (
            "; if the broker requires a client certificate (AWS IoT Core does), "
            "set mqtt.cert_file and mqtt.key_file"
        )
    return "; check that the broker accepts the client certificate in mqtt.cert_file"


def connect(client: paho.Client, url: MqttUrl, *, persistent_session: bool = False) -> None:
    """Start connecting in the background (paho retries with back-off until it succeeds)."""
    kwargs: dict[str, Any] = {"keepalive": 30}
    if client.protocol == paho.MQTTv5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent_session:
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        properties.ReceiveMaximum = MAX_INFLIGHT
        kwargs["properties"] = properties
        kwargs["clean_start"] = not persistent_session
    client.connect_async(url.host, url.port, **kwargs)


def note_connected(client: paho.Client) -> None:
    """Call from ``on_connect`` on success: the connection counts as up from now."""
    if isinstance(client, Client):
        client.connect_error = None
        client.id_watch.connected()


def note_disconnected(client: paho.Client, reason: Any) -> str | None:
    """Call from ``on_disconnect``. Returns (and logs) an error when the broker took the
    session over for another connection with our client id (MQTT 5 reason 142), or the
    connection keeps dropping right after it is made (MQTT 3.1.1 has no reason)."""
    if not isinstance(client, Client):
        return None
    code = getattr(reason, "value", None)  # paho reports a lost connection as 128
    problem = client.id_watch.disconnected(
        taken_over=code == SESSION_TAKEN_OVER, lost=code is not None and code != 0
    )
    if problem is not None:
        log.error("MQTT %s: %s", client._settings.mqtt_url, problem)
        client.connect_error = problem
    return problem


def subscribe(client: paho.Client, packets: Sequence[Sequence[Subscription]]) -> list[int]:
    """Send one SUBSCRIBE per packet (MQTT 5 allows one subscription identifier per packet);
    returns their message ids, for matching the SUBACKs."""
    mids = []
    for packet in packets:
        properties = None
        identifier = packet[0].identifier
        if identifier is not None and client.protocol == paho.MQTTv5:
            properties = Properties(PacketTypes.SUBSCRIBE)  # type: ignore[no-untyped-call]
            properties.SubscriptionIdentifier = identifier
        topics = [(s.topic_filter, s.qos) for s in packet]
        _, mid = client.subscribe(topics, properties=properties)
        if mid is not None:
            mids.append(mid)
    return mids


def subscription_identifiers_available(properties: Any) -> bool:
    """From a CONNACK's properties: whether the broker sends subscription identifiers (MQTT 5
    says yes unless it says otherwise; AWS IoT Core says no)."""
    return bool(getattr(properties, "SubscriptionIdentifierAvailable", 1))


def subscription_identifiers(message: paho.MQTTMessage) -> list[int]:
    """The identifiers of the subscriptions that delivered ``message`` (MQTT 5; else [])."""
    ids = getattr(message.properties, "SubscriptionIdentifier", None)
    return list(ids) if ids else []


def reason_text(reason_code: Any) -> str:
    """Readable text of a paho ReasonCode or MQTTErrorCode."""
    if isinstance(reason_code, MQTTErrorCode):
        return paho.error_string(reason_code)
    return str(reason_code)


def network_loop_alive(client: paho.Client) -> bool:
    """Whether paho's network thread runs (paho clears ``_thread`` however the thread ends)."""
    thread = getattr(client, "_thread", None)
    return thread is not None and thread.is_alive()


def restart_network_loop(client: paho.Client, url: MqttUrl, *, persistent_session: bool) -> None:
    """Last resort after paho's network thread died: on a fresh connection (the broker then
    redelivers what the dead one left unacknowledged) with a new thread."""
    _close_wakeup_sockets(client)  # the dead loop's
    connect(client, url, persistent_session=persistent_session)
    client.loop_start()


def stop_network_loop(client: paho.Client) -> None:
    """Stop paho's network thread and close its wake-up socket pair, which paho itself closes
    only when the client object is garbage collected (too late, and in no set order)."""
    client.loop_stop()
    _close_wakeup_sockets(client)


def _close_wakeup_sockets(client: paho.Client) -> None:
    for name in ("_sockpairR", "_sockpairW"):
        sock = getattr(client, name, None)
        if sock is not None:
            sock.close()
            setattr(client, name, None)
