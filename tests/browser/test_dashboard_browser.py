"""The dashboard in headless Chromium: the chart draws, offline, without errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

# The README's screenshots are refreshed by `make screenshots` (UPDATE_SCREENSHOTS=1); a plain
# test run still takes them, into the test's temporary directory, so the tree stays clean.
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = README_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


CHART_READY = "#chart[data-ready=true]"  # set by officesensor.js once the readings are in

pytestmark = pytest.mark.browser


def test_overview_shows_the_three_metrics(tab, screenshots):
    tab.goto("/")
    cards = tab.page.locator(".metric-card")
    assert cards.count() == 3
    assert cards.locator("h2").all_inner_texts() == ["Temperature", "Humidity", "Pressure"]
    for card in cards.all():
        assert re.fullmatch(r"\d[\d,]*\.\d\d", card.locator(".value").inner_text())
    assert tab.page.locator("table.data tbody tr").count() == 3
    tab.page.screenshot(path=screenshots / "overview.png")
    assert (screenshots / "overview.png").stat().st_size > 10_000
    assert tab.log.problems() == []


def test_metric_page_draws_the_chart_and_lists_anomalies(tab, screenshots):
    tab.goto("/temperature")
    tab.page.wait_for_selector(CHART_READY, timeout=15_000)
    canvas = tab.page.locator("#chart canvas").first  # inside Bokeh's (open) shadow roots
    canvas.wait_for(state="visible")
    box = canvas.bounding_box()
    assert box is not None
    assert box["width"] > 600
    assert box["height"] > 250
    rows = tab.page.locator("table.anomalies tbody tr")
    assert rows.count() > 0
    assert "°F" in rows.first.inner_text()
    tab.page.screenshot(path=screenshots / "temperature.png")
    assert (screenshots / "temperature.png").stat().st_size > 10_000
    assert tab.log.problems() == []


def test_chart_hover_shows_value_with_unit_and_time(tab):
    tab.goto("/temperature")
    tab.page.wait_for_selector(CHART_READY, timeout=15_000)
    chart = tab.page.locator("#chart")
    box = chart.bounding_box()
    assert box is not None
    tab.page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    tooltip = tab.page.locator(".bk-tooltip-content").first  # inside the tooltip's shadow root
    tooltip.wait_for(state="visible", timeout=5_000)
    labels = tooltip.locator(".bk-tooltip-row-label").all_inner_texts()
    values = tooltip.locator(".bk-tooltip-row-value").all_inner_texts()
    assert labels[:2] == ["time:", "value:"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", values[0])
    assert re.fullmatch(r"\d\d\.\d\d °F", values[1])
    assert tab.log.problems() == []


def test_nav_links_lead_to_each_page(tab):
    tab.goto("/")
    nav = tab.page.get_by_role("navigation", name="Metrics")
    for label, path in [("Humidity", "/humidity"), ("Pressure", "/pressure"), ("Overview", "/")]:
        nav.get_by_role("link", name=label, exact=True).click()
        tab.page.wait_for_url(tab.base + path)
        heading = tab.page.locator("h1").inner_text()
        assert heading.startswith(label)
        if path != "/":
            tab.page.wait_for_selector(CHART_READY, timeout=15_000)
            assert tab.page.locator("#chart canvas").count() > 0
    assert tab.log.problems() == []


def test_unknown_metric_page_is_a_clean_404(tab):
    response = tab.page.goto(tab.base + "/radiation")
    assert response is not None
    assert response.status == 404
    assert "radiation" in tab.page.locator("main").inner_text()
    # Chromium reports the 404 itself as a console error; that one is expected here.
    tab.log.console_errors = [m for m in tab.log.console_errors if "404" not in m]
    assert tab.log.problems() == []
