"""Runs the long-lived parts together and stops them in the right order.

``serve`` = ingest + web + alerts (alerts/service.py); ``demo`` adds the embedded broker and a
simulated sensor. Shutdown (Ctrl-C or SIGTERM) goes from the edges in: the sensor stops
publishing, ingest commits and acknowledges what it received, the web server closes, the
alert service saves what it evaluated, the store closes, the broker stops.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

from officesensor.alerts.service import AlertService
from officesensor.config import Settings
from officesensor.errors import ConfigError
from officesensor.ingest import Ingest
from officesensor.store import Store

if TYPE_CHECKING:
    from officesensor.web.asgi import StreamApp

log = logging.getLogger(__name__)

#: Seconds the web server waits for requests in progress when stopping.
HTTP_STOP_TIMEOUT_S = 5


class WebServer:
    """uvicorn serving the ASGI app (web/asgi.py) on its own thread and event loop.

    The socket is bound in the constructor, so a busy port fails at once, naming the setting.
    ``close`` ends the live streams first (they would otherwise hold the shutdown open), then
    lets requests in progress finish.
    """

    def __init__(self, app: StreamApp, settings: Settings) -> None:
        import uvicorn

        from officesensor.web.ops import measure_requests

        self.app = app
        self.socket = _bind(settings)
        config = uvicorn.Config(
            measure_requests(app),  # every request timed for /metrics
            lifespan="on",
            log_config=None,  # our logging setup stays in charge
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=HTTP_STOP_TIMEOUT_S,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._failed: BaseException | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}/"

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start: {self._failed!r}")
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self.socket]))
        except BaseException as exc:  # reported by start() or close()
            self._failed = exc
            log.exception("web server stopped with an error")

    def close(self) -> None:
        self.app.hub.close()
        self._server.should_exit = True
        self._thread.join(HTTP_STOP_TIMEOUT_S + 5)
        self.socket.close()


def _bind(settings: Settings) -> socket.socket:
    family = socket.AF_INET6 if ":" in settings.http.host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say TCP, and
    # without it a keep-alive response written in two parts waits for a delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.http.host, settings.http.port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                "OFFICESENSOR_HTTP",
                f"{settings.http} is already in use; choose another address with --http HOST:PORT",
            ) from None
        raise ConfigError(
            "OFFICESENSOR_HTTP", f"cannot listen on {settings.http}: {exc.strerror}"
        ) from None
    sock.set_inheritable(True)
    return sock


def make_web_server(
    settings: Settings, store: Store, ingest: Ingest | None, alerts: AlertService | None = None
) -> WebServer:
    """The dashboard over ``store``, bound but not started; live events come from ``ingest``,
    alerts from the alert service ``alerts``."""
    from officesensor.exposure import check_exposure
    from officesensor.web import create_app
    from officesensor.web.asgi import StreamApp
    from officesensor.web.events import EventHub

    check_exposure(settings)  # the CLI checks first, naming the setting; this guards any caller
    hub = EventHub(settings.z)
    if ingest is not None:
        ingest.add_listener(hub.publish)
        ingest.add_status_listener(hub.publish_status)
    return WebServer(StreamApp(create_app(settings, store, ingest, alerts), hub), settings)


def install_stop_signals(stop: threading.Event) -> None:
    """SIGINT and SIGTERM set ``stop`` instead of interrupting whatever runs."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def wait_until(stop: threading.Event) -> None:
    """Block until ``stop`` is set (by the handlers ``install_stop_signals`` put in place)."""
    while not stop.wait(1.0):  # a timed wait lets the signal handler run promptly
        pass


def serve(
    settings: Settings,
    *,
    announce: Callable[[str], None] = log.info,
    on_started: Callable[[Ingest], None] | None = None,
    stop_first: Sequence[Callable[[], None]] = (),
    stop_last: Sequence[Callable[[], None]] = (),
) -> int:
    """Ingest + web until a signal. The demo starts its sensor in ``on_started``; the sensor
    stops first and the demo's broker last."""
    from officesensor.store import open_store

    store = open_store(settings.store, settings.tz)
    alerts: AlertService | None = None
    try:
        ingest = Ingest(settings, store)
        alerts = AlertService(settings, store)  # rules judge ingest's readings (alerts/)
        ingest.add_listener(alerts.on_analysed)
        ingest.add_status_listener(alerts.on_status)
        server = make_web_server(settings, store, ingest, alerts)
    except BaseException:
        if alerts is not None:
            alerts.stop()
        store.close()
        raise
    stop = threading.Event()
    install_stop_signals(stop)
    stops = [*stop_first, ingest.stop, server.close, alerts.stop, store.close, *stop_last]
    try:
        server.start()
        alerts.start()
        ingest.start()
        if on_started is not None:
            on_started(ingest)
        announce(f"Office Sensor dashboard: {server.url}")
        wait_until(stop)
        log.info("shutting down")
    finally:
        for callback in stops:
            try:
                callback()
            except Exception:
                log.exception("error while shutting down (continuing)")
    return 0
