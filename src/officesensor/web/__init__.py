"""The web dashboard: HTML pages, the JSON API, /healthz and /metrics, as one Flask app.

``create_app`` is the only entry point; ``web/asgi.py`` wraps it with the live stream and
``service.WebServer`` serves that with uvicorn.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, make_response, render_template, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException, InternalServerError

from officesensor.config import Settings
from officesensor.errors import StoreError
from officesensor.store import Store
from officesensor.web import alerts as alerts_web
from officesensor.web import api, assets, auth, ops, pages, security
from officesensor.web.context import EXTENSION_KEY, AlertsProbe, IngestProbe, WebContext
from officesensor.web.series import KNOWN_METRICS

__all__ = ["CONTENT_SECURITY_POLICY", "IngestProbe", "create_app"]

log = logging.getLogger(__name__)

#: Everything comes from this app. Scripts: only files from here, no inline script and no eval
#: (the chart's data travels in a JSON block that static/officesensor.js embeds, and BokehJS
#: evaluates code only for CustomJS models, which we do not use). Styles: no 'unsafe-inline';
#: HTML pages add a per-response nonce for BokehJS's <style> elements (web/security.py).
#: (tests/browser fails on any CSP violation.)
CONTENT_SECURITY_POLICY = security.content_security_policy()
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class StrictJSONProvider(DefaultJSONProvider):
    """JSON that keeps the handlers' key order and refuses NaN (invalid JSON) outright."""

    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        return super().dumps(obj, **kwargs)


def create_app(
    settings: Settings,
    store: Store,
    ingest: IngestProbe | None = None,
    alerts: AlertsProbe | None = None,
) -> Flask:
    """The dashboard over ``store``; ``ingest`` and ``alerts`` (the alert service) are those
    running in this process, or None."""
    app = Flask(__name__)
    # Flask takes its default from the environment; the dashboard never runs in debug mode (it
    # would show tracebacks and source to anyone who triggers an error).
    app.debug = False
    app.json = StrictJSONProvider(app)
    app.extensions[EXTENSION_KEY] = WebContext(
        settings=settings, store=store, ingest=ingest, alerts=alerts
    )
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(alerts_web.bp)
    if alerts is not None:
        ops.add_metrics_source(app, alerts.metrics_lines)  # alert counters on /metrics
    app.before_request(_start_timer)
    app.after_request(_add_security_headers)
    auth.install(app, settings)  # sign-in and CSRF on every route (web/auth.py)
    security.install(app)  # the nonced Content-Security-Policy of HTML pages
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(StoreError, _store_error)
    app.register_error_handler(InternalServerError, _internal_error)
    app.jinja_env.globals["bokeh_script_urls"] = assets.bokeh_script_urls
    # BokehJS reads a document's objects in order (definition before reference): keep it.
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    return app


def _start_timer() -> None:
    g.started = time.perf_counter()


def _add_security_headers(response: Response) -> Response:
    started = g.get("started")
    if started is not None:  # the app's own time, for browsers' dev tools and benchmarks
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.blueprint != "bokeh" and request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz", "/metrics")


def _error_response(status: int, title: str, message: str) -> tuple[Response | str, int]:
    if _wants_json():
        return jsonify(error=message), status
    nav = pages.nav_links(KNOWN_METRICS, current="")
    return render_template("error.html", status=status, title=title, message=message, nav=nav), (
        status
    )


def _http_error(exc: HTTPException) -> Response | HTTPException:
    if exc.code is None or exc.code < 400:
        return exc
    response = make_response(_error_response(exc.code, exc.name, exc.description or exc.name))
    for name, value in exc.get_headers():  # e.g. Allow on 405
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


def _store_error(exc: StoreError) -> tuple[Response | str, int]:
    log.error("store failed during %s %s: %s", request.method, request.path, exc)
    return _error_response(503, "Store unavailable", "The store is not answering. Try again soon.")


def _internal_error(exc: InternalServerError) -> tuple[Response | str, int]:
    original = exc.original_exception or exc
    log.error("error during %s %s", request.method, request.path, exc_info=original)
    return _error_response(500, "Internal error", "Something went wrong on our side.")
