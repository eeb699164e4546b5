"""The dashboard as it really runs, driven by Debian's Chromium through Playwright.

One session: a private Mosquitto on a free port, and ``officesensor serve`` (ingest + the
uvicorn server) as a subprocess over a SQLite file seeded with 60 days of history (see
``seed_readings``: outages, planted anomalies, a second sensor gone quiet ten minutes ago).
Tests publish readings over MQTT as a sensor does.

Every page is opened in a fresh browser context whose requests to anything but 127.0.0.1 are
aborted and recorded; any console error or warning (CSP violations are console errors),
uncaught exception or off-host request fails the test.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright

from officesensor.analytics import rolling_stats
from officesensor.models import AnomalyRecord, Reading
from officesensor.store.sqlite import SqliteStore
from tests.integration.conftest import (
    Broker,
    Publisher,
    Server,
    cli_process,
    free_port,
    port_open,
    start_mosquitto,
    stop_process,
    wait_for,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1280, "height": 800}
#: The viewer's zone in every context: half-hour offset, so a page that shows UTC or the
#: server's zone instead cannot pass by accident.
VIEWER_ZONE = "Asia/Kolkata"
SERVER_ZONE = "Europe/Berlin"  # the sensor's zone ("today" on the overview)
WINDOW = 20  # the server's default moving-average window
Z = 3.0

FAST = timedelta(seconds=15)
SLOW = timedelta(minutes=5)
HISTORY = timedelta(days=60)
RECENT = timedelta(hours=26)  # at 15 s: the 24 h view is drawn reading by reading
#: A hole in the recent readings: the 24 h chart must break its lines there.
OUTAGE = (timedelta(hours=2, minutes=20), timedelta(hours=2))  # (from, to) before "now"
LONG_OUTAGE = (timedelta(days=33), timedelta(days=31))
STALE_SENSOR = "kitchen"
STALE_SINCE = timedelta(minutes=10)

CHART_READY = "#chart[data-ready=true]"  # set by officesensor.js once the chart is drawn
STATS_READY = "#stats-table[data-ready=true]"


# ----------------------------------------------------------------------------- seeded data


def _climate(metric: str, t: npt.NDArray[np.float64], rng: np.random.Generator) -> Any:
    """Plausible office climate at epoch seconds ``t``: a daily cycle, a slow drift, noise."""
    hours = t / 3600
    day = np.sin((hours % 24 - 9) / 24 * 2 * np.pi)
    drift = np.sin(hours / (24 * 45) * 2 * np.pi)
    if metric == "Temperature":
        return 70.5 + 1.5 * day + 1.2 * drift + rng.normal(0, 0.07, len(t))
    if metric == "Humidity":
        return 42.0 - 3.0 * day - 4.0 * drift + rng.normal(0, 0.25, len(t))
    return (
        1013.0 + 6.0 * np.sin(hours / 61) + 3.0 * np.cos(hours / 17) + rng.normal(0, 0.06, len(t))
    )


#: Events in the last 26 hours that the z-score rule flags: (minutes before now, offset).
EVENTS = {
    "Temperature": [(50, 3.0), (400, 2.6), (900, -2.4)],
    "Humidity": [(170, -6.0), (610, 5.5)],
    "Pressure": [(30, 2.4), (1200, -2.0)],
}


@dataclass
class Seeded:
    readings: list[Reading]
    events: set[tuple[str, str, datetime]]  # the readings that were made anomalous on purpose


def _times(start: datetime, end: datetime, step: timedelta) -> npt.NDArray[np.float64]:
    return np.arange(start.timestamp(), end.timestamp(), step.total_seconds())


def seed_readings(now: datetime, seed: int = 7) -> Seeded:
    """Temperature every 15 s for 60 days (its statistics table is the README's); Humidity and
    Pressure every 5 min, then every 15 s for the last 26 h. Two outages: 2 days a month ago,
    20 minutes two hours ago. And a ``kitchen`` sensor, 15 s, silent for the last 10 minutes."""
    rng = np.random.default_rng(seed)
    readings: list[Reading] = []
    events: set[tuple[str, str, datetime]] = set()
    recent = now - RECENT
    for metric in ("Temperature", "Humidity", "Pressure"):
        if metric == "Temperature":
            t = _times(now - HISTORY, now - timedelta(seconds=5), FAST)
        else:
            t = np.concatenate(
                [
                    _times(now - HISTORY, recent, SLOW),
                    _times(recent, now - timedelta(seconds=5), FAST),
                ]
            )
        values = _climate(metric, t, rng)
        old = t < recent.timestamp()
        spikes = old & (rng.random(len(t)) < (0.00006 if metric == "Temperature" else 0.001))
        values[spikes] += rng.choice((-1.0, 1.0), spikes.sum()) * rng.uniform(
            2.5, 4.0, spikes.sum()
        )
        marked = set(np.flatnonzero(spikes).tolist())
        for minutes, offset in EVENTS[metric]:
            i = int(np.searchsorted(t, (now - timedelta(minutes=minutes)).timestamp()))
            values[i] += offset
            marked.add(i)
        keep = ~(
            ((t >= (now - OUTAGE[0]).timestamp()) & (t < (now - OUTAGE[1]).timestamp()))
            | ((t >= (now - LONG_OUTAGE[0]).timestamp()) & (t < (now - LONG_OUTAGE[1]).timestamp()))
        )
        for n, i in enumerate(np.flatnonzero(keep).tolist()):
            ts = datetime.fromtimestamp(float(t[i]), UTC)
            readings.append(Reading("default", metric, n, ts, round(float(values[i]), 2)))
            if i in marked:
                events.add(("default", metric, ts))
    t = _times(now - timedelta(hours=6), now - STALE_SINCE, FAST)
    values = _climate("Temperature", t, rng) - 1.8
    for i in range(len(t)):
        ts = datetime.fromtimestamp(float(t[i]), UTC)
        readings.append(Reading(STALE_SENSOR, "Temperature", i, ts, round(float(values[i]), 2)))
    return Seeded(readings, events)


def seed_anomalies(seeded: Seeded) -> list[AnomalyRecord]:
    """The planted events that the trailing-window z-score rule flags, as ingest records them
    (only those: chance 3σ noise would clutter the screenshots)."""
    found = []
    by_series: dict[tuple[str, str], list[Reading]] = {}
    for reading in seeded.readings:
        by_series.setdefault((reading.sensor, reading.metric), []).append(reading)
    for series in by_series.values():
        stats = rolling_stats([r.value for r in series], WINDOW, Z)
        for i, r in enumerate(series):
            if stats.anomaly[i] and (r.sensor, r.metric, r.ts) in seeded.events:
                mean, std, z = float(stats.mean[i]), float(stats.std[i]), float(stats.z[i])
                found.append(AnomalyRecord(r, mean, std, z))
    return found


# ----------------------------------------------------------------------------- the server


@dataclass
class Dashboard:
    """``officesensor serve`` on a fixed port (so open pages can reconnect after a restart)."""

    broker: Broker
    workdir: Path
    db: Path
    port: int
    server: Server | None = None
    #: More OFFICESENSOR_* variables (they win): test_alerts.py runs its own serve with alert
    #: rules, its own client id and topic, so the session's store never sees its readings.
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            "OFFICESENSOR_MQTT_URL": self.broker.url,
            "OFFICESENSOR_MQTT_PROTOCOL": self.broker.protocol,
            "OFFICESENSOR_MQTT_CLIENT_ID": "officesensor-browser-ingest",
            "OFFICESENSOR_STORE": f"sqlite:///{self.db}",
            "OFFICESENSOR_HTTP": f"127.0.0.1:{self.port}",
            "OFFICESENSOR_SENSOR_TIMEZONE": SERVER_ZONE,
            "OFFICESENSOR_WINDOW": str(WINDOW),
            "OFFICESENSOR_Z": str(Z),
            **self.extra_env,
        }
        proc = cli_process(["serve"], self.workdir, env)
        server = Server(proc, self.base, self.workdir)

        def ready() -> bool:
            assert proc.poll() is None, f"serve exited early:\n{server.log()}"
            if server.get("/healthz")[0] != 200:
                return False
            return bool(server.json("/api/ingest").get("connected"))

        wait_for(ready, 30, "serve to report healthy and connected")
        self.server = server

    def stop(self) -> None:
        assert self.server is not None
        code = stop_process(self.server.proc)
        log = self.server.log()
        self.server = None
        assert code == 0, f"serve exited with {code}:\n{log}"
        wait_for(lambda: not port_open(self.port), 10, "the HTTP port to close")

    def json(self, path: str) -> Any:
        assert self.server is not None
        return self.server.json(path)


class Sensor:
    """Publishes readings over MQTT exactly as a sensor does (QoS 1, ISO timestamps)."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.next_id = int(time.time() * 1000)

    def publish(
        self,
        metric: str,
        value: float,
        ts: datetime | None = None,
        sensor: str = "default",
    ) -> datetime:
        ts = ts or datetime.now(UTC)
        self.next_id += 1
        body: dict[str, Any] = {metric: value, "ID": self.next_id, "Timestamp": ts.isoformat()}
        if sensor != "default":
            body["Sensor"] = sensor
        self.publisher.publish(f"office/metrics/{metric}", json.dumps(body))
        return ts


@pytest.fixture(scope="package")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    started = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield started
    stop_process(started.proc)


@pytest.fixture(scope="package")
def dashboard(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    workdir = tmp_path_factory.mktemp("serve")
    db = workdir / "office.db"
    store = SqliteStore(db)
    try:
        seeded = seed_readings(datetime.now(UTC).replace(microsecond=0))
        for i in range(0, len(seeded.readings), 50_000):
            store.write_many(seeded.readings[i : i + 50_000])
        store.record_anomalies(seed_anomalies(seeded))
    finally:
        store.close()
    running = Dashboard(broker, workdir, db, free_port())
    running.start()
    yield running
    if running.server is not None:
        running.stop()


@pytest.fixture(scope="package")
def sensor(broker: Broker) -> Iterator[Sensor]:
    publisher = Publisher(broker)
    yield Sensor(publisher)
    publisher.close()


@pytest.fixture(scope="package")
def browser(dashboard: Dashboard) -> Iterator[Browser]:
    # Depends on the server so that Chromium (and its open streams) goes first at teardown.
    # Package scope, not session: sync Playwright keeps an asyncio loop running on the main
    # thread while it lives, and the tests after this package call asyncio.run themselves.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


# ----------------------------------------------------------------------------- pages


@dataclass
class PageLog:
    """What went wrong in a page: console errors, uncaught errors, non-local requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [
            *(f"console: {m}" for m in self.console_errors),
            *(f"page error: {m}" for m in self.page_errors),
            *(f"request off 127.0.0.1: {m}" for m in self.blocked),
        ]


@dataclass
class Tab:
    page: Page
    log: PageLog
    base: str

    def goto(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None
        assert response.status == 200, path

    def open_chart(self, path: str) -> None:
        self.goto(path)
        self.page.wait_for_selector(CHART_READY, timeout=15_000)

    def source(self, name: str) -> dict[str, list[float | None]]:
        """A column data source of the Bokeh chart, as the browser holds it (NaN as None)."""
        return self.page.evaluate(
            """name => {
                const model = window.Bokeh.documents[0].get_model_by_name(name);
                const out = {};
                for (const [key, column] of Object.entries(model.data)) {
                    out[key] = Array.from(column, v => Number.isFinite(v) ? v : null);
                }
                return out;
            }""",
            name,
        )

    def live_state(self) -> str | None:
        return self.page.locator("#live-status").get_attribute("data-state")

    def wait_live(self) -> None:
        self.page.wait_for_selector("#live-status[data-state=live]", timeout=10_000)


TabFactory = Callable[..., Tab]


@pytest.fixture
def new_tab(browser: Browser, dashboard: Dashboard) -> Iterator[TabFactory]:
    """Opens tabs, each in its own context (own storage) unless ``context`` is passed; every
    tab's problems fail the test at the end."""
    contexts = []
    logs: list[PageLog] = []

    def only_local(log: PageLog) -> Callable[[Route], None]:
        def handler(route: Route) -> None:
            if urlsplit(route.request.url).hostname in ("127.0.0.1", "localhost"):
                route.continue_()
            else:
                log.blocked.append(route.request.url)
                route.abort()

        return handler

    def make(context: Any = None, timezone_id: str = VIEWER_ZONE) -> Tab:
        log = PageLog()
        if context is None:
            context = browser.new_context(viewport=VIEWPORT, timezone_id=timezone_id)
            contexts.append(context)
        context.route("**/*", only_local(log))
        page = context.new_page()

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                log.console_errors.append(f"{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: log.page_errors.append(str(error)))
        logs.append(log)
        return Tab(page, log, dashboard.base)

    try:
        yield make
    finally:
        for context in contexts:
            context.close()
    assert [p for log in logs for p in log.problems()] == []


@pytest.fixture
def tab(new_tab: TabFactory) -> Tab:
    return new_tab()


# The README's screenshots are refreshed by `make screenshots` (UPDATE_SCREENSHOTS=1); a plain
# run still takes them, into the test's temporary directory, so the tree stays clean.
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    folder = README_SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder
