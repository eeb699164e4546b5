"""The HTML pages over a real SQLite store: overview, metric pages, errors, escaping, assets."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from officesensor.web.ranges import RAW_LIMIT

PAYLOAD = "x<script>alert(1)</script>"


@pytest.fixture
def start_2d() -> datetime:
    """Two days before this test runs, on the second (not before the module was imported:
    the suite may run for many minutes before it gets here)."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)


def text_of(html: str) -> str:
    """The page's text as a reader sees it without the page script: tags gone, spaces
    collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


class Page(HTMLParser):
    """The bits of a page the tests look at."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.scripts: list[str] = []  # <script src>
        self.links: list[str] = []  # <link href>
        self.anchors: list[str] = []  # <a href>
        self.nav: list[str] = []  # labels of the top navigation
        self.rows: list[list[str]] = []  # rows of the anomalies table
        self.refresh: str | None = None
        self.json_blocks: dict[str, str] = {}
        self._in_nav = self._in_anomalies = self._in_cell = False
        self._json_id: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"] or "")
        if tag == "script" and a.get("type") == "application/json":
            self._json_id = a.get("id") or ""
            self.json_blocks[self._json_id] = ""
        if tag == "link":
            self.links.append(a.get("href") or "")
        if tag == "meta" and a.get("http-equiv") == "refresh":
            self.refresh = a.get("content")
        if tag == "nav" and a.get("aria-label") == "Metrics":
            self._in_nav = True
        if tag == "a":
            self.anchors.append(a.get("href") or "")
            if self._in_nav:
                self.nav.append("")
        if tag == "table" and "anomalies" in (a.get("class") or ""):
            self._in_anomalies = True
        if self._in_anomalies and tag == "tr":
            self.rows.append([])
        if self._in_anomalies and tag == "td":
            self._in_cell = True
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "nav":
            self._in_nav = False
        if tag == "table":
            self._in_anomalies = False
        if tag == "td":
            self._in_cell = False
        if tag == "script":
            self._json_id = None

    def handle_data(self, data: str) -> None:
        if self._json_id is not None:
            self.json_blocks[self._json_id] += data
        if self._in_nav and self.nav:
            self.nav[-1] += data.strip()
        if self._in_cell:
            self.rows[-1][-1] += data.strip()

    @property
    def anomaly_rows(self) -> list[list[str]]:
        return [row for row in self.rows if row]  # the header row has th, not td


# ----------------------------------------------------------------------------- overview


def test_overview_lists_the_three_metrics_with_an_empty_store(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    for metric in ("Temperature", "Humidity", "Pressure"):
        assert metric in html
    assert html.count("no readings yet") >= 3
    assert Page(html).nav == ["Overview", "Temperature", "Humidity", "Pressure"]


def test_overview_shows_latest_value_unit_time_count_and_link(client, write_series):
    readings = write_series("Temperature", [70.5, 71.25, 72.125])
    write_series("Humidity", [40.0, 41.5], sensor="lab")
    html = client.get("/").text
    page = Page(html)
    text = text_of(html)
    assert "72.12 °F" in text or "72.13 °F" in text  # latest value with its unit
    assert "41.50 %" in text
    assert readings[-1].ts.strftime("%Y-%m-%d %H:%M:%S UTC") in html
    assert "/temperature?sensor=default" in page.anchors
    assert "/humidity?sensor=lab" in page.anchors
    assert "Pressure" in html
    assert "no readings yet" in html
    row = re.search(r"<td>default</td>.*?</tr>", html, re.S)
    assert row is not None
    assert ">3<" in row.group(0)


def test_overview_lists_new_metrics_in_nav(client, write_series):
    write_series("CO2", [400.0, 410.0])
    page = Page(client.get("/").text)
    assert page.nav == ["Overview", "Temperature", "Humidity", "Pressure", "CO2"]
    assert "/co2" in page.anchors


# ----------------------------------------------------------------------------- metric pages


@pytest.mark.parametrize("path", ["/temperature", "/humidity", "/pressure", "/Temperature"])
def test_metric_pages_render_with_an_empty_store(client, path):
    response = client.get(path)
    assert response.status_code == 200
    page = Page(response.text)
    assert "no readings yet" in response.text.lower()
    assert "chart-item" not in page.json_blocks
    assert page.scripts == ["/static/officesensor.js"]  # no chart, so no BokehJS to load
    assert page.refresh is None  # live updates instead of the original's reloads


def test_metric_page_is_case_insensitive_and_marks_the_current_nav_link(client, write_series):
    write_series("Temperature", count=30)
    for path in ("/temperature", "/TEMPERATURE", "/Temperature"):
        html = client.get(path).text
        assert "<title>Temperature · Office Sensor</title>" in html
        assert 'href="/temperature" aria-current="page"' in html


def test_unknown_metric_is_a_404_html_page(client):
    response = client.get("/radiation")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "radiation" in response.text
    assert Page(response.text).nav[:2] == ["Overview", "Temperature"]


def test_spike_appears_in_the_anomalies_table_newest_first(client, write_series):
    readings = write_series("Temperature", count=120, spikes=(40, 90))
    page = Page(client.get("/temperature").text)
    rows = page.anomaly_rows
    assert len(rows) >= 2
    times = [row[4] for row in rows]
    assert times == sorted(times, reverse=True)
    for index in (90, 40):
        spike = readings[index]
        row = next(r for r in rows if r[4] == spike.ts.strftime("%Y-%m-%d %H:%M:%S UTC"))
        assert row[0] == f"{spike.value:,.2f}°F"  # the parser joins the cell's text pieces
        assert float(row[3]) >= 2.0  # the z-score column


def test_short_ranges_chart_every_reading_with_full_windows(client, write_series, store):
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1, minutes=50)
    readings = write_series("Temperature", count=400, spikes=(300,), start=start)
    in_range = [r for r in readings if r.ts > datetime.now(UTC) - timedelta(hours=1)]
    assert 0 < len(in_range) < len(readings)
    html = client.get("/temperature?range=1h").text
    page = Page(html)
    item = json.loads(page.json_blocks["chart-item"])
    assert item["target_id"] == "chart"
    assert '"name": "readings"' in page.json_blocks["chart-item"]
    data = json.loads(page.json_blocks["chart-data"])
    values = [v for v in data["readings"]["value"] if v is not None]
    assert values == [r.value for r in in_range]
    # every shown reading has a full trailing window reaching back before the range
    assert None not in data["readings"]["mean"][:1]
    spike = readings[300]
    assert data["anomalies"]["x"].count(spike.ts_us / 1000) == 1
    assert "NaN" not in page.json_blocks["chart-data"]
    live = json.loads(page.json_blocks["chart-live"])
    assert live["mode"] == "readings"
    assert live["live"] is True
    assert live["capacity"] == RAW_LIMIT


def test_gaps_in_the_data_are_drawn_as_gaps(start_2d, client, write_series):
    first = write_series("Temperature", count=20, start=start_2d + timedelta(hours=47.2))
    second = write_series("Temperature", count=20, start=start_2d + timedelta(hours=47.5))
    data = json.loads(Page(client.get("/temperature?range=1h").text).json_blocks["chart-data"])
    values = data["readings"]["value"]
    assert len(values) == len(first) + len(second) + 1
    assert values[len(first)] is None  # one break between the two runs, nothing invented
    x = data["readings"]["x"]
    assert first[-1].ts_us / 1000 < x[len(first)] < second[0].ts_us / 1000


def test_long_ranges_are_drawn_from_buckets(start_2d, client, write_series):
    write_series("Temperature", count=2000, start=start_2d - timedelta(days=5))
    page = Page(client.get("/temperature?range=30d").text)
    assert '"name": "buckets"' in page.json_blocks["chart-item"]
    data = json.loads(page.json_blocks["chart-data"])["buckets"]
    live = json.loads(page.json_blocks["chart-live"])
    assert live["mode"] == "buckets"
    assert live["bucket_s"] == 3600
    counts = [c for c in data["count"] if c is not None]
    assert sum(counts) == 2000
    for low, mean, high in zip(data["min"], data["mean"], data["max"], strict=True):
        if mean is not None:
            assert low <= mean <= high


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("range=2w", "range must be one of"),
        ("start=2024-05-01", "a custom range needs both start and end"),
        ("start=2024-05-02&end=2024-05-01", "end must be later than start"),
        ("start=yesterday&end=2024-05-01", "start must be an ISO 8601 time"),
    ],
)
def test_bad_ranges_are_a_400_page_naming_the_parameter(client, write_series, query, message):
    write_series("Temperature", count=5)
    response = client.get(f"/temperature?{query}")
    assert response.status_code == 400
    assert message in response.text


def test_custom_range_is_in_the_url_and_not_live(client, write_series):
    readings = write_series("Temperature", count=40)
    start, end = readings[10].ts, readings[20].ts
    url = f"/temperature?start={start.isoformat()}&end={end.isoformat()}".replace("+", "%2B")
    page = Page(client.get(url).text)
    data = json.loads(page.json_blocks["chart-data"])
    assert data["readings"]["value"] == [r.value for r in readings[10:20]]
    assert json.loads(page.json_blocks["chart-live"])["live"] is False


def test_chart_statistics_are_null_where_undefined(client, write_series):
    write_series("Pressure", [1013.0, 1013.0, 1013.5])
    data = json.loads(Page(client.get("/pressure").text).json_blocks["chart-data"])
    assert data["readings"]["std"][0] is None  # a single reading has no spread
    assert data["readings"]["z"][:2] == [None, None]  # and a flat window no z-score


def test_chart_and_page_load_only_local_assets(client, write_series):
    write_series("Temperature", count=50, spikes=(30,))
    response = client.get("/temperature")
    page = Page(response.text)
    assert page.scripts, "the chart page loads BokehJS"
    assert any("bokeh" in src for src in page.scripts)
    for url in [*page.scripts, *page.links]:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        with client.get(url) as asset:
            assert asset.status_code == 200, url
            assert asset.get_data(), url
    assert "http://" not in page.json_blocks["chart-item"]
    assert "https://" not in page.json_blocks["chart-item"]
    assert "cdn" not in response.text.lower()


def test_bokeh_route_serves_only_bokehjs_files(client):
    with client.get("/bokeh/static/js/bokeh.min.js") as response:
        assert response.mimetype in ("text/javascript", "application/javascript")
        assert b"Bokeh" in response.get_data()
    assert client.get("/bokeh/static/js/../../__init__.py").status_code == 404
    assert client.get("/bokeh/static/js/nope.js").status_code == 404


def test_sensor_parameter_picks_the_series(client, write_series):
    write_series("Temperature", [70.0, 70.5, 71.0], sensor="lab")
    write_series("Temperature", [60.0, 60.5, 61.25], sensor="attic")
    # no "default" sensor: the first one that has the metric (sensors sort by name)
    assert "61.25" in client.get("/temperature").text
    assert "71.00" in client.get("/temperature?sensor=lab").text
    html = client.get("/temperature?sensor=lab").text
    assert 'href="/temperature?sensor=attic&amp;range=24h"' in html  # the other sensor
    assert client.get("/temperature?sensor=nobody").status_code == 404


def test_default_sensor_wins(client, write_series):
    write_series("Temperature", [60.0, 61.0], sensor="attic")
    write_series("Temperature", [70.0, 71.0], sensor="default")
    assert "71.00" in client.get("/temperature").text


def test_device_strings_are_escaped_everywhere(client, write_series):
    # Payload validation would reject this sensor name; writing it straight to the store
    # proves the pages escape it anyway.
    write_series("Temperature", count=30, spikes=(20,), sensor=PAYLOAD)
    write_series("Humidity", count=5, sensor="a&b\"'")
    for path in ("/", "/temperature", f"/temperature?sensor={PAYLOAD}", "/nope<script>"):
        html = client.get(path).text
        assert "<script>alert(1)" not in html, path
        assert "alert(1)</script>" not in html, path
    overview = client.get("/").text
    assert "x&lt;script&gt;alert(1)&lt;/script&gt;" in overview
    assert "a&amp;b&#34;&#39;" in overview
    metric = client.get("/temperature", query_string={"sensor": PAYLOAD}).text
    assert "x&lt;script&gt;alert(1)&lt;/script&gt;" in metric


def test_every_response_carries_the_security_headers(client, write_series):
    write_series("Temperature", count=20)
    paths = [
        "/",
        "/temperature",
        "/nope",
        "/api/series",
        "/api/readings?limit=x",
        "/healthz",
        "/metrics",
        "/static/officesensor.css",
        "/bokeh/static/js/bokeh.min.js",
    ]
    for path in paths:
        with client.get(path) as response:
            headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["X-Frame-Options"] == "DENY", path
        csp = headers["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'", path
        assert directives["frame-ancestors"] == "'none'", path
        assert directives["script-src"] == "'self'", path  # no inline script, no eval


def test_server_errors_render_a_page_without_details(client, store):
    store.close()
    response = client.get("/temperature")
    assert response.status_code == 503
    assert "Store unavailable" in response.text
    assert "sqlite" not in response.text.lower()


def test_a_metric_named_like_a_route_keeps_its_case(client, write_series):
    write_series("Metrics", [1.0, 2.0])
    page = Page(client.get("/").text)
    assert "/Metrics" in page.anchors
    assert "<h1>Metrics" in client.get("/Metrics").text
    assert client.get("/metrics").mimetype == "text/plain"  # still Prometheus


def test_wrong_method_is_405_with_allow(client):
    response = client.post("/temperature")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert response.mimetype == "text/html"
    api = client.post("/api/series")
    assert api.status_code == 405
    assert api.is_json
