"""The alerts page in Chromium: a reading over the threshold makes an alert that the page
shows (times in the viewer's zone), the Acknowledge button acknowledges it, the overview
shows it, and it resolves.

Its own ``officesensor serve`` (alert rules, its own client id and topic ``lab/metrics/+``)
on the session's Mosquitto, so the session dashboard's store never sees these readings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.browser.conftest import Dashboard, Sensor, TabFactory
from tests.integration.conftest import Broker, free_port, wait_for

pytestmark = pytest.mark.browser

RULES = [
    {
        "name": "too-hot",
        "kind": "threshold",
        "sensor": "alarm",
        "metric": "temperature",
        "above": 90.0,
        "hysteresis": 1.0,
        "severity": "critical",
    }
]


@pytest.fixture(scope="module")
def alerting(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    workdir = tmp_path_factory.mktemp("alerting")
    running = Dashboard(
        broker,
        workdir,
        workdir / "office.db",
        free_port(),
        extra_env={
            "OFFICESENSOR_MQTT_CLIENT_ID": "officesensor-browser-alerts",
            "OFFICESENSOR_TOPIC": "lab/metrics/+",
            "OFFICESENSOR_ALERTS_RULES": json.dumps(RULES),
            "OFFICESENSOR_ALERTS_STATE": str(workdir / "alerts.db"),
        },
    )
    running.start()
    yield running
    running.stop()


def publish(sensor: Sensor, value: float) -> None:
    sensor.next_id += 1
    ts = datetime.now(UTC).isoformat()
    body = {"Temperature": value, "ID": sensor.next_id, "Timestamp": ts, "Sensor": "alarm"}
    sensor.publisher.publish("lab/metrics/Temperature", json.dumps(body))


def test_the_alerts_page_shows_a_firing_alert_and_acknowledges_it(
    new_tab: TabFactory, alerting: Dashboard, sensor: Sensor, screenshots: Path
):
    publish(sensor, 85.0)
    publish(sensor, 95.5)
    wait_for(lambda: alerting.json("/api/alerts")["active"], 15, "the alert to fire")

    tab = new_tab()
    tab.base = alerting.base
    tab.goto("/alerts")
    row = tab.page.locator("#active-alerts tr.alert-row")
    assert row.count() == 1
    cells = [c.strip() for c in row.locator("td").all_inner_texts()]
    assert cells[:4] == ["critical", "too-hot (threshold)", "alarm", "Temperature"]
    assert cells[4].startswith("95.50")
    # Times in the viewer's zone (the page script rewrites the server's UTC text).
    since = row.locator("time").first
    assert "UTC" not in since.inner_text()
    assert (since.get_attribute("title") or "").endswith("(UTC+05:30)")
    assert tab.page.locator("nav[aria-label=Alerts] a[aria-current=page]").inner_text() == "Alerts"
    tab.page.screenshot(path=str(screenshots / "alerts.png"), full_page=True)

    tab.page.get_by_role("button", name="Acknowledge").click()
    tab.page.wait_for_selector("#active-alerts .acked time")
    assert tab.page.get_by_role("button", name="Acknowledge").count() == 0
    assert tab.page.locator("#alert-history tr.state-acknowledged").count() == 1
    (active,) = alerting.json("/api/alerts")["active"]
    assert active["acknowledged_at"] is not None

    tab.goto("/")
    banner = tab.page.locator("#firing-alerts")
    assert "1 alert firing" in banner.inner_text()
    assert "(acknowledged)" in banner.inner_text()

    publish(sensor, 80.0)
    wait_for(lambda: not alerting.json("/api/alerts")["active"], 15, "the alert to resolve")
    tab.goto("/alerts")
    assert tab.page.locator("#active-alerts").inner_text().endswith("No alert is firing.")
    states = tab.page.locator("#alert-history tr.event-row .state").all_inner_texts()
    assert states == ["resolved", "acknowledged", "firing"]
    tab.goto("/")
    assert tab.page.locator("#firing-alerts").count() == 0
