"""A second ``officesensor serve`` with viewer authentication on (a users file and a token),
for the sign-in and CSP browser tests. Module-scoped: it runs beside the session's open
dashboard, on its own port and SQLite file (two hours of Temperature, so a chart draws), and
stops when the module is done. Secrets are made at run time."""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from officesensor import users
from officesensor.models import Reading
from officesensor.store.sqlite import SqliteStore
from tests.integration.conftest import (
    Broker,
    Server,
    cli_process,
    free_port,
    port_open,
    stop_process,
    wait_for,
)

VIEWER = "alice"
PASSWORD = "a long office password"


@dataclass
class Secured:
    server: Server
    token: str

    @property
    def base(self) -> str:
        return self.server.base


@pytest.fixture(scope="module")
def secured(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    workdir = tmp_path_factory.mktemp("secured")
    users.write_user(workdir / "viewers", VIEWER, PASSWORD)
    db = workdir / "office.db"
    store = SqliteStore(db)
    now = datetime.now(UTC).replace(microsecond=0)
    try:
        readings = []
        for i in range(480):  # two hours at 15 s
            ts = now - timedelta(seconds=15 * (480 - i))
            readings.append(
                Reading("default", "Temperature", i, ts, round(70.5 + math.sin(i / 40), 2))
            )
        store.write_many(readings)
    finally:
        store.close()
    token = secrets.token_urlsafe(32)
    port = free_port()
    proc = cli_process(
        ["serve"],
        workdir,
        {
            "OFFICESENSOR_MQTT_URL": broker.url,
            "OFFICESENSOR_MQTT_PROTOCOL": broker.protocol,
            "OFFICESENSOR_MQTT_CLIENT_ID": "officesensor-browser-secured",
            "OFFICESENSOR_STORE": f"sqlite:///{db}",
            "OFFICESENSOR_HTTP": f"127.0.0.1:{port}",
            "OFFICESENSOR_AUTH_USERS_FILE": str(workdir / "viewers"),
            "OFFICESENSOR_AUTH_TOKEN": token,
        },
    )
    server = Server(proc, f"http://127.0.0.1:{port}", workdir)

    def ready() -> bool:
        assert proc.poll() is None, f"serve exited early:\n{server.log()}"
        return server.get("/readyz")[0] == 200

    try:
        wait_for(ready, 30, "the secured dashboard to be ready")
        yield Secured(server, token)
    finally:
        code = stop_process(proc)
        log = server.log()
        assert code == 0, f"serve exited with {code}:\n{log}"
        wait_for(lambda: not port_open(port), 10, "the HTTP port to close")
        assert PASSWORD not in log
        assert token not in log
