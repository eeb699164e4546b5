"""Two real sensors in two rooms on an open overview: ``officesensor sensor`` processes named
"lab" and "attic" publish through the session's Mosquitto; both get their cards; when one is
killed (no goodbye: the broker publishes its last will) its cards say "offline" at once,
without a reload, and the other's do not. Runs last: it adds series to the shared store."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest

from tests.browser.conftest import Dashboard, Tab
from tests.integration.conftest import cli_process, stop_process, wait_for

pytestmark = pytest.mark.browser

ROOMS = ("lab", "attic")
METRICS = ("Temperature", "Humidity", "Pressure")


@pytest.fixture
def rooms(dashboard: Dashboard, tmp_path: Path) -> Iterator[dict[str, Popen[Any]]]:
    procs = {
        name: cli_process(
            ["sensor", "--sensor", name, "--interval", "1"],
            tmp_path / name,
            {
                "OFFICESENSOR_MQTT_URL": dashboard.broker.url,
                "OFFICESENSOR_MQTT_CLIENT_ID": f"pi-{name}",
                "OFFICESENSOR_SENSOR_CLOCK_CHECK": "floor",
            },
        )
        for name in ROOMS
    }
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            stop_process(proc)


def card_classes(tab: Tab, sensor: str) -> list[list[str]]:
    cards = tab.page.locator(f".metric-card[data-sensor={sensor}]")
    return [(cards.nth(i).get_attribute("class") or "").split() for i in range(cards.count())]


def test_two_sensors_get_cards_and_a_killed_one_shows_offline_at_once(
    tab: Tab, dashboard: Dashboard, rooms: dict[str, Popen[Any]], screenshots: Path
):
    def both_reporting() -> bool:
        found = {(s["sensor"], s["metric"], s["online"]) for s in dashboard.json("/api/series")}
        return all((room, m, True) in found for room in ROOMS for m in METRICS)

    wait_for(both_reporting, 30, "both sensors' series, online, in the API")
    tab.goto("/")
    tab.wait_live()
    for room in ROOMS:
        classes = card_classes(tab, room)
        assert len(classes) == len(METRICS)
        assert all("offline" not in c for c in classes)

    rooms["attic"].send_signal(signal.SIGKILL)
    rooms["attic"].wait(10)
    tab.page.wait_for_function(
        "() => { const cards = document.querySelectorAll('.metric-card[data-sensor=attic]');"
        " return cards.length === 3 && [...cards].every(c => c.classList.contains('offline')); }",
        timeout=15_000,
    )
    badge = tab.page.locator(".metric-card[data-sensor=attic] .offline-badge").first
    assert badge.is_visible()
    assert badge.inner_text() == "offline"
    assert all("offline" not in c for c in card_classes(tab, "lab"))
    assert {s["online"] for s in dashboard.json("/api/series") if s["sensor"] == "attic"} == {False}
    tab.page.screenshot(path=str(screenshots / "overview-offline.png"), full_page=True)
