"""Sign-in, sessions, CSRF and security headers through the Flask test client, over a real
users file and SQLite store. Secrets are made at run time."""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient

from officesensor import users
from officesensor.config import Settings
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app
from officesensor.web.throttle import MAX_FAILURES

PASSWORD = "correct horse battery"


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    users.write_user(path, "alice", PASSWORD)
    return path


@pytest.fixture
def secured(settings: Settings, store: SqliteStore, token: str, users_file: Path) -> Flask:
    app = create_app(settings.replace(auth_token=token, auth_users_file=users_file), store)
    _add_state_changing_route(app)
    return app


@pytest.fixture
def open_app(app: Flask) -> Flask:
    _add_state_changing_route(app)
    return app


def _add_state_changing_route(app: Flask) -> None:
    """Stand-ins for the alerts' acknowledge endpoint: a page with a form, the form's POST
    and a JSON POST/DELETE."""

    def acknowledge() -> dict[str, str]:
        return {"status": "acknowledged"}

    def form() -> str:
        return render_template_string(
            '<form method="post"><input type="hidden" name="csrf_token" '
            'value="{{ csrf_token() }}"></form>'
        )

    app.add_url_rule("/api/test-ack", "test_ack", acknowledge, methods=["POST", "DELETE"])
    app.add_url_rule("/test-form", "test_form", acknowledge, methods=["POST"])
    app.add_url_rule("/test-form", "test_form_page", form, methods=["GET"])


def csrf_from(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no csrf_token field in the page"
    return found.group(1)


def sign_in(client: FlaskClient, username: str, password: str, next_: str = "/") -> object:
    page = client.get("/login", query_string={"next": next_})
    assert page.status_code == 200
    return client.post(
        "/login",
        query_string={"next": next_},
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text)},
    )


# ----------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("path", ["/api/series", "/api/readings?metric=Temperature", "/metrics"])
def test_api_without_credentials_is_401_json_with_a_challenge(secured: Flask, path: str):
    response = secured.test_client().get(path)
    assert response.status_code == 401
    assert response.is_json
    assert response.json == {"error": "Sign in to see this."}
    assert response.headers["WWW-Authenticate"].startswith("Bearer realm=")


@pytest.mark.parametrize("path", ["/", "/temperature", "/temperature?range=7d&sensor=a b",
                                  "/nope", "/bokeh/static/js/bokeh.min.js"])  # fmt: skip
def test_pages_without_credentials_redirect_to_login_with_next(secured: Flask, path: str):
    response = secured.test_client().get(path)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/login?next=")
    follow = secured.test_client().get(location)
    assert follow.status_code == 200
    assert 'action="/login?next=' in follow.text


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/static/officesensor.css",
                                  "/static/auth.css", "/static/favicon.svg", "/login"])  # fmt: skip
def test_health_login_and_its_assets_need_no_credentials(secured: Flask, path: str):
    with secured.test_client().get(path) as response:
        assert response.status_code in (200, 503), path  # /readyz may say "not ready"
    stale = {"Authorization": "Bearer " + "z" * 30}  # a probe with an old token still works
    with secured.test_client().get(path, headers=stale) as response:
        assert response.status_code in (200, 503), path


def test_bearer_token_opens_the_api_and_pages(secured: Flask, token: str):
    client = secured.test_client()
    auth = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/series", headers=auth).status_code == 200
    assert client.get("/temperature", headers=auth).status_code == 200
    assert client.get("/metrics", headers=auth).status_code == 200
    wrong = client.get("/api/series", headers={"Authorization": "Bearer " + "x" * 30})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


def test_password_sign_in_sets_a_strict_session_cookie(secured: Flask):
    client = secured.test_client()
    response = sign_in(client, "alice", PASSWORD, next_="/temperature?range=1h")
    assert response.status_code == 302
    assert response.headers["Location"] == "/temperature?range=1h"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("officesensor_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert "Expires=" in cookie
    page = client.get("/temperature")
    assert page.status_code == 200
    assert "Sign out" in page.text
    assert client.get("/api/series").status_code == 200


def test_the_cookie_is_secure_over_https(secured: Flask):
    client = secured.test_client()
    page = client.get("/login", base_url="https://dashboard.example")
    response = client.post(
        "/login",
        base_url="https://dashboard.example",
        data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 302
    assert "; Secure" in response.headers["Set-Cookie"]


def test_token_sign_in_through_the_form(secured: Flask, token: str):
    client = secured.test_client()
    assert sign_in(client, "", token).status_code == 302
    assert client.get("/api/series").status_code == 200


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong password"), ("mallory", PASSWORD), ("", "not-the-token")],
)
def test_wrong_credentials_are_refused_and_logged_without_the_password(
    secured: Flask, username: str, password: str, caplog
):
    client = secured.test_client()
    with caplog.at_level(logging.INFO):
        response = sign_in(client, username, password)
    assert response.status_code == 401
    assert "Wrong name or password." in response.text
    assert client.get("/api/series").status_code == 401
    assert "failed sign-in" in caplog.text
    assert password not in caplog.text


def test_sign_in_is_throttled_per_address(secured: Flask):
    client = secured.test_client()
    for _ in range(MAX_FAILURES):
        assert sign_in(client, "alice", "wrong password").status_code == 401
    blocked = sign_in(client, "alice", PASSWORD)  # even the right password waits
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    other = secured.test_client()
    other_page = other.get("/login")
    elsewhere = other.post(
        "/login",
        data={"username": "alice", "password": PASSWORD, "csrf_token": csrf_from(other_page.text)},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert elsewhere.status_code == 302  # another address is not affected


def test_bearer_failures_count_too(secured: Flask, token: str):
    client = secured.test_client()
    for _ in range(MAX_FAILURES):
        client.get("/api/series", headers={"Authorization": "Bearer " + "y" * 30})
    blocked = client.get("/api/series", headers={"Authorization": f"Bearer {token}"})
    assert blocked.status_code == 429


@pytest.mark.parametrize(
    "target",
    ["https://evil.example/", "//evil.example/x", "/\\evil.example", "\\\\evil", "javascript:x",
     "http:/evil.example", "/ok\r\nSet-Cookie: x=y", ""],
)  # fmt: skip
def test_next_must_be_a_local_path(secured: Flask, target: str):
    response = sign_in(secured.test_client(), "alice", PASSWORD, next_=target)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_a_changed_password_signs_everyone_out(secured: Flask, users_file: Path):
    client = secured.test_client()
    sign_in(client, "alice", PASSWORD)
    assert client.get("/api/series").status_code == 200
    users.write_user(users_file, "alice", "another good password")
    assert client.get("/api/series").status_code == 401


def test_logout_needs_the_csrf_token_and_ends_the_session(secured: Flask):
    client = secured.test_client()
    sign_in(client, "alice", PASSWORD)
    page = client.get("/")
    assert client.post("/logout").status_code == 403
    assert client.get("/api/series").status_code == 200
    response = client.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "officesensor_session=;" in response.headers["Set-Cookie"]
    assert client.get("/api/series").status_code == 401


def test_a_cross_site_arrival_does_not_replace_the_session(secured: Flask):
    client = secured.test_client()
    response = client.get(
        "/login", query_string={"next": "/temperature"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert 'href="/login?next=/temperature"' in response.text
    assert 'name="password"' not in response.text


def test_without_auth_login_is_not_needed(open_app: Flask):
    client = open_app.test_client()
    assert client.get("/api/series").status_code == 200
    assert client.get("/login?next=/temperature").headers["Location"] == "/temperature"
    assert "Sign out" not in client.get("/").text


# ----------------------------------------------------------------------------- CSRF


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_state_changes_without_the_token_are_refused_even_without_auth(
    open_app: Flask, method: str
):
    client = open_app.test_client()
    response = client.open("/api/test-ack", method=method)
    assert response.status_code == 403
    assert response.is_json
    wrong = client.open("/api/test-ack", method=method, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    form = client.post("/test-form", data={"csrf_token": "guess"})
    assert form.status_code == 403
    assert "stale or came from another site" in form.text


def test_the_session_token_is_accepted_as_header_or_form_field(open_app: Flask):
    client = open_app.test_client()
    token = csrf_from(client.get("/test-form").text)
    assert csrf_from(client.get("/test-form").text) == token  # one token per session
    ok = client.post("/api/test-ack", headers={"X-CSRF-Token": token})
    assert (ok.status_code, ok.json) == (200, {"status": "acknowledged"})
    assert client.delete("/api/test-ack", headers={"X-CSRF-Token": token}).status_code == 200
    assert client.post("/test-form", data={"csrf_token": token}).status_code == 200
    other = open_app.test_client()  # another browser: its own session, so not this token
    assert other.post("/api/test-ack", headers={"X-CSRF-Token": token}).status_code == 403


def test_csrf_token_global_renders_with_and_without_auth(open_app: Flask, secured: Flask):
    template = '<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">'
    for app in (open_app, secured):
        with app.test_request_context("/"):
            html = render_template_string(template)
            assert re.fullmatch(r'<input type="hidden" name="csrf_token" value="[\w-]{40,}">', html)
            assert render_template_string(template) == html  # one token per session


def test_bearer_requests_are_exempt_from_csrf(secured: Flask, token: str):
    client = secured.test_client()
    response = client.post("/api/test-ack", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_signed_in_browsers_need_the_token(secured: Flask):
    client = secured.test_client()
    sign_in(client, "alice", PASSWORD)
    assert client.post("/api/test-ack").status_code == 403
    token = csrf_from(client.get("/").text)
    assert client.post("/api/test-ack", headers={"X-CSRF-Token": token}).status_code == 200


def test_unauthenticated_state_changes_are_401_before_csrf(secured: Flask):
    response = secured.test_client().post("/api/test-ack")
    assert response.status_code == 401


# ----------------------------------------------------------------------------- headers


def directives(policy: str) -> dict[str, str]:
    return dict(part.strip().split(" ", 1) for part in policy.split(";"))


def test_pages_get_a_fresh_style_nonce_and_no_unsafe_inline(client, write_series):
    write_series("Temperature", count=30)
    nonces = set()
    for path in ("/", "/temperature", "/temperature?range=7d", "/nope"):
        response = client.get(path)
        policy = directives(response.headers["Content-Security-Policy"])
        assert "unsafe" not in response.headers["Content-Security-Policy"]
        assert policy["script-src"] == "'self'"
        nonce = re.fullmatch(r"'self' 'nonce-([\w-]{22})'", policy["style-src"])
        assert nonce, policy["style-src"]
        nonces.add(nonce.group(1))
        for name, value in (("default-src", "'self'"), ("frame-ancestors", "'none'"),
                            ("base-uri", "'none'"), ("form-action", "'self'"),
                            ("object-src", "'none'")):  # fmt: skip
            assert policy[name] == value
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        if path == "/temperature":
            assert f'nonce="{nonce.group(1)}"' in response.text
            assert "style-nonce.js" in response.text
    assert len(nonces) == 4


def test_non_html_responses_carry_the_policy_without_a_nonce(client):
    for path in ("/api/series", "/static/officesensor.js", "/healthz"):
        with client.get(path) as response:
            policy = response.headers["Content-Security-Policy"]
        assert "nonce" not in policy
        assert directives(policy)["style-src"] == "'self'"
