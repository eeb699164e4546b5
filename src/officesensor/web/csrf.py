"""CSRF tokens: a double-submit token in a cookie of its own, valid on every instance.

A state-changing request must repeat, in the ``X-CSRF-Token`` header or the ``csrf_token``
form field, the token that the browser's CSRF cookie holds. A hostile page elsewhere can
make the browser send a request, but it cannot read this site's cookie or pages, so it
cannot repeat the token; and since the cookie is ``SameSite=Strict``, the browser does not
even send it along with a request that another site started.

Why not keep the token in the signed session, as before: with no auth configured, each
process signs sessions with a random key of its own (web/sessions.py), so behind a load
balancer a form rendered by one instance was refused by the next (403). The double-submit
check needs no key: any instance compares the two values it receives. Sign-in sessions stay
signed as they are.

The cookie: 32 random bytes (``secrets``), ``HttpOnly`` (the pages carry the token in a
field, so scripts never need the cookie), ``SameSite=Strict``, ``Path=/``, kept for
``LIFETIME`` and renewed by every page that renders the token. Over https it is ``Secure``
and named with the ``__Host-`` prefix, which browsers accept only from a secure origin,
for the whole host, without ``Domain``: a neighbouring subdomain or a man in the middle on
plain http cannot plant a token of their choosing. Signing in and out starts a new token.

The Jinja global ``csrf_token()`` (``token``) works with and without auth.
"""

from __future__ import annotations

import hmac
import re
import secrets

from flask import Flask, Response, g, request

from officesensor.web.sessions import SESSION_LIFETIME

COOKIE_NAME = "officesensor_csrf"
#: The name over https: ``__Host-`` makes browsers insist on Secure, Path=/ and no Domain.
SECURE_COOKIE_NAME = "__Host-" + COOKIE_NAME
HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
TOKEN_BYTES = 32
LIFETIME = SESSION_LIFETIME
_WELL_FORMED = re.compile(r"[A-Za-z0-9_-]{43}")  # token_urlsafe(32): 43 characters
_G_ATTR = "officesensor_csrf"  # where g keeps this request's value


def token() -> str:
    """This browser's CSRF token: the cookie's, or a new one that this response will set."""
    current = g.get(_G_ATTR)
    if not isinstance(current, str):
        current = _from_cookie() or secrets.token_urlsafe(TOKEN_BYTES)
        setattr(g, _G_ATTR, current)
    return current


def renew() -> None:
    """Start a new token (on signing in and out): this response sets it."""
    setattr(g, _G_ATTR, secrets.token_urlsafe(TOKEN_BYTES))


def request_ok() -> bool:
    """Whether this request repeats its CSRF cookie's token (compared in constant time)."""
    expected = _from_cookie()
    given = request.headers.get(HEADER) or request.form.get(FIELD)
    if expected is None or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def cookie_name() -> str:
    return SECURE_COOKIE_NAME if request.is_secure else COOKIE_NAME


def install(app: Flask) -> None:
    app.jinja_env.globals["csrf_token"] = token
    app.after_request(_set_cookie)


def _from_cookie() -> str | None:
    value = request.cookies.get(cookie_name())
    return value if value is not None and _WELL_FORMED.fullmatch(value) else None


def _set_cookie(response: Response) -> Response:
    """Set (or renew) the cookie when this response used or started a token."""
    current = g.get(_G_ATTR)
    if isinstance(current, str):
        response.set_cookie(
            cookie_name(),
            current,
            max_age=int(LIFETIME.total_seconds()),
            path="/",
            secure=request.is_secure,
            httponly=True,
            samesite="Strict",
        )
        response.vary.add("Cookie")
    return response
