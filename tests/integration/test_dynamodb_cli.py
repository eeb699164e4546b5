"""``officesensor dynamodb create-table`` and the DynamoDB migrations (``import --from``,
``export --to``) as a user runs them: the CLI as a subprocess, moto's server over HTTP, a
real SQLite file; interrupted runs resumed from their checkpoint, every reading once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from officesensor.config import dynamodb_options
from officesensor.models import Reading
from officesensor.store.dynamo_table import create_table
from officesensor.store.dynamodb import DynamoStore
from officesensor.store.sqlite import SqliteStore
from tests.dynamo_helpers import KEY_SCHEMA, OriginalRun, fill_like_the_rule, raw_client
from tests.moto_server import MotoServer, aws_environment, fake_aws_env, start_moto

pytestmark = pytest.mark.integration
LA = ZoneInfo("America/Los_Angeles")


@pytest.fixture(scope="module")
def server() -> Iterator[MotoServer]:
    with aws_environment():
        started = start_moto()
        try:
            yield started
        finally:
            started.stop()


def cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "officesensor.cli", *args],
        cwd=cwd,
        env={**os.environ, **fake_aws_env(), **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def cli_process(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "officesensor.cli", *args],
        cwd=cwd,
        env={**os.environ, **fake_aws_env(), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --------------------------------------------------------------------------- create-table


def test_create_table_is_idempotent_and_checks_the_schema(
    server: MotoServer, tmp_path: Path
) -> None:
    url = server.store_url("OfficeSensor")
    first = cli("dynamodb", "create-table", "--store", url, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "created the table OfficeSensor" in first.stdout
    described = raw_client(server).describe_table(TableName="OfficeSensor")["Table"]
    assert described["TableStatus"] == "ACTIVE"
    assert described["KeySchema"] == KEY_SCHEMA
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    again = cli("dynamodb", "create-table", "--store", url, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "exists with the right key schema" in again.stdout

    provisioned = cli(
        "dynamodb", "create-table", "--store", url, "--table", "Provisioned",
        "--billing", "provisioned", "--read-units", "3", "--write-units", "2", cwd=tmp_path,
    )  # fmt: skip
    assert provisioned.returncode == 0, provisioned.stderr
    throughput = raw_client(server).describe_table(TableName="Provisioned")["Table"][
        "ProvisionedThroughput"
    ]
    assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (3, 2)

    raw_client(server).create_table(
        TableName="Other",
        KeySchema=KEY_SCHEMA,
        AttributeDefinitions=[
            {"AttributeName": "Metric", "AttributeType": "S"},
            {"AttributeName": "ID", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    wrong = cli("dynamodb", "create-table", "--store", url, "--table", "Other", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "exists with another key schema" in wrong.stderr
    assert "RANGE ID (S)" in wrong.stderr


# --------------------------------------------------------------------------- import


def _original_table(server: MotoServer, table: str, counts: tuple[int, int]) -> list[Reading]:
    create_table(dynamodb_options(server.store_url(table)))
    client = raw_client(server)
    runs = [
        OriginalRun(datetime(2024, 1, 5, 8, 0), counts[0]),
        OriginalRun(datetime(2024, 1, 9, 8, 0), counts[1]),  # a restart: overwrites
    ]
    held = fill_like_the_rule(client, table, runs, LA, ("Temperature", "Humidity", "Pressure"))
    # the app's own items and a broken one are not readings: skipped
    client.put_item(TableName=table, Item={"Metric": {"S": "~series"}, "ID": {"N": "0"}})
    client.put_item(
        TableName=table,
        Item={"Metric": {"S": "Temperature"}, "ID": {"N": "99999"}, "payload": {"M": {}}},
    )
    return [r for readings in held.values() for r in readings]


def _sqlite_readings(path: Path) -> list[Reading]:
    store = SqliteStore(path)
    try:
        out = []
        for info in store.series():
            out += store.range(
                info.sensor, info.metric, datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC)
            )
        return out
    finally:
        store.close()


def _stored_count(stderr: str) -> int:
    return int(stderr.rsplit("items, ", 1)[1].split(" readings stored")[0])


def test_import_stops_early_and_resumes_exactly_once(server: MotoServer, tmp_path: Path) -> None:
    expected = _original_table(server, "ImportLimit", (250, 100))
    env = {
        "OFFICESENSOR_STORE": "sqlite:///data/office.db",
        "OFFICESENSOR_SENSOR_TIMEZONE": "America/Los_Angeles",
    }
    source = server.store_url("ImportLimit")
    first = cli("import", "--from", source, "--max-items", "300", "--page-size", "100",
                cwd=tmp_path, **env)  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert "stopped early; run it again" in first.stderr
    assert "import ImportLimit: 300 / ~752 items" in first.stderr  # the progress line
    checkpoint = tmp_path / "data" / "import-ImportLimit.checkpoint.json"
    assert json.loads(checkpoint.read_text())["items"] == 300
    second = cli("import", "--from", source, "--page-size", "100", cwd=tmp_path, **env)
    assert second.returncode == 0, second.stderr
    assert "2 skipped: done" in second.stderr
    assert _stored_count(first.stderr) + _stored_count(second.stderr) == len(expected) == 750
    key = lambda r: (r.sensor, r.metric, r.ts, r.reading_id)  # noqa: E731
    assert sorted(_sqlite_readings(tmp_path / "data" / "office.db"), key=key) == sorted(
        expected, key=key
    )
    third = cli("import", "--from", source, cwd=tmp_path, **env)  # a finished one starts over
    assert third.returncode == 0, third.stderr
    assert "0 readings stored, 750 already there" in third.stderr


def test_a_killed_import_resumes_where_it_stopped(server: MotoServer, tmp_path: Path) -> None:
    expected = _original_table(server, "ImportKill", (600, 200))
    env = {
        "OFFICESENSOR_STORE": "sqlite:///data/office.db",
        "OFFICESENSOR_SENSOR_TIMEZONE": "America/Los_Angeles",
    }
    source = server.store_url("ImportKill")
    checkpoint = tmp_path / "data" / "import-ImportKill.checkpoint.json"
    proc = cli_process("import", "--from", source, "--page-size", "20", cwd=tmp_path, **env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if checkpoint.exists() and json.loads(checkpoint.read_text())["items"] >= 100:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    state = json.loads(checkpoint.read_text())
    assert not state["complete"]
    assert 100 <= state["items"] < 1800
    rest = cli("import", "--from", source, "--page-size", "20", cwd=tmp_path, **env)
    assert rest.returncode == 0, rest.stderr
    assert "done" in rest.stderr
    got = _sqlite_readings(tmp_path / "data" / "office.db")
    assert len(got) == len(expected) == 1800
    key = lambda r: (r.sensor, r.metric, r.ts, r.reading_id)  # noqa: E731
    assert sorted(got, key=key) == sorted(expected, key=key)
    # the page the kill interrupted was read again: found as duplicates, not stored twice
    assert _stored_count(rest.stderr) <= 1800 - (state["items"] - 20)


# --------------------------------------------------------------------------- export


def test_export_to_dynamodb_resumes_and_reads_back(server: MotoServer, tmp_path: Path) -> None:
    target = server.store_url("Exported")
    create_table(dynamodb_options(target))
    db = tmp_path / "office.db"
    source = SqliteStore(db)
    t0 = datetime(2024, 7, 1, tzinfo=UTC)
    readings = [
        Reading(sensor, metric, int((t0 + timedelta(seconds=60 * i)).timestamp() * 1000),
                t0 + timedelta(seconds=60 * i), 20.0 + (i % 17) / 4)
        for sensor, metric in [("default", "Temperature"), ("pi-2", "Humidity")]
        for i in range(700)
    ]  # fmt: skip
    source.write_many(readings)
    source.close()
    env = {"OFFICESENSOR_STORE": f"sqlite:///{db}"}
    first = cli("export", "--to", target, "--max-items", "600", cwd=tmp_path, **env)
    assert first.returncode == 0, first.stderr
    assert "stopped early" in first.stderr
    second = cli("export", "--to", target, cwd=tmp_path, **env)
    assert second.returncode == 0, second.stderr
    assert _stored_count(first.stderr) + _stored_count(second.stderr) == 1400
    with aws_environment():
        store = DynamoStore(dynamodb_options(target))
        try:
            infos = {(i.sensor, i.metric): i.count for i in store.series()}
            assert infos == {("default", "Temperature"): 700, ("pi-2", "Humidity"): 700}
            span = (t0, t0 + timedelta(days=2))
            assert store.range("default", "Temperature", *span) == readings[:700]
            assert store.range("pi-2", "Humidity", *span) == readings[700:]
        finally:
            store.close()


def test_csv_export_and_import_still_work(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    store = SqliteStore(db)
    batch = [Reading("default", "Temperature", i, datetime(2024, 1, 1, tzinfo=UTC) +
                     timedelta(minutes=i), 1.5 * i) for i in range(20)]  # fmt: skip
    store.write_many(batch)
    store.close()
    out = cli("export", "--output", "r.csv", cwd=tmp_path, OFFICESENSOR_STORE=f"sqlite:///{db}")
    assert out.returncode == 0, out.stderr
    back = cli("import", "r.csv", cwd=tmp_path, OFFICESENSOR_STORE="sqlite:///b.db")
    assert back.returncode == 0, back.stderr
    assert "imported 20 readings" in back.stderr
    assert _sqlite_readings(tmp_path / "b.db") == batch
    missing = cli("import", cwd=tmp_path, OFFICESENSOR_STORE="sqlite:///b.db")
    assert missing.returncode == 2
    assert "--from dynamodb://" in missing.stderr
