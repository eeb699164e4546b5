"""Every HTTP request timed, for ``officesensor_http_request_duration_seconds`` on /metrics.

``HttpMetricsMiddleware`` wraps the whole ASGI application (``service.WebServer`` hands it
to uvicorn), so it sees pages, the API, static files, the live stream and requests that an
outer layer refuses. Labels are bounded whatever clients send:

- ``method``: the usual verbs, anything else ``other``;
- ``route``: the Flask rule that answered (``/<metric>``, ``/api/readings``, ...), written into
  the ASGI scope by a hook in ``web/ops.py`` (a2wsgi puts the scope in the WSGI environ as
  ``asgi.scope``); ``/api/stream`` for the live stream; ``unmatched`` for everything else;
  never the raw path, which any client could make unique;
- ``status``: the class, ``2xx`` .. ``5xx``.

A live stream stays open for hours: its observation is the time until its response starts
(the connect), not its lifetime. Other requests are timed until their last byte is handed to
the server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from officesensor.histogram import Histogram, HistogramSnapshot

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The key under which the route template travels in the ASGI scope.
ROUTE_KEY = "officesensor.route"
UNMATCHED = "unmatched"
STREAM_ROUTE = "/api/stream"  # = web.asgi.STREAM_PATH (not imported: asgi imports Flask)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

#: Prometheus' default buckets: from a cached asset (~1 ms) to a cold chart page (~100 ms)
#: and a year of statistics (seconds).
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelKey = tuple[str, str, str]  # method, route, status class


class HttpRequestMetrics:
    """One histogram per (method, route, status class), created on first use."""

    def __init__(self) -> None:
        self._histograms: dict[LabelKey, Histogram] = {}
        self._lock = threading.Lock()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (
            method if method in METHODS else "other",
            route,
            f"{status // 100}xx" if 100 <= status <= 599 else "other",
        )
        histogram = self._histograms.get(key)
        if histogram is None:
            with self._lock:
                histogram = self._histograms.setdefault(key, Histogram(HTTP_BUCKETS_S))
        histogram.observe(seconds)

    def snapshot(self) -> list[tuple[dict[str, str], HistogramSnapshot]]:
        """Label sets and their counts, in a stable order."""
        with self._lock:
            items = sorted(self._histograms.items())
        return [
            ({"method": method, "route": route, "status": status}, histogram.snapshot())
            for (method, route, status), histogram in items
        ]


class HttpMetricsMiddleware:
    """Times every HTTP request of ``app`` into ``metrics``; lifespan passes through."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: HttpRequestMetrics,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = self._clock()
        is_stream = scope.get("path") == STREAM_ROUTE
        status = 0  # no response started yet
        observed = False

        def observe(code: int) -> None:
            nonlocal observed
            if not observed:
                observed = True
                route = STREAM_ROUTE if is_stream else scope.get(ROUTE_KEY, UNMATCHED)
                self.metrics.observe(scope["method"], route, code, self._clock() - started)

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if is_stream:
                    observe(status)  # the connect; the stream may then stay open for hours
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except BaseException:
            observe(status or 500)  # the server answers 500 if nothing was sent yet
            raise
        observe(status or 500)
