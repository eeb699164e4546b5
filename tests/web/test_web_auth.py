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
from werkzeug.test import TestResponse

from officesensor import users
from officesensor.config import Settings
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app, csrf
from officesensor.web.auth import auth_state
from officesensor.web.throttle import PASSWORD_MAX_FAILURES, TOKEN_MAX_FAILURES

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


def sign_in(
    client: FlaskClient, username: str, password: str, next_: str = "/", address: str = "127.0.0.1"
) -> TestResponse:
    """Sign in through the form, from the client address ``address``."""
    where = {"REMOTE_ADDR": address}
    page = client.get("/login", query_string={"next": next_}, environ_base=where)
    assert page.status_code == 200
    return client.post(
        "/login",
        query_string={"next": next_},
        data={"username": username, "password": password, "csrf_token": csrf_from(page.text)},
        environ_base=where,
    )


def set_cookies(response: TestResponse) -> dict[str, str]:
    """The response's Set-Cookie headers by cookie name."""
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


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
    cookie = set_cookies(response)["officesensor_session"]
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
    cookies = set_cookies(response)
    assert "; Secure" in cookies["officesensor_session"]
    assert "; Secure" in cookies[csrf.SECURE_COOKIE_NAME]  # __Host-: Secure, Path=/, no Domain


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


PROXY = "10.0.0.2"  # a proxy or NAT address that every viewer below shares


def test_guessing_one_password_is_throttled_for_that_name_and_address(
    secured: Flask, users_file: Path, token: str, caplog
):
    users.write_user(users_file, "bob", "bob's own password")
    guesser = secured.test_client()
    for _ in range(PASSWORD_MAX_FAILURES):
        assert sign_in(guesser, "alice", "wrong password", address=PROXY).status_code == 401
    with caplog.at_level(logging.WARNING):
        blocked = sign_in(guesser, "alice", PASSWORD, address=PROXY)  # even the right one waits
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert "too many failed sign-ins as 'alice' from 10.0.0.2" in caplog.text
    # Everyone else behind the same address signs in as usual: the count is per name.
    assert (
        sign_in(secured.test_client(), "bob", "bob's own password", address=PROXY).status_code
        == 302
    )
    assert sign_in(secured.test_client(), "", token, address=PROXY).status_code == 302
    # And alice herself, from her own address.
    assert sign_in(secured.test_client(), "alice", PASSWORD, address="10.1.2.3").status_code == 302


def test_failures_for_many_names_do_not_block_a_correct_sign_in(secured: Flask):
    """Someone behind the shared address trying names and passwords (or many typos by many
    people) never stops a viewer whose own password is right."""
    sprayer = secured.test_client()
    for i in range(3 * PASSWORD_MAX_FAILURES):
        assert sign_in(sprayer, f"user{i}", "wrong password", address=PROXY).status_code == 401
    assert sign_in(secured.test_client(), "alice", PASSWORD, address=PROXY).status_code == 302


def test_a_success_clears_that_names_count(secured: Flask):
    client = secured.test_client()
    for _ in range(PASSWORD_MAX_FAILURES - 1):
        assert sign_in(client, "alice", "wrong password").status_code == 401
    assert sign_in(client, "alice", PASSWORD).status_code == 302
    for _ in range(PASSWORD_MAX_FAILURES - 1):
        assert sign_in(secured.test_client(), "alice", "wrong password").status_code == 401
    assert sign_in(secured.test_client(), "alice", PASSWORD).status_code == 302


def test_token_guesses_are_throttled_per_address_with_a_higher_limit(secured: Flask, token: str):
    client = secured.test_client()
    wrong = {"Authorization": "Bearer " + "y" * 30}
    right = {"Authorization": f"Bearer {token}"}
    from_proxy = {"REMOTE_ADDR": PROXY}
    for i in range(TOKEN_MAX_FAILURES):
        if i == PASSWORD_MAX_FAILURES:  # more than a password gets, and still checked
            assert (
                client.get("/api/series", headers=right, environ_base=from_proxy).status_code == 200
            )
        assert client.get("/api/series", headers=wrong, environ_base=from_proxy).status_code == 401
    # The correct token checked after the guesses above did not reset their count.
    blocked = client.get("/api/series", headers=right, environ_base=from_proxy)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert sign_in(client, "", token, address=PROXY).status_code == 429  # the form's token too
    # Password sign-ins from that address, and the token from elsewhere, are not affected.
    assert sign_in(secured.test_client(), "alice", PASSWORD, address=PROXY).status_code == 302
    elsewhere = client.get("/api/series", headers=right, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert elsewhere.status_code == 200


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
    cookies = set_cookies(response)
    assert "officesensor_session=;" in cookies["officesensor_session"]
    assert csrf_from(client.get("/login").text) != csrf_from(page.text)  # a new CSRF token
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


def test_the_cookie_token_is_accepted_as_header_or_form_field(open_app: Flask):
    client = open_app.test_client()
    page = client.get("/test-form")
    token = csrf_from(page.text)
    cookie = set_cookies(page)[csrf.COOKIE_NAME]
    assert cookie.startswith(f"{csrf.COOKIE_NAME}={token};")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"):
        assert flag in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert "Cookie" in page.headers["Vary"]
    assert "officesensor_session" not in set_cookies(page)  # without auth: no session at all
    assert csrf_from(client.get("/test-form").text) == token  # one token per browser
    ok = client.post("/api/test-ack", headers={"X-CSRF-Token": token})
    assert (ok.status_code, ok.json) == (200, {"status": "acknowledged"})
    assert client.delete("/api/test-ack", headers={"X-CSRF-Token": token}).status_code == 200
    assert client.post("/test-form", data={"csrf_token": token}).status_code == 200
    other = open_app.test_client()  # another browser: its own cookie, so not this token
    assert other.post("/api/test-ack", headers={"X-CSRF-Token": token}).status_code == 403


def instance(settings: Settings, store: SqliteStore) -> Flask:
    """One more instance of the dashboard, as behind a load balancer: its own process state,
    so without auth its own random session key."""
    app = create_app(settings, store)
    _add_state_changing_route(app)
    return app


def carry_cookie(frm: FlaskClient, to: FlaskClient, name: str) -> None:
    """What the browser does behind a load balancer: the next request goes elsewhere."""
    found = frm.get_cookie(name)
    assert found is not None, name
    to.set_cookie(name, found.value)


def test_a_token_from_one_instance_is_accepted_by_another(settings: Settings, store: SqliteStore):
    proxied = settings.replace(auth_behind_proxy=True)  # nothing to sign in to: random keys
    first, second = instance(proxied, store), instance(proxied, store)
    assert auth_state(first).credentials.key != auth_state(second).credentials.key
    browser_a, browser_b = first.test_client(), second.test_client()
    token = csrf_from(browser_a.get("/test-form").text)
    carry_cookie(browser_a, browser_b, csrf.COOKIE_NAME)
    ok = browser_b.post("/test-form", data={"csrf_token": token})
    assert ok.status_code == 200
    assert browser_b.post("/api/test-ack", headers={"X-CSRF-Token": token}).status_code == 200
    # Still refused: no token, a token other than the cookie's, and a token without its cookie.
    assert browser_b.post("/api/test-ack").status_code == 403
    other_token = csrf_from(first.test_client().get("/test-form").text)
    assert browser_b.post("/api/test-ack", headers={"X-CSRF-Token": other_token}).status_code == 403
    fresh = second.test_client()
    assert fresh.post("/api/test-ack", headers={"X-CSRF-Token": token}).status_code == 403


def test_signed_in_on_one_instance_acknowledge_on_another(
    settings: Settings, store: SqliteStore, token: str, users_file: Path
):
    secured = settings.replace(auth_token=token, auth_users_file=users_file)
    first, second = instance(secured, store), instance(secured, store)
    browser_a, browser_b = first.test_client(), second.test_client()
    assert sign_in(browser_a, "alice", PASSWORD).status_code == 302
    page_token = csrf_from(browser_a.get("/").text)
    for name in ("officesensor_session", csrf.COOKIE_NAME):
        carry_cookie(browser_a, browser_b, name)
    assert browser_b.post("/api/test-ack", headers={"X-CSRF-Token": page_token}).status_code == 200
    assert browser_b.post("/api/test-ack").status_code == 403
    bearer = {"Authorization": f"Bearer {token}"}
    assert second.test_client().post("/api/test-ack", headers=bearer).status_code == 200


def test_the_https_cookie_is_not_the_http_one(open_app: Flask):
    """Over https only the __Host- cookie counts, which a browser accepts only with Secure,
    from https, for the whole host: a token planted over plain http does not pass."""
    client = open_app.test_client()
    planted = csrf_from(client.get("/test-form").text)  # the http cookie, as a MITM could set
    https = "https://localhost"  # the same host, so the browser sends the http cookie too
    assert (
        client.post("/test-form", base_url=https, data={"csrf_token": planted}).status_code == 403
    )
    page = client.get("/test-form", base_url=https)
    cookie = set_cookies(page)[csrf.SECURE_COOKIE_NAME]
    assert "; Secure" in cookie
    assert "Domain" not in cookie
    token = csrf_from(page.text)
    assert token != planted
    assert client.post("/test-form", base_url=https, data={"csrf_token": token}).status_code == 200


def test_csrf_token_global_renders_with_and_without_auth(open_app: Flask, secured: Flask):
    template = '<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">'
    for app in (open_app, secured):
        with app.test_request_context("/"):
            html = render_template_string(template)
            assert re.fullmatch(r'<input type="hidden" name="csrf_token" value="[\w-]{43}">', html)
            assert render_template_string(template) == html  # one token per request


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
