"""The one place that configures paho-mqtt clients (protocol, session, TLS, reconnects).

paho stays at the edge: ingest and the sensor publisher get a configured client from here and
keep their callbacks small and exception-proof (an exception escaping a paho callback ends the
network thread silently).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from officesensor.config import MqttUrl

log = logging.getLogger(__name__)

#: How long the broker keeps our session (subscriptions, unacknowledged messages) after a
#: disconnect, for MQTT 5. MQTT 3.1.1 sessions with clean_session=false never expire by spec.
SESSION_EXPIRY_S = 7 * 24 * 3600
RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30

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


def make_client(
    url: MqttUrl,
    client_id: str,
    *,
    protocol: str = "5",
    persistent_session: bool = False,
    manual_ack: bool = False,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> paho.Client:
    """A paho client set up for ``url``; call ``connect(client, ...)`` then ``loop_start``."""
    v5 = protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else not persistent_session,
        manual_ack=manual_ack,
        reconnect_on_failure=True,
    )
    client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
    if url.tls:
        # Verification is always on: there is deliberately no setting that turns it off.
        client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file)
    if url.username:
        client.username_pw_set(url.username, url.password)
    return client


def connect(client: paho.Client, url: MqttUrl, *, persistent_session: bool = False) -> None:
    """Start connecting in the background (paho retries with back-off until it succeeds)."""
    kwargs: dict[str, Any] = {"keepalive": 30}
    if client.protocol == paho.MQTTv5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if persistent_session:
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
        kwargs["properties"] = properties
        kwargs["clean_start"] = not persistent_session
    client.connect_async(url.host, url.port, **kwargs)


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
