"""Viewer authentication and CSRF protection for every Flask route.

``install`` adds one ``before_request`` guard to the app:

1. **Who is asking.** ``Authorization: Bearer <auth.token>`` (scripts), else the signed
   session cookie set by ``/login`` (browsers; web/sessions.py). A wrong bearer token is a
   401 at once; it never falls back to the cookie.
2. **Authentication**, when a token or users file is configured: every route but
   ``PUBLIC_PATHS`` and ``/static/`` needs a viewer. ``/api/*`` (and ``/metrics``) answer
   401 JSON with ``WWW-Authenticate: Bearer``; pages redirect to ``/login?next=<path>``.
3. **CSRF**, always (a hostile page can post to 127.0.0.1 even when nothing is configured):
   POST, PUT, PATCH and DELETE must repeat the browser's CSRF cookie token (web/csrf.py, a
   double-submit token that every instance can check without a shared key), as the
   ``X-CSRF-Token`` header or the ``csrf_token`` form field, unless the request is
   authenticated by a bearer token (browsers never attach one by themselves, so it cannot be
   forged cross-site). Templates get the token from ``csrf_token()``.

``/login`` checks a name and password (users file) or the token. Failures are throttled
(web/throttle.py): a password per (client address, name), so people behind one proxy or NAT
do not lock each other out; the token per client address, with a higher limit.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from officesensor import users
from officesensor.config import Settings
from officesensor.web import csrf
from officesensor.web.sessions import TOKEN_USER, Credentials, configure, is_bearer
from officesensor.web.throttle import PASSWORD_MAX_FAILURES, TOKEN_MAX_FAILURES, LoginThrottle

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

EXTENSION_KEY = "officesensor.auth"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = csrf.HEADER
CSRF_FIELD = csrf.FIELD
REALM: dict[str, str | None] = {"realm": "Office Sensor"}
#: At most this many password checks run at once (each costs 32 MiB and ~0.1 s of scrypt).
CONCURRENT_CHECKS = 2


class Auth:
    """What the guard and the login view share: credentials, throttles, a check limiter.

    Password failures count per (client address, name): an attacker guessing one viewer's
    password waits after ``PASSWORD_MAX_FAILURES``, while everyone else behind the same
    address (a proxy, a NAT) signs in as usual. Token failures (bearer headers and the form
    without a name) count per address, up to ``TOKEN_MAX_FAILURES``; a correct token does not
    clear that count, or a script polling from the same address would reset a guesser's.
    """

    def __init__(self, settings: Settings) -> None:
        self.credentials = Credentials(settings.auth_token, settings.auth_users_file)
        self.password_throttle: LoginThrottle[tuple[str, str]] = LoginThrottle(
            PASSWORD_MAX_FAILURES
        )
        self.token_throttle: LoginThrottle[str] = LoginThrottle(TOKEN_MAX_FAILURES)
        self.checks = threading.BoundedSemaphore(CONCURRENT_CHECKS)

    def sign_in_wait(self, client: str, name: str, now: float) -> float:
        """Seconds a sign-in as ``name`` ("" for the token) from ``client`` must wait."""
        if name:
            return self.password_throttle.retry_after(_password_key(client, name), now)
        return self.token_throttle.retry_after(client, now)

    def sign_in_failed(self, client: str, name: str, now: float) -> None:
        if name:
            self.password_throttle.failure(_password_key(client, name), now)
        else:
            self.token_throttle.failure(client, now)

    def sign_in_succeeded(self, client: str, name: str) -> None:
        if name:
            self.password_throttle.success(_password_key(client, name))

    def stream_status(self, cookie: str | None, authorization: str | None, client: str) -> int:
        """For the live stream, served outside Flask (web/asgi.py): 200 when the request may
        go on, 401 without valid credentials, 429 while ``client`` is throttled."""
        if not self.credentials.required:
            return 200
        self.credentials.refresh()
        bearer = is_bearer(authorization)
        if bearer and self.token_throttle.retry_after(client, time.monotonic()):
            return 429
        if self.credentials.identify(cookie, authorization) is not None:
            return 200
        if bearer:
            self.token_throttle.failure(client, time.monotonic())
            log.warning("rejected a bearer token from %s for the live stream", client)
        return 401


def install(app: Flask, settings: Settings) -> Auth:
    state = Auth(settings)
    app.extensions[EXTENSION_KEY] = state
    configure(app, state.credentials)
    csrf.install(app)  # the Jinja global csrf_token() and the CSRF cookie
    app.register_blueprint(bp)
    app.before_request(_guard)
    app.jinja_env.globals["current_user"] = current_user
    return state


def auth_state(app: Flask | None = None) -> Auth:
    found = (app or current_app).extensions[EXTENSION_KEY]
    assert isinstance(found, Auth)
    return found


def csrf_token() -> str:
    """This browser's CSRF token (web/csrf.py; made on first use, kept in its own cookie)."""
    return csrf.token()


def current_user() -> str | None:
    user = g.get("user")
    return user if isinstance(user, str) else None


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this site, else "/": never an open redirect."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(c == "\\" or not c.isprintable() for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


# ----------------------------------------------------------------------------- the guard


def _guard() -> ResponseReturnValue | None:
    state = auth_state()
    credentials = state.credentials
    g.user, g.bearer = None, False
    authorization = request.headers.get("Authorization")
    if credentials.required:
        if is_bearer(authorization) and not _public():  # health checks answer whatever they send
            client = _client()
            wait_s = state.token_throttle.retry_after(client, time.monotonic())
            if wait_s:
                return _too_many(wait_s, client, "a bearer token")
            g.user = credentials.bearer_user(authorization)
            if g.user is None:
                state.token_throttle.failure(client, time.monotonic())
                log.warning("rejected a bearer token from %s for %s", client, request.path)
                return _unauthorized("The bearer token is not valid.")
            g.bearer = True
        elif credentials.valid_user(session.get("user")):
            g.user = session["user"]
        if g.user is None and not _public():
            return _unauthorized("Sign in to see this.")
    if request.routing_exception is not None:
        return None  # a 404 or 405 follows: no view runs, nothing to protect
    if request.method in UNSAFE_METHODS and not g.bearer and not csrf.request_ok():
        log.warning("refused %s %s from %s: CSRF token", request.method, request.path, _client())
        raise Forbidden("The form was stale or came from another site. Reload and try again.")
    return None


def _public() -> bool:
    return request.path in PUBLIC_PATHS or request.endpoint == "static"


def _client() -> str:
    return request.remote_addr or "unknown"


def _password_key(client: str, name: str) -> tuple[str, str]:
    # Longer names cannot exist (users.MAX_NAME_LENGTH); cutting them bounds the memory a
    # flood of long names could take, and they all fail alike.
    return (client, name[: users.MAX_NAME_LENGTH + 1])


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/metrics"


def _unauthorized(message: str) -> ResponseReturnValue:
    """A redirect to /login for a page, else 401 (JSON under /api/) with WWW-Authenticate."""
    if _wants_json() or request.method not in ("GET", "HEAD"):
        raise Unauthorized(message, www_authenticate=WWWAuthenticate("Bearer", REALM))
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _too_many(wait: float, client: str, shown: str) -> Response:
    wait_s = max(1, round(wait))
    log.warning("too many failed sign-ins as %s from %s: refused for %d s", shown, client, wait_s)
    if _wants_json() or request.path != "/login":
        response = jsonify(error=f"Too many failed attempts. Try again in {wait_s} s.")
    else:
        response = make_response(_login_page(f"Too many failed attempts. Try again in {wait_s} s."))
    response.status_code = 429
    response.headers["Retry-After"] = str(wait_s)
    return response


# ----------------------------------------------------------------------------- the views


@bp.get("/login")
def login() -> Any:
    credentials = auth_state().credentials
    target = safe_next(request.args.get("next"))
    if not credentials.required or current_user() is not None:
        return redirect(target)
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        # A link from another site (chat, e-mail): the browser withheld the SameSite=Strict
        # cookie, so we cannot tell whether this viewer is signed in. Don't start a new
        # session (it would replace theirs); one click from here is same-site.
        return render_template("login.html", nav=[], next=target, cross_site=True)
    return _login_page(None)


@bp.post("/login")
def login_submit() -> Any:
    state = auth_state()
    credentials, client = state.credentials, _client()
    if not credentials.required:
        return redirect("/")
    name = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    shown = repr(name[:64]) if name else "the token"  # repr: no line breaks in the log
    wait_s = state.sign_in_wait(client, name, time.monotonic())
    if wait_s:
        return _too_many(wait_s, client, shown)
    with state.checks:
        if name:
            ok = credentials.check_password(name, password)
        else:
            ok = credentials.check_token(password)
    if not ok:
        state.sign_in_failed(client, name, time.monotonic())
        log.warning("failed sign-in as %s from %s", shown, client)
        response = make_response(_login_page("Wrong name or password."))
        response.status_code = 401
        return response
    state.sign_in_succeeded(client, name)
    log.info("signed in as %s from %s", shown, client)
    session.clear()  # a new session: nothing from before signing in carries over
    session["user"] = name or TOKEN_USER
    session.permanent = True
    csrf.renew()
    return redirect(safe_next(request.args.get("next")))


@bp.post("/logout")
def logout() -> Any:
    if current_user() is not None:
        log.info("signed out %s from %s", current_user(), _client())
    session.clear()
    csrf.renew()
    return redirect(url_for("auth.login") if auth_state().credentials.required else "/")


def _login_page(error: str | None) -> str:
    credentials = auth_state().credentials
    return render_template(
        "login.html",
        nav=[],
        next=safe_next(request.args.get("next")),
        error=error,
        users=credentials.users_file is not None,
        token=credentials.token is not None,
        cross_site=False,
    )
