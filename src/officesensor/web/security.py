"""The Content-Security-Policy: nothing inline runs or applies unless the server nonced it.

Every response carries ``content_security_policy()``: scripts and styles only from this
app, no ``'unsafe-inline'``, no eval, no plugins, no framing, no ``<base>``, forms post only
here. An HTML page that calls the Jinja global ``csp_nonce()`` gets a fresh nonce (128 bits
from ``secrets``) in ``style-src``, for that response alone. ``script-src`` stays ``'self'``:
the pages have no inline script (BokehJS is a file; the chart travels as JSON that
static/officesensor.js embeds), so a nonce there would only widen the policy. Script tags
still carry the nonce: ``style-nonce.js`` reads it from its own tag.

Why styles need the nonce: BokehJS 3 (``InlineStyleSheet`` in its ``core/dom``) writes its
CSS into ``<style>`` elements that it appends to each component's shadow root (about 190 on a
metric page; it never uses constructable stylesheets, although it detects them), and several
of them carry layout sizes computed at run time, so no list of hashes can cover them.
``static/style-nonce.js``, loaded with the nonce before BokehJS, stamps that nonce on every
``<style>`` element scripts create. Markup injected into a page cannot do that (it cannot run
script), so an injected ``<style>`` stays blocked; Bokeh's element styles are set through
CSSOM (``el.style``), which CSP does not restrict. Toolbar icons are ``data:`` images.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response, g

NONCE_BYTES = 16
DIRECTIVES: tuple[tuple[str, str], ...] = (
    ("default-src", "'self'"),
    ("script-src", "'self'"),
    ("style-src", "'self'"),
    ("img-src", "'self' data:"),
    ("object-src", "'none'"),
    ("base-uri", "'none'"),
    ("form-action", "'self'"),
    ("frame-ancestors", "'none'"),
)
NONCED = frozenset({"style-src"})


def content_security_policy(nonce: str | None = None) -> str:
    """The policy; with ``nonce``, inline styles carrying it are allowed too."""
    parts = []
    for name, value in DIRECTIVES:
        if nonce is not None and name in NONCED:
            value = f"{value} 'nonce-{nonce}'"
        parts.append(f"{name} {value}")
    return "; ".join(parts)


def csp_nonce() -> str:
    """This response's nonce, made on first use (the Jinja global ``csp_nonce()``)."""
    nonce = g.get("csp_nonce")
    if not isinstance(nonce, str):
        nonce = g.csp_nonce = secrets.token_urlsafe(NONCE_BYTES)
    return nonce


def install(app: Flask) -> None:
    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(_nonced_policy)


def _nonced_policy(response: Response) -> Response:
    nonce = g.get("csp_nonce")
    if isinstance(nonce, str):
        response.headers["Content-Security-Policy"] = content_security_policy(nonce)
    return response
