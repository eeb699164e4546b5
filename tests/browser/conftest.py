"""A real HTTP server (waitress, in a thread) over a SQLite store with three hours of readings,
and Debian's Chromium driven by Playwright, allowed to talk to 127.0.0.1 only."""

from __future__ import annotations

import math
import random
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import waitress
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright

from officesensor.config import load_settings
from officesensor.models import Reading
from officesensor.store.sqlite import SqliteStore
from officesensor.web import create_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1280, "height": 800}
INTERVAL = timedelta(seconds=15)


def office_readings(end: datetime, hours: float = 3.0, seed: int = 7) -> list[Reading]:
    """Plausible office climate every 15 s: slow drifts, sensor noise, and a few events
    (a radiator turned on, a window opened, a door slammed) that the z-score rule flags."""
    rng = random.Random(seed)
    count = int(hours * 3600 / INTERVAL.total_seconds())
    start = end - count * INTERVAL
    readings = []
    for i in range(count):
        ts = start + i * INTERVAL
        phase = i / count * 2 * math.pi
        radiator = 3.5 if i in (310, 311) else 0.0
        window = -7.0 if i in (520, 521, 522) else 0.0
        door = 2.2 if i == 655 else 0.0
        values = {
            "Temperature": 71.0 + 1.4 * math.sin(phase) + rng.gauss(0, 0.08) + radiator,
            "Humidity": 41.0 - 3.0 * math.sin(phase) + rng.gauss(0, 0.25) + window,
            "Pressure": 1012.0 + 1.2 * math.cos(phase / 2) + rng.gauss(0, 0.05) + door,
        }
        for metric, value in values.items():
            readings.append(Reading("default", metric, i, ts, round(value, 2)))
    return readings


def wait_until_answers(url: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """Base URL of the dashboard, served by waitress on a free port."""
    store = SqliteStore(tmp_path_factory.mktemp("browser") / "readings.db")
    store.write_many(office_readings(end=datetime.now(UTC).replace(microsecond=0)))
    app = create_app(load_settings(environ={}), store)
    http = waitress.create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=http.run, name="waitress", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{http.effective_port}"
    try:
        wait_until_answers(base + "/healthz")
        yield base
    finally:
        http.close()
        thread.join(timeout=10)
        http.task_dispatcher.shutdown(timeout=5)
        store.close()
    assert not thread.is_alive(), "waitress did not stop"


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Browser]:
    # Depends on `server` so that Chromium (and its open connections) goes first at teardown.
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@dataclass
class PageLog:
    """What went wrong in the page: console errors, uncaught errors, non-local requests."""

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


@pytest.fixture
def tab(browser: Browser, server: str) -> Iterator[Tab]:
    """A fresh page; anything not bound for 127.0.0.1 is blocked and recorded."""
    log = PageLog()
    context = browser.new_context(viewport=VIEWPORT)

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            log.blocked.append(route.request.url)
            route.abort()

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            log.console_errors.append(f"{message.type}: {message.text}")

    context.route("**/*", only_local)
    page = context.new_page()
    page.on("console", on_console)
    page.on("pageerror", lambda error: log.page_errors.append(str(error)))
    try:
        yield Tab(page, log, server)
    finally:
        context.close()
    assert log.problems() == []
