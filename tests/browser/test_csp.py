"""The strict Content-Security-Policy in Chromium: no 'unsafe-inline' for scripts or styles,
and still every page works. BokehJS 3 puts its CSS in <style> elements that it creates at run
time inside shadow roots; they pass only because static/style-nonce.js stamps the response's
nonce on them (web/security.py).

Every page is opened with a ``securitypolicyviolation`` listener installed before any script
runs; on each: no violation event, no console error at all (the ``new_tab`` fixture) and none
naming the policy, every <style> element in the document and in every shadow root actually
applied (a blocked one has no ``sheet``), and on chart pages the chart's canvas painted, also
after hovering it (the tooltip adds styles of its own).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser.conftest import CHART_READY, STALE_SENSOR, Tab, TabFactory
from tests.browser.secured_server import Secured, secured

pytestmark = pytest.mark.browser

__all__ = ["secured"]  # the fixture, imported for pytest

LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    `${e.violatedDirective} blocked ${e.blockedURI} at ${e.sourceFile}:${e.lineNumber} ${e.sample}`
  );
}, true);
"""

#: Every <style> in the document and its shadow roots, whether it applied, and how many
#: pixels each canvas painted (not white, not transparent; every 5th pixel sampled).
INSPECT = """
() => {
  const out = {styles: 0, blocked: [], canvases: []};
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.tagName === "STYLE") {
        out.styles += 1;
        if (el.sheet === null) { out.blocked.push(el.textContent.slice(0, 80)); }
      }
      if (el.tagName === "CANVAS" && el.width && el.height) {
        // Read a copy: reading Bokeh's own canvas back would slow it down (and warn).
        // (At most 2000 px square: without its styles BokehJS sizes its canvas absurdly.)
        const copy = document.createElement("canvas");
        copy.width = Math.min(el.width, 2000);
        copy.height = Math.min(el.height, 2000);
        const ctx = copy.getContext("2d", {willReadFrequently: true});
        ctx.drawImage(el, 0, 0);
        const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
        let painted = 0;
        for (let i = 0; i < data.length; i += 20) {
          if (data[i + 3] > 0 && (data[i] < 235 || data[i + 1] < 235 || data[i + 2] < 235)) {
            painted += 1;
          }
        }
        out.canvases.push(painted);
      }
      if (el.shadowRoot) { walk(el.shadowRoot); }
    }
  };
  walk(document);
  return out;
}
"""


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


NOW = datetime.now(UTC).replace(microsecond=0)
CHART_PAGES = [
    "/temperature",  # the default 24 h
    "/temperature?range=1h",  # reading by reading, with the moving average and band
    "/temperature?range=7d",  # buckets from here on
    "/temperature?range=30d",
    "/temperature?range=1y",
    "/temperature?range=all",
    f"/temperature?start={_iso(NOW - timedelta(hours=3))}&end={_iso(NOW)}",  # custom
    f"/temperature?sensor={STALE_SENSOR}",
    "/humidity",
    "/pressure?range=7d",
]
PLAIN_PAGES = [
    "/",
    "/temperature?start=2001-01-01T00:00:00Z&end=2001-01-02T00:00:00Z",  # no readings: no chart
]


def open_strict(tab: Tab, path: str, status: int = 200) -> None:
    tab.page.add_init_script(LISTEN)
    response = tab.page.goto(tab.base + path)
    assert response is not None
    assert response.status == status, path
    policy = response.headers["content-security-policy"]
    assert "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy
    assert re.search(r"style-src 'self' 'nonce-[\w-]{22}'(;|$)", policy), policy
    assert "script-src 'self';" in policy


def check_clean(tab: Tab, path: str) -> dict[str, Any]:
    found: dict[str, Any] = tab.page.evaluate(INSPECT)
    assert tab.page.evaluate("window.__cspViolations") == [], path
    assert [m for m in tab.log.console_errors if "Content Security Policy" in m] == [], path
    assert found["blocked"] == [], path
    return found


@pytest.mark.parametrize("path", CHART_PAGES)
def test_chart_pages_draw_under_the_strict_policy(new_tab: TabFactory, path: str):
    tab = new_tab()
    open_strict(tab, path)
    tab.page.wait_for_selector(CHART_READY, timeout=15_000)
    tab.page.wait_for_timeout(300)  # BokehJS has painted after embedding resolved
    drawn = check_clean(tab, path)
    assert drawn["styles"] > 50, path  # BokehJS's own stylesheets, all applied
    assert max(drawn["canvases"], default=0) > 2_000, path
    box = tab.page.locator("#chart").bounding_box()
    assert box is not None
    tab.page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    tab.page.wait_for_timeout(300)
    hovered = check_clean(tab, path)
    assert hovered["styles"] >= drawn["styles"], path


@pytest.mark.parametrize("path", PLAIN_PAGES)
def test_pages_without_a_chart_are_clean(new_tab: TabFactory, path: str):
    tab = new_tab()
    open_strict(tab, path)
    tab.page.wait_for_load_state("load")
    check_clean(tab, path)


def test_the_error_page_is_clean(new_tab: TabFactory):
    tab = new_tab()
    open_strict(tab, "/no-such-metric", status=404)
    check_clean(tab, "/no-such-metric")
    missing = re.compile(r"error: Failed to load resource: .*status of 404")
    tab.log.console_errors = [m for m in tab.log.console_errors if not missing.match(m)]


def test_the_sign_in_page_and_a_signed_in_chart_are_clean(new_tab: TabFactory, secured: Secured):
    tab = new_tab()
    tab.base = secured.base
    open_strict(tab, "/login?next=/temperature")
    check_clean(tab, "/login")
    tab.page.fill("input[name=password]", secured.token)
    tab.page.click("button[type=submit]")
    tab.page.wait_for_selector(CHART_READY, timeout=15_000)
    drawn = check_clean(tab, "/temperature after signing in")
    assert max(drawn["canvases"], default=0) > 2_000
