"""The process's HTTP application: Flask for pages and the API, asyncio for live streams.

A Server-Sent Events stream stays open for hours; served by WSGI it would hold a worker
thread for all that time, so 200 open dashboards would need 200 threads. Instead uvicorn
runs this ASGI app: ``/api/stream`` is a coroutine on the event loop (an open stream costs a
queue and a few KB, no thread), and every other request goes to the Flask app on a pool of
``HTTP_THREADS`` threads (a2wsgi), which the streams never occupy.

A stream sends ``event: reading`` messages whose ``data`` is the reading as JSON (the fields
of ``/api/readings`` rows plus sensor, metric and unit) and whose ``id`` is the newest reading
time sent so far, in epoch microseconds. A browser that reconnects sends it back as
``Last-Event-ID`` (or ``?last_event_id=``) and first receives, from the store, the readings
stored after it that it missed (up to ``REPLAY_LIMIT`` per series, reaching back by the
clock skew ingest accepts, so a sensor whose clock runs behind another's loses nothing; the
page script skips readings it already shows).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from a2wsgi import WSGIMiddleware
from flask import Flask

from officesensor.errors import StoreError
from officesensor.models import from_epoch_us
from officesensor.payload import PayloadRules
from officesensor.web import SECURITY_HEADERS
from officesensor.web.auth import auth_state
from officesensor.web.context import EXTENSION_KEY, WebContext
from officesensor.web.events import EventHub, LiveEvent, Subscription, reading_event
from officesensor.web.series import analyse_range, finite_or_none

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HTTP_THREADS = 16
STREAM_PATH = "/api/stream"
HEARTBEAT_S = 15.0
RETRY_MS = 2_000
REPLAY_LIMIT = 5_000
REPLAY_MAX_AGE = timedelta(days=1)
REPLAY_SKEW = PayloadRules().max_future_skew
MAX_NAME_LENGTH = 256


class StreamApp:
    """The ASGI application: see the module docstring."""

    def __init__(self, flask_app: Flask, hub: EventHub) -> None:
        self.flask_app = flask_app
        self.hub = hub
        self.wsgi = WSGIMiddleware(flask_app, workers=HTTP_THREADS)  # type: ignore[arg-type]
        context = flask_app.extensions[EXTENSION_KEY]
        assert isinstance(context, WebContext)
        self.context = context
        self.auth = auth_state(flask_app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and scope["path"] == STREAM_PATH:
            if await self._authorized(scope, send):
                await self._stream(scope, receive, send)
        else:
            await self.wsgi(scope, receive, send)  # type: ignore[arg-type]

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.hub.attach(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.hub.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _authorized(self, scope: Scope, send: Send) -> bool:
        """The same session cookie or bearer token as every Flask route (web/auth.py)."""
        cookies, authorization = [], None
        for key, value in scope["headers"]:
            if key == b"cookie":
                cookies.append(value.decode("latin-1"))
            elif key == b"authorization":
                authorization = value.decode("latin-1")
        client = (scope.get("client") or ("unknown",))[0]
        status = self.auth.stream_status("; ".join(cookies), authorization, client)
        if status == 401:
            challenge = [(b"www-authenticate", b'Bearer realm="Office Sensor"')]
            await _json_response(send, 401, {"error": "Sign in to see this."}, challenge)
        elif status == 429:
            await _json_response(send, 429, {"error": "Too many failed attempts."})
        return status == 200

    # ------------------------------------------------------------------ the stream

    async def _stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _json_response(send, 405, {"error": "use GET"}, [(b"allow", b"GET, HEAD")])
            return
        try:
            sensor, metric, resume_after = _stream_params(scope)
        except _BadParameter as exc:
            await _json_response(send, 400, {"error": exc.message, "parameter": exc.parameter})
            return
        headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-store"),
            (b"x-accel-buffering", b"no"),  # tell nginx-style proxies not to buffer
            *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        subscription = self.hub.subscribe(sensor, metric)
        disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await self._run_stream(subscription, send, disconnected, resume_after)
        finally:
            self.hub.unsubscribe(subscription)
            disconnected.cancel()

    async def _run_stream(
        self,
        subscription: Subscription,
        send: Send,
        disconnected: asyncio.Future[None],
        resume_after: int | None,
    ) -> None:
        newest = resume_after or 0
        sent: dict[tuple[str, str], int] = {}  # newest reading time sent per series
        await _send_text(send, f"retry: {RETRY_MS}\n: connected\n\n")
        if resume_after is not None:
            try:
                missed = await asyncio.to_thread(self._missed, subscription, resume_after)
            except StoreError as exc:
                log.warning("live stream: could not replay missed readings: %s", exc)
                missed = []
            newest = await self._send_events(send, missed, sent, newest)
        while not disconnected.done():
            getter = asyncio.ensure_future(subscription.queue.get())
            done, _ = await asyncio.wait(
                (getter, disconnected), timeout=HEARTBEAT_S, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if not disconnected.done():
                    await _send_text(send, ": keep-alive\n\n")
                continue
            batch: list[LiveEvent | None] = [getter.result()]
            while not subscription.queue.empty() and batch[-1] is not None:
                batch.append(subscription.queue.get_nowait())
            events = [event for event in batch if event is not None]
            newest = await self._send_events(send, events, sent, newest)
            if batch[-1] is None:  # shutting down, or this client fell too far behind
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_events(
        self, send: Send, events: list[LiveEvent], sent: dict[tuple[str, str], int], newest: int
    ) -> int:
        chunks = []
        for event in events:
            if event.metric is None:  # a status event: not part of the replayable sequence
                chunks.append(f"event: {event.kind}\ndata: {event.data}\n\n")
                continue
            key = (event.sensor, event.metric)
            if event.id <= sent.get(key, -1):
                continue  # replayed already
            sent[key] = event.id
            newest = max(newest, event.id)
            chunks.append(f"event: reading\nid: {newest}\ndata: {event.data}\n\n")
        if chunks:
            await _send_text(send, "".join(chunks))
        return newest

    def _missed(self, subscription: Subscription, after_us: int) -> list[LiveEvent]:
        """Readings stored after ``after_us`` (at most a day back), oldest first."""
        store, settings = self.context.store, self.context.settings
        now = datetime.now(UTC)
        # The id is the newest reading time sent on any series; another sensor's readings
        # may be stamped up to the accepted clock skew earlier and still arrive later: reach
        # back that far (the page skips what it already shows).
        start = max(from_epoch_us(after_us + 1) - REPLAY_SKEW, now - REPLAY_MAX_AGE)
        end = now + REPLAY_SKEW + timedelta(seconds=1)  # readings may be stamped ahead
        events: list[LiveEvent] = []
        for info in store.series():
            if (subscription.sensor or info.sensor) != info.sensor:
                continue
            if (subscription.metric or info.metric) != info.metric:
                continue
            if info.latest is None or info.latest.ts < start:
                continue
            data = analyse_range(
                store, info.sensor, info.metric, start, end, settings.window, settings.z,
                limit=REPLAY_LIMIT, method=settings.anomaly_method,
            )  # fmt: skip
            stats = data.stats
            for i, reading in enumerate(data.readings):
                events.append(
                    reading_event(
                        reading,
                        finite_or_none(stats.mean[i]),
                        finite_or_none(stats.std[i]),
                        finite_or_none(stats.z[i]),
                        bool(stats.anomaly[i]),
                        settings.z,
                    )
                )
        events.sort(key=lambda e: e.id)
        return events


class _BadParameter(Exception):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def _stream_params(scope: Scope) -> tuple[str | None, str | None, int | None]:
    try:
        query = parse_qs(scope.get("query_string", b"").decode(), strict_parsing=False)
    except UnicodeDecodeError:
        raise _BadParameter("query", "the query string must be UTF-8") from None
    names = {}
    for name in ("sensor", "metric"):
        value = query.get(name, [""])[0]
        if len(value) > MAX_NAME_LENGTH or not value.isprintable():
            raise _BadParameter(
                name, f"{name} must be at most {MAX_NAME_LENGTH} printable characters"
            )
        names[name] = value or None
    raw = query.get("last_event_id", [""])[0]
    for key, value in scope.get("headers", []):
        if key == b"last-event-id":
            raw = value.decode("latin-1")
    resume_after = None
    if raw:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19):
            raise _BadParameter("last_event_id", "last_event_id must be a whole number")
        resume_after = int(raw)
    return names["sensor"], names["metric"], resume_after


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_text(send: Send, text: str) -> None:
    await send({"type": "http.response.body", "body": text.encode(), "more_body": True})


async def _json_response(
    send: Send,
    status: int,
    body: dict[str, str],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
