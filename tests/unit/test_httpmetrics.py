"""HttpMetricsMiddleware over small ASGI apps, with a clock the test moves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from officesensor.histogram import Histogram
from officesensor.web.httpmetrics import (
    ROUTE_KEY,
    UNMATCHED,
    HttpMetricsMiddleware,
    HttpRequestMetrics,
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run(app: Any, path: str = "/x", method: str = "GET") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path}
    asyncio.run(app(scope, receive, send))
    return sent


def counts(metrics: HttpRequestMetrics) -> dict[tuple[str, str, str], tuple[int, float]]:
    return {
        (labels["method"], labels["route"], labels["status"]): (snap.count, snap.total)
        for labels, snap in metrics.snapshot()
    }


def flask_like(clock: Clock, status: int, route: str | None, seconds: float) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if route is not None:
            scope[ROUTE_KEY] = route  # what web/ops.py's hook does through the environ
        clock.now += seconds
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def test_a_request_is_timed_under_its_route_template():
    clock, metrics = Clock(), HttpRequestMetrics()
    app = HttpMetricsMiddleware(flask_like(clock, 200, "/<metric>", 0.25), metrics, clock=clock)
    assert [m["type"] for m in run(app, "/temperature")] == [
        "http.response.start",
        "http.response.body",
    ]
    run(app, "/humidity", method="HEAD")
    assert counts(metrics) == {
        ("GET", "/<metric>", "2xx"): (1, 0.25),
        ("HEAD", "/<metric>", "2xx"): (1, 0.25),
    }


def test_unknown_paths_and_methods_collapse_into_one_label_each():
    clock, metrics = Clock(), HttpRequestMetrics()
    app = HttpMetricsMiddleware(flask_like(clock, 404, None, 0.0), metrics, clock=clock)
    for i in range(50):
        run(app, f"/random/{i}", method="GET" if i % 2 else f"X{i}")
    assert counts(metrics) == {
        ("GET", UNMATCHED, "4xx"): (25, 0.0),
        ("other", UNMATCHED, "4xx"): (25, 0.0),
    }


def test_a_live_stream_is_timed_until_it_connects_not_for_its_lifetime():
    clock, metrics = Clock(), HttpRequestMetrics()

    async def stream(scope: Any, receive: Any, send: Any) -> None:
        clock.now += 0.01
        await send({"type": "http.response.start", "status": 200, "headers": []})
        clock.now += 3600.0  # an hour of events
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    run(HttpMetricsMiddleware(stream, metrics, clock=clock), "/api/stream")
    ((key, (count, total)),) = counts(metrics).items()
    assert key == ("GET", "/api/stream", "2xx")
    assert count == 1
    assert total == pytest.approx(0.01)


def test_an_app_that_fails_before_answering_counts_as_5xx():
    clock, metrics = Clock(), HttpRequestMetrics()

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        run(HttpMetricsMiddleware(broken, metrics, clock=clock))
    assert counts(metrics) == {("GET", UNMATCHED, "5xx"): (1, 0.0)}


def test_lifespan_passes_through_untimed():
    metrics = HttpRequestMetrics()
    seen = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def noop(*_: Any) -> Any:
        return {"type": "lifespan.startup"}

    asyncio.run(HttpMetricsMiddleware(app, metrics)({"type": "lifespan"}, noop, noop))
    assert seen == ["lifespan"]
    assert metrics.snapshot() == []


def test_histogram_bucket_edges_follow_le():
    histogram = Histogram([0.1, 1.0])
    for value in (0.1, 0.1000001, 1.0, 7.0):
        histogram.observe(value)
    assert histogram.snapshot().counts == (1, 2, 1)  # 0.1 <= 0.1; 1.0 <= 1.0


@pytest.mark.parametrize("bounds", [[], [1.0, 1.0], [2.0, 1.0], [1.0, float("inf")]])
def test_histogram_refuses_bad_bounds(bounds):
    with pytest.raises(ValueError, match="ascending"):
        Histogram(bounds)
