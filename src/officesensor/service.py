"""Runs the long-lived parts together and stops them in the right order.

``serve`` = ingest + web; ``demo`` adds the embedded broker and a simulated sensor. Shutdown
(Ctrl-C or SIGTERM) goes from the edges in: the sensor stops publishing, ingest commits and
acknowledges what it received, the web server closes, the broker stops, the store closes.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from officesensor.config import Settings
from officesensor.errors import ConfigError
from officesensor.ingest import Ingest

log = logging.getLogger(__name__)

HTTP_THREADS = 16


def make_http_server(app: Any, settings: Settings) -> Any:
    """A waitress server bound now (so a busy port fails fast, naming the setting)."""
    from waitress.server import create_server

    try:
        return create_server(
            app,
            host=settings.http.host,
            port=settings.http.port,
            threads=HTTP_THREADS,
            ident="officesensor",
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                "OFFICESENSOR_HTTP",
                f"{settings.http} is already in use; choose another address with --http HOST:PORT",
            ) from None
        raise ConfigError(
            "OFFICESENSOR_HTTP", f"cannot listen on {settings.http}: {exc.strerror}"
        ) from None


def http_url(server: Any) -> str:
    host, port = server.socket.getsockname()[:2]
    return f"http://{host}:{port}/"


def run_until_signalled(server: Any, stop_callbacks: list[Callable[[], None]]) -> None:
    """Serve HTTP in this (main) thread until SIGINT/SIGTERM, then run the stop callbacks."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: shutting down", signal.Signals(signum).name)
        raise KeyboardInterrupt

    # Both set explicitly: a process started in the background inherits SIGINT ignored.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()  # waitress returns when KeyboardInterrupt reaches its loop
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for stop in stop_callbacks:
            try:
                stop()
            except Exception:
                log.exception("error while shutting down (continuing)")


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
    from officesensor.web import create_app

    store = open_store(settings.store)
    try:
        ingest = Ingest(settings, store)
        server = make_http_server(create_app(settings, store, ingest), settings)
    except BaseException:
        store.close()
        raise
    ingest.start()
    if on_started is not None:
        on_started(ingest)
    announce(f"Office Sensor dashboard: {http_url(server)}")
    stops = [
        *stop_first,
        ingest.stop,
        server.close,
        server.task_dispatcher.shutdown,
        store.close,
        *stop_last,
    ]
    run_until_signalled(server, stops)
    return 0
