"""Signing in and out in Chromium against ``officesensor serve`` with a users file: the
redirect to /login and back, a wrong password, the session cookie's flags, the live stream
over that cookie, and signing out (a POST with the CSRF token)."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import CHART_READY, Tab, TabFactory
from tests.browser.secured_server import PASSWORD, VIEWER, Secured, secured

pytestmark = pytest.mark.browser

__all__ = ["secured"]  # the fixture, imported for pytest

#: The browser logs the document's status when a sign-in is refused (401, on purpose).
REFUSED = re.compile(r"error: Failed to load resource: the server responded with a status of 401")


def secured_tab(new_tab: TabFactory, secured: Secured) -> Tab:
    tab = new_tab()
    tab.base = secured.base
    return tab


def test_sign_in_returns_to_the_page_and_keeps_the_live_stream(
    new_tab: TabFactory, secured: Secured
):
    tab = secured_tab(new_tab, secured)
    page = tab.page
    page.goto(secured.base + "/temperature?range=1h")
    assert re.search(r"/login\?next=/temperature\?range%3D1h$", page.url)
    assert page.locator("h1").inner_text() == "Sign in"

    page.fill("input[name=username]", VIEWER)
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert page.locator("#login-error").inner_text() == "Wrong name or password."
    tab.log.console_errors = [m for m in tab.log.console_errors if not REFUSED.match(m)]

    page.fill("input[name=username]", VIEWER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(secured.base + "/temperature?range=1h")
    page.wait_for_selector(CHART_READY, timeout=15_000)
    tab.wait_live()  # /api/stream (outside Flask) accepted the session cookie
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "officesensor_session"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http on 127.0.0.1
    (token,) = [c for c in page.context.cookies() if c["name"] == "officesensor_csrf"]
    assert (token["httpOnly"], token["sameSite"], token["path"]) == (True, "Strict", "/")
    assert page.evaluate("document.cookie") == ""  # scripts can read neither

    page.get_by_role("button", name="Sign out").click()  # a POST with the CSRF token
    page.wait_for_url(secured.base + "/login")
    # Signed out: the session cookie is gone, and the sign-in form has a new CSRF token.
    names = {c["name"]: c["value"] for c in page.context.cookies()}
    assert "officesensor_session" not in names
    assert names["officesensor_csrf"] != token["value"]
    page.goto(secured.base + "/")
    assert page.url.endswith("/login?next=/")


def test_the_token_signs_in_through_the_same_form(new_tab: TabFactory, secured: Secured):
    tab = secured_tab(new_tab, secured)
    tab.page.goto(secured.base + "/login")
    tab.page.fill("input[name=password]", secured.token)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_url(secured.base + "/")
    assert tab.page.locator(".metric-card[data-sensor=default][data-metric=Temperature]").count()
    tab.wait_live()


def test_a_form_posted_from_another_site_is_refused(new_tab: TabFactory, secured: Secured):
    """A page elsewhere (here a data: URL, a foreign origin) auto-submitting a sign-out form
    to the dashboard: the SameSite=Strict cookie is not sent and no CSRF token can be
    guessed, so the session stands."""
    tab = secured_tab(new_tab, secured)
    page = tab.page
    page.goto(secured.base + "/login")
    page.fill("input[name=password]", secured.token)
    page.click("button[type=submit]")
    page.wait_for_url(secured.base + "/")
    hostile = page.context.new_page()
    hostile.set_content(
        f'<form method="post" action="{secured.base}/logout"><input name="csrf_token" '
        'value="guess"></form>'
    )
    with hostile.expect_navigation():
        hostile.evaluate("document.forms[0].submit()")
    assert "403" in hostile.content() or "stale or came from another site" in hostile.content()
    hostile.close()
    page.reload()
    assert page.url == secured.base + "/"  # still signed in
