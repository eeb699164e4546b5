"""Real endpoints for the alert tests: a webhook HTTP server in a thread with a scripted
answer per attempt, and an MQTT subscriber that records every alert message."""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from officesensor.mqtt import stop_network_loop
from tests.integration.conftest import Broker, wait_for


@dataclass
class Attempt:
    status: int
    path: str
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Webhook:
    """Answers POSTs: the first ``fail_first`` with ``failure``, then 2xx (or ``failure``
    forever when ``always_fail``); ``delay_s`` before answering (for timeouts)."""

    def __init__(
        self,
        fail_first: int = 0,
        failure: int = 503,
        *,
        always_fail: bool = False,
        delay_s: float = 0.0,
    ) -> None:
        self.fail_first = fail_first
        self.failure = failure
        self.always_fail = always_fail
        self.delay_s = delay_s
        self.attempts: list[Attempt] = []
        self._lock = threading.Lock()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with hook._lock:
                    failing = hook.always_fail or len(hook.attempts) < hook.fail_first
                    status = hook.failure if failing else 200
                    hook.attempts.append(
                        Attempt(status, self.path, self.headers.get("Content-Type", ""), body)
                    )
                if hook.delay_s:
                    time.sleep(hook.delay_s)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"

    def delivered(self) -> list[Any]:
        with self._lock:
            return [a.json() for a in self.attempts if 200 <= a.status < 300]

    def count(self) -> int:
        with self._lock:
            return len(self.attempts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class AlertMessage:
    topic: str
    body: dict[str, Any]
    qos: int
    retain: bool


class AlertWatcher:
    """Subscribed to ``office/alerts/#`` (QoS 1) before anything is published."""

    def __init__(self, broker: Broker, prefix: str = "office/alerts") -> None:
        protocol = paho.MQTTv5 if broker.protocol == "5" else paho.MQTTv311
        self.messages: list[AlertMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-alerts-{os.getpid()}", protocol=protocol
        )
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe(f"{prefix}/#", qos=1)
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the alert watcher did not subscribe"

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        item = AlertMessage(message.topic, json.loads(message.payload), message.qos, message.retain)
        with self._lock:
            self.messages.append(item)

    def received(self, topic: str | None = None) -> list[AlertMessage]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    def wait(self, count: int, topic: str | None = None, timeout_s: float = 30) -> list[Any]:
        """The first ``count`` messages (on ``topic``), once they are in."""
        found = wait_for(
            lambda: len(self.received(topic)) >= count and self.received(topic),
            timeout_s,
            f"{count} alert message(s) on {topic or 'office/alerts/#'}",
        )
        return list(found)

    def close(self) -> None:
        self.client.disconnect()
        stop_network_loop(self.client)
