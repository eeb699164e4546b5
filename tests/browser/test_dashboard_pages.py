"""The pages in headless Chromium, offline but for 127.0.0.1, without console errors: the
overview, the metric page at every range, the statistics table, the viewer's time zone, the
°F/°C choice, gaps; and the README's screenshots.

These run before test_live_updates.py (file order), so the seeded data is as conftest left it.
"""

from __future__ import annotations

import json
import re
import urllib.request
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from officesensor.web.pages import format_duration
from officesensor.web.ranges import RAW_LIMIT, bucket_width
from tests.browser.conftest import (
    CHART_READY,
    HISTORY,
    LONG_OUTAGE,
    OUTAGE,
    STALE_SENSOR,
    STATS_READY,
    VIEWER_ZONE,
    Dashboard,
    Sensor,
    Tab,
)
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.browser

#: What the default sensor reports when a test needs it fresh.
FRESH = {"Temperature": 71.5, "Humidity": 41.0, "Pressure": 1012.5}

KOLKATA = ZoneInfo(VIEWER_ZONE)
KOLKATA_OFFSET_MS = 5.5 * 3600 * 1000  # no daylight saving: the chart's axis shift, exactly
ZONE_NAMES = ("Asia/Kolkata", "Asia/Calcutta")  # Chromium's ICU names it either way
NUMBER = r"-?\d[\d,]*\.\d\d"
#: How the 24 h view is drawn: 5,760 readings at 15 s, reading by reading if the server
#: allows that many (web/ranges.py RAW_LIMIT), else in buckets.
DAY_MODE = "readings" if RAW_LIMIT >= 24 * 240 else "buckets"


def local(iso: str) -> str:
    """An ISO UTC time as the page must show it to a viewer in Kolkata."""
    ts = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return ts.astimezone(KOLKATA).strftime("%Y-%m-%d %H:%M:%S")


def test_overview_cards_show_value_today_sparkline_and_stale_state(
    tab: Tab, sensor: Sensor, dashboard: Dashboard, screenshots
):
    # The seeded data ends when the session starts, and the default sensor counts as stale
    # 45 s later: it reports now, as a live sensor would, whichever tests ran first.
    sent = {m: sensor.publish(m, v) for m, v in FRESH.items()}
    for metric, ts in sent.items():
        url = f"{dashboard.base}/api/readings?metric={metric}&limit=1"

        def stored(url: str = url, ts: datetime = ts) -> bool:
            with urllib.request.urlopen(url, timeout=5) as answer:
                latest = json.load(answer)["readings"][-1]["ts"]
            return datetime.fromisoformat(latest.replace("Z", "+00:00")) >= ts.replace(
                microsecond=0
            )

        wait_for(stored, 15, f"the fresh {metric} reading")
    tab.goto("/")
    tab.wait_live()
    cards = tab.page.locator(".metric-card")
    assert cards.count() == 4
    titles = [t.split()[0] for t in cards.locator("h2").all_inner_texts()]
    assert titles == ["Temperature", "Temperature", "Humidity", "Pressure"]
    for card in cards.all():
        assert re.fullmatch(NUMBER + r" (°F|%|mb)", card.locator(".reading").inner_text())
        quiet = card.get_attribute("data-sensor") == STALE_SENSOR  # maybe not yet today
        for role in ("min", "max"):
            text = card.locator(f"[data-role={role}]").inner_text()
            assert re.fullmatch(NUMBER, text) or (quiet and text == "—")
        points = card.locator(".spark-line").get_attribute("points")
        assert points is not None
        hours = 6 if quiet else 24
        # 15-minute means; the newest quarter-hours may hold nothing yet, as the seeded data
        # stops when the session starts and the live sensor may not have filled them.
        assert len(points.split()) >= hours * 4 - 2
    # The sensor that went quiet 10 minutes ago (it reports every 15 s) is stale; the others not.
    kitchen = tab.page.locator(f".metric-card[data-sensor={STALE_SENSOR}]")
    assert "stale" in (kitchen.get_attribute("class") or "")
    assert kitchen.locator(".stale-badge").is_visible()
    # It went quiet 10 minutes before the session's data was made; other tests ran since.
    ago = re.search(r"(\d+) min ago", kitchen.locator(".meta").inner_text())
    assert ago is not None
    assert 10 <= int(ago.group(1)) < 60
    default = tab.page.locator(".metric-card[data-sensor=default][data-metric=Temperature]")
    assert not default.locator(".stale-badge").is_visible()
    assert int(default.locator("[data-role=anomalies]").inner_text()) >= 0
    # The table of every series, times in the viewer's zone.
    rows = tab.page.locator("tr.series-row")
    assert rows.count() == 4
    time = rows.first.locator("time")
    assert time.inner_text() == local(time.get_attribute("datetime") or "")
    tab.page.screenshot(path=screenshots / "overview.png")
    assert (screenshots / "overview.png").stat().st_size > 20_000


def test_metric_page_draws_the_chart_and_lists_anomalies(tab: Tab, screenshots):
    tab.open_chart("/temperature")  # the last 24 h
    legend = tab.page.locator(".legend").inner_text()
    if DAY_MODE == "readings":
        assert "moving average (20)" in legend
        assert "mean ± 3σ" in legend
    else:
        assert f"mean per {format_duration(bucket_width(timedelta(hours=24)))}" in legend
        assert "min – max" in legend
    canvas = tab.page.locator("#chart canvas").first  # inside Bokeh's (open) shadow roots
    box = canvas.bounding_box()
    assert box is not None
    assert box["width"] > 900
    assert box["height"] > 300
    main = tab.source(DAY_MODE)
    assert len(main["x"]) > 500
    rows = tab.page.locator("table.anomalies tbody tr")
    assert rows.count() >= 3  # the planted events of the last 24 h
    assert len(tab.source("anomalies")["x"]) == rows.count()
    assert re.fullmatch(NUMBER + " °F", rows.first.locator("td").first.inner_text())
    assert re.fullmatch(r"[+-]\d+\.\d\d", rows.first.locator("td.z").inner_text())
    tab.page.screenshot(path=screenshots / "temperature.png")
    assert (screenshots / "temperature.png").stat().st_size > 20_000


def test_short_range_draws_every_reading_with_moving_average_and_band(tab: Tab):
    tab.open_chart("/temperature?range=1h")
    legend = tab.page.locator(".legend").inner_text()
    assert "moving average (20)" in legend
    assert "mean ± 3σ" in legend
    readings = tab.source("readings")
    values = [v for v in readings["value"] if v is not None]
    assert 200 < len(values) <= 241  # an hour at 15 s, reading by reading
    # Every reading has its moving average and band (gap rows, which break the lines and
    # hold the band's edges, are not readings).
    shown_rows = [i for i, v in enumerate(readings["value"]) if v is not None]
    assert all(readings["mean"][i] is not None for i in shown_rows)
    assert all(readings["upper"][i] is not None for i in shown_rows)
    shown = int(tab.page.locator("#shown-count").inner_text().replace(",", ""))
    assert shown == len(values)


def test_times_are_in_the_viewers_zone_and_the_zone_is_named(tab: Tab, dashboard: Dashboard):
    tab.open_chart("/temperature?range=1h")
    # The footer and the chart's axis name the zone; every <time> shows Kolkata time.
    footer = tab.page.locator("#tz-name").inner_text()
    assert any(name in footer for name in ZONE_NAMES)
    assert "UTC+05:30" in footer
    latest = tab.page.locator("#latest-value ~ .muted time")
    iso = latest.get_attribute("datetime") or ""
    assert latest.inner_text() == local(iso)
    assert "UTC+05:30" in (latest.get_attribute("title") or "")
    for cell in tab.page.locator("table.anomalies time").all()[:5]:
        assert cell.inner_text() == local(cell.get_attribute("datetime") or "")
    # The chart draws each reading at its Kolkata wall-clock time.
    api = dashboard.json("/api/readings?metric=Temperature&sensor=default&range=1h&limit=5")
    first = datetime.fromisoformat(api["readings"][0]["ts"].replace("Z", "+00:00"))
    x = tab.source("readings")["x"]
    assert first.timestamp() * 1000 + KOLKATA_OFFSET_MS in x
    axis = tab.page.locator("#chart").evaluate(
        "el => window.Bokeh.documents[0].roots()[0].below[0].axis_label"
    )
    assert any(name in axis for name in ZONE_NAMES)
    # The custom-range form takes times in the viewer's zone and asks for them in UTC.
    form = tab.page.locator("#custom-range")
    form.locator("input[name=start]").fill("2026-01-05T09:00:00")
    form.locator("input[name=end]").fill("2026-01-05T17:30:00")
    form.locator("button[type=submit]").click()
    tab.page.wait_for_url(re.compile(r"start="))
    url = tab.page.url
    assert "start=2026-01-05T03%3A30%3A00.000Z" in url
    assert "end=2026-01-05T12%3A00%3A00.000Z" in url
    assert tab.page.locator("#live-status").get_attribute("data-state") == "off"


def test_range_switching_between_readings_and_buckets(tab: Tab, screenshots):
    tab.open_chart("/temperature")

    def per(span: timedelta) -> tuple[str, str]:
        return ("buckets", f"mean per {format_duration(bucket_width(span))}")

    expected = {
        "1h": ("readings", "Readings"),
        "7d": per(timedelta(days=7)),
        "30d": per(timedelta(days=30)),
        "1y": per(timedelta(days=365)),
        "all": per(HISTORY),
        "24h": ("readings", "Readings") if DAY_MODE == "readings" else per(timedelta(hours=24)),
    }
    for name, (mode, text) in expected.items():
        tab.page.locator(".ranges").get_by_role("link", name=name, exact=True).click()
        tab.page.wait_for_url(re.compile(rf"range={name}$"))
        tab.page.wait_for_selector(CHART_READY, timeout=15_000)
        current = tab.page.locator(".ranges [aria-current=page]").inner_text()
        assert current == name
        assert text in tab.page.locator(".chart-card").inner_text(), name
        source = tab.source(mode)
        assert len(source["x"]) > 50, name
        if mode == "buckets":
            assert len(source["x"]) <= 1_050
            assert all(
                lo <= mean <= hi
                for lo, mean, hi in zip(source["min"], source["mean"], source["max"], strict=True)
                if mean is not None
            )
        if name == "all":  # 60 days in 2-hour buckets
            tab.page.screenshot(path=screenshots / "temperature-long-range.png")
    assert tab.page.locator("#live-status").get_attribute("data-state") == "live"


def test_statistics_table(tab: Tab, dashboard: Dashboard, screenshots):
    tab.open_chart("/temperature")
    tab.page.wait_for_selector(STATS_READY, timeout=15_000)
    table = tab.page.locator("#stats-table")
    names = table.locator("tbody th").all_inner_texts()
    assert names == [
        "Last hour",
        "Last 24 h",
        "Last 7 days",
        "Last 30 days",
        "Last year",
        "Selected range",
    ]
    api = dashboard.json("/api/stats?sensor=default&metric=Temperature&range=24h")
    by_name = {i["name"]: i for i in api["intervals"]}
    for row, name in zip(
        table.locator("tbody tr").all(), ["1h", "24h", "7d", "30d", "1y"], strict=False
    ):
        cells = row.locator("td").all_inner_texts()
        assert int(cells[0].replace(",", "")) == by_name[name]["count"]
        assert cells[1] == f"{by_name[name]['mean']:,.2f} °F"
        assert re.fullmatch(NUMBER + " °F", cells[3])  # min
        assert re.fullmatch(r"\d+\.\d %", cells[-1])  # coverage
    hour = table.locator("tbody tr").first.locator("td").all_inner_texts()
    assert float(hour[-1].rstrip(" %")) > 95
    assert "Coverage" in tab.page.locator("#stats-note").inner_text()
    card = tab.page.locator("section[aria-label=Statistics]")
    card.screenshot(path=screenshots / "statistics.png")
    assert (screenshots / "statistics.png").stat().st_size > 10_000


def across(source: dict[str, list[float | None]], lo: float, hi: float, line: str, area: str):
    """The rows of the chart's source around the hole from ``lo`` to ``hi`` (axis ms)."""
    x = source["x"]
    low, high = area.split("/")
    inside = [i for i, v in enumerate(x) if v is not None and lo <= v <= hi]
    assert all(source[line][i] is None for i in inside), "a reading drawn inside the outage"
    mid = (lo + hi) / 2
    (i,) = [i for i in range(len(x) - 1) if x[i] <= mid <= x[i + 1]]
    return [(source[line][j], source[low][j], source[high][j]) for j in (i, i + 1)]


def test_gaps_are_drawn_as_gaps(tab: Tab):
    """Neither the lines nor the shaded areas bridge an outage: the rows on either side of it
    have no value (lines break at NaN) and an area of zero height (Bokeh's VArea would join
    its points across NaN)."""
    tab.open_chart("/humidity?range=24h")
    line, area = ("value", "lower/upper") if DAY_MODE == "readings" else ("mean", "min/max")
    readings = tab.source(DAY_MODE)
    newest = max(x for x, v in zip(readings["x"], readings[line], strict=True) if v is not None)
    lo = newest - OUTAGE[0].total_seconds() * 1000 + 240_000  # ± a bucket or a reading
    hi = newest - OUTAGE[1].total_seconds() * 1000 - 240_000
    for value, lower, upper in across(readings, lo, hi, line, area):
        assert value is None
        assert lower is not None
        assert lower == upper
    # The long view: 2 days without readings a month ago, between 2-hour buckets.
    tab.open_chart("/humidity?range=all")
    buckets = tab.source("buckets")
    newest = max(x for x, v in zip(buckets["x"], buckets["mean"], strict=True) if v is not None)
    lo = newest - LONG_OUTAGE[0].total_seconds() * 1000 + 3 * 3600_000
    hi = newest - LONG_OUTAGE[1].total_seconds() * 1000 - 3 * 3600_000
    for mean, low, high in across(buckets, lo, hi, "mean", "min/max"):
        assert mean is None
        assert low is not None
        assert low == high


def test_temperature_unit_is_remembered_per_browser(new_tab):
    tab = new_tab()
    tab.open_chart("/temperature?range=1h")
    fahrenheit = float(tab.page.locator("#latest-value .v").inner_text())
    top = max(v for v in tab.source("readings")["value"] if v is not None)
    with tab.page.expect_navigation():
        tab.page.locator("#unit-toggle").click()  # reloads the page in °C
    tab.page.wait_for_selector(CHART_READY, timeout=15_000)
    assert tab.page.locator("#unit-toggle").inner_text() == "°C"
    assert tab.page.locator("#latest-value").inner_text() == f"{(fahrenheit - 32) * 5 / 9:.2f} °C"
    assert tab.page.locator("h1 .u").inner_text() == "°C"
    celsius_top = max(v for v in tab.source("readings")["value"] if v is not None)
    assert celsius_top == pytest.approx((top - 32) * 5 / 9)
    tab.page.wait_for_selector(STATS_READY, timeout=15_000)
    assert "°C" in tab.page.locator("#stats-table tbody").inner_text()
    assert "°F" not in tab.page.locator("main").inner_text()
    # Another tab of the same browser remembers it, overview included; pressure is untouched.
    again = new_tab(context=tab.page.context)
    again.goto("/")
    again.wait_live()
    temperature = again.page.locator(".metric-card[data-metric=Temperature] .reading").first
    assert temperature.inner_text().endswith("°C")
    assert (
        again.page.locator(".metric-card[data-metric=Pressure] .reading")
        .inner_text()
        .endswith("mb")
    )
    # A different browser (context) still has the default.
    other = new_tab()
    other.goto("/temperature")
    assert other.page.locator("#unit-toggle").inner_text() == "°F"
    assert other.page.locator("#latest-value").inner_text().endswith("°F")
    # And switching back is remembered too.
    with again.page.expect_navigation():
        again.page.locator("#unit-toggle").click()
    again.page.wait_for_selector("#unit-toggle:not([hidden])")
    assert again.page.locator("#unit-toggle").inner_text() == "°F"


def test_chart_hover_shows_local_time_and_value_with_unit(tab: Tab):
    tab.open_chart("/temperature?range=1h")
    chart = tab.page.locator("#chart")
    box = chart.bounding_box()
    assert box is not None
    tab.page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    tooltip = tab.page.locator(".bk-tooltip-content").first  # inside the tooltip's shadow root
    tooltip.wait_for(state="visible", timeout=5_000)
    labels = tooltip.locator(".bk-tooltip-row-label").all_inner_texts()
    values = tooltip.locator(".bk-tooltip-row-value").all_inner_texts()
    assert labels[:2] == ["time:", "value:"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", values[0])
    shown = datetime.strptime(values[0], "%Y-%m-%d %H:%M:%S").replace(tzinfo=KOLKATA)
    age = (datetime.now(UTC) - shown).total_seconds()
    assert 0 < age < 3600  # the middle of the last hour, read as Kolkata time
    assert re.fullmatch(NUMBER + " °F", values[1])


def test_nav_links_lead_to_each_page(tab: Tab):
    tab.goto("/")
    nav = tab.page.get_by_role("navigation", name="Metrics")
    for label, path in [("Humidity", "/humidity"), ("Pressure", "/pressure"), ("Overview", "/")]:
        nav.get_by_role("link", name=label, exact=True).click()
        tab.page.wait_for_url(tab.base + path)
        assert tab.page.locator("h1").inner_text().startswith(label)
        if path != "/":
            tab.page.wait_for_selector(CHART_READY, timeout=15_000)
            assert tab.page.locator("#chart canvas").count() > 0


def test_unknown_metric_page_is_a_clean_404(tab: Tab):
    response = tab.page.goto(tab.base + "/radiation")
    assert response is not None
    assert response.status == 404
    assert "radiation" in tab.page.locator("main").inner_text()
    # Chromium reports the 404 itself as a console error; that one is expected here.
    tab.log.console_errors = [m for m in tab.log.console_errors if "404" not in m]


def test_every_request_stays_on_127_0_0_1(tab: Tab):
    """Nothing is fetched from a CDN: every request of both pages goes to the server."""
    requested: list[str] = []
    tab.page.on("request", lambda request: requested.append(request.url))
    tab.goto("/")
    tab.wait_live()
    tab.open_chart("/pressure?range=7d")
    tab.page.wait_for_selector(STATS_READY, timeout=15_000)
    assert any(url.endswith(".js") for url in requested)
    assert all(url.startswith(tab.base) for url in requested), requested
    assert tab.log.blocked == []
