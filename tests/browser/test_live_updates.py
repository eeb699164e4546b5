"""Readings published over MQTT reach open pages without a reload: through the real broker,
ingest, the store and /api/stream. Pages keep a bounded window of points, and reconnect by
themselves after a server restart, filling in what was published while it was down.

Runs after test_dashboard_pages.py (file order): these tests add readings to the store, and
the last one restarts the server.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Route

from officesensor.web.pages import ANOMALY_ROWS
from tests.browser.conftest import (
    STALE_SENSOR,
    Dashboard,
    Sensor,
    Tab,
    TabFactory,
)

pytestmark = pytest.mark.browser

KOLKATA_OFFSET_MS = 5.5 * 3600 * 1000


def wait_text(tab: Tab, selector: str, text: str, timeout_ms: int = 10_000) -> None:
    tab.page.wait_for_function(
        "([selector, text]) => { const el = document.querySelector(selector);"
        " return el !== null && el.textContent.trim() === text; }",
        arg=[selector, text],
        timeout=timeout_ms,
    )


def chart_values(tab: Tab) -> list[float]:
    return [v for v in tab.source("readings")["value"] if v is not None]


def test_a_published_reading_appears_on_open_pages_without_reload(
    new_tab: TabFactory, sensor: Sensor
):
    overview, metric = new_tab(), new_tab()
    overview.goto("/")
    metric.open_chart("/temperature?range=1h")
    overview.wait_live()
    metric.wait_live()
    navigations: list[str] = []
    for tab in (overview, metric):
        tab.page.on("framenavigated", lambda frame: navigations.append(frame.url))

    ts = sensor.publish("Temperature", 69.37)
    card = ".metric-card[data-sensor=default][data-metric=Temperature]"
    wait_text(overview, f"{card} .reading", "69.37 °F")
    wait_text(
        overview, "tr.series-row[data-sensor=default][data-metric=Temperature] .num", "69.37 °F"
    )
    wait_text(metric, "#latest-value", "69.37 °F")
    assert chart_values(metric)[-1] == pytest.approx(69.37)
    x = metric.source("readings")["x"]
    assert x[-1] == pytest.approx(ts.timestamp() * 1000 + KOLKATA_OFFSET_MS, abs=1)
    # The count follows what is drawn (the hour slides: older readings may have dropped out).
    counted = int(metric.page.locator("#shown-count").inner_text().replace(",", ""))
    assert counted == len(chart_values(metric))
    time_text = metric.page.locator("#latest-value ~ .muted time").inner_text()
    assert time_text == (ts + timedelta(hours=5, minutes=30)).strftime("%Y-%m-%d %H:%M:%S")

    # A spike: flagged by ingest's live statistics, listed and drawn at once. (Count the
    # rows now: 69.37 itself may have been flagged, and its row added with it.)
    anomalies = metric.page.locator("table.anomalies tbody tr").count()
    sensor.publish("Temperature", 79.5)
    wait_text(metric, "#latest-value", "79.50 °F")
    first = metric.page.locator("table.anomalies tbody tr").first
    wait_text(metric, "table.anomalies tbody tr:first-child td", "79.50 °F")
    rows = metric.page.locator("table.anomalies tbody tr").count()
    assert rows == min(anomalies + 1, ANOMALY_ROWS)  # the table keeps the newest 50
    assert re.fullmatch(r"\+\d+\.\d\d", first.locator("td.z").inner_text())
    assert metric.source("anomalies")["value"][-1] == pytest.approx(79.5)
    overview.page.wait_for_function(
        f"() => document.querySelector('{card} [data-role=max] .v').textContent === '79.50'"
    )
    assert navigations == []  # no reload happened
    sensor.publish("Temperature", 69.41)  # back to normal for the tests that follow
    wait_text(metric, "#latest-value", "69.41 °F")


def test_a_sensor_turns_stale_and_fresh_on_an_open_overview(tab: Tab, sensor: Sensor):
    tab.goto("/")
    tab.wait_live()
    card = tab.page.locator(f".metric-card[data-sensor={STALE_SENSOR}]")
    assert "stale" in (card.get_attribute("class") or "").split()
    # A reading 36 s old: fresh (the sensor reports every 15 s; stale after 3 missed)...
    sensor.publish("Temperature", 68.02, datetime.now(UTC) - timedelta(seconds=36), STALE_SENSOR)
    wait_text(tab, f".metric-card[data-sensor={STALE_SENSOR}] .reading", "68.02 °F")
    assert "stale" not in (card.get_attribute("class") or "").split()
    assert not card.locator(".stale-badge").is_visible()
    # ...and stale again once 45 s have passed without another, with no reload.
    tab.page.wait_for_selector(
        f".metric-card.stale[data-sensor={STALE_SENSOR}] .stale-badge", timeout=15_000
    )


def test_the_chart_keeps_a_bounded_window_of_points(new_tab: TabFactory, sensor: Sensor):
    """At most ``capacity`` points, and none older than the range: here the page is served
    with a capacity of 150 and a 30-minute window (instead of 10,000 and 1 h) so that a few
    readings show it."""
    tab = new_tab()

    def smaller(route: Route) -> None:
        response = route.fetch()
        body = re.sub(r'"capacity": \d+', '"capacity": 150', response.text())
        body = re.sub(r'data-span-ms="\d+"', 'data-span-ms="1800000"', body)
        route.fulfill(response=response, body=body)

    tab.page.route(re.compile(r"/temperature\?range=1h$"), smaller)
    tab.open_chart("/temperature?range=1h")
    tab.wait_live()
    assert len(chart_values(tab)) > 200  # the whole hour, as served
    published = [sensor.publish("Temperature", 69.0 + i / 100) for i in range(12)]
    wait_text(tab, "#latest-value", "69.11 °F")
    source = tab.source("readings")
    assert len(source["x"]) <= 150
    assert source["value"][-12:] == pytest.approx([69.0 + i / 100 for i in range(12)])
    oldest = min(x for x in source["x"] if x is not None)
    cutoff = published[-1].timestamp() * 1000 + KOLKATA_OFFSET_MS - 1_800_000
    assert oldest >= cutoff - 1
    # The count above the chart follows what is drawn.
    shown = int(tab.page.locator("#shown-count").inner_text().replace(",", ""))
    assert shown == sum(v is not None for v in source["value"])


def test_pages_reconnect_after_a_server_restart_and_fill_the_gap(
    new_tab: TabFactory, sensor: Sensor, dashboard: Dashboard
):
    overview, metric = new_tab(), new_tab()
    overview.goto("/")
    metric.open_chart("/temperature?range=1h")
    overview.wait_live()
    metric.wait_live()

    dashboard.stop()
    for tab in (overview, metric):
        tab.page.wait_for_selector("#live-status[data-state=reconnecting]", timeout=10_000)
    # Ingest is down with the server: the broker keeps these for its persistent session.
    missed = [69.51, 69.52, 69.53]
    for value in missed:
        sensor.publish("Temperature", value)
    dashboard.start()

    wait_text(metric, "#latest-value", "69.53 °F", timeout_ms=30_000)
    wait_text(
        overview,
        ".metric-card[data-sensor=default][data-metric=Temperature] .reading",
        "69.53 °F",
        timeout_ms=30_000,
    )
    values = chart_values(metric)
    assert values[-3:] == pytest.approx(missed)
    source = metric.source("readings")
    drawn = [x for x, v in zip(source["x"], source["value"], strict=True) if v is not None]
    assert len(drawn) == len(set(drawn))  # nothing replayed twice
    for tab in (overview, metric):
        tab.wait_live()
    # And it is live again: the next reading arrives as usual.
    sensor.publish("Temperature", 69.47)
    wait_text(metric, "#latest-value", "69.47 °F")
    wait_text(
        overview, ".metric-card[data-sensor=default][data-metric=Temperature] .reading", "69.47 °F"
    )
    # While the server was down Chromium logged its failed attempts to reconnect; expected.
    for tab in (overview, metric):
        tab.log.console_errors = [
            m for m in tab.log.console_errors if "ERR_CONNECTION_REFUSED" not in m
        ]
