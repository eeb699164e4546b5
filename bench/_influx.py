"""A private InfluxDB 1.6 for the dashboard benchmark: its own config file, data directories
and free ports on 127.0.0.1 (never the package's service on 8086), always stopped by the
context manager. Talks plain HTTP (``/ping``, ``/write`` with line protocol, ``/query``), so
no client library is needed.

The configuration is the package's defaults except for what a private, throwaway instance
needs, and what would otherwise add background work to the measured queries:

- ``reporting-disabled = true`` (no phoning home; there is no network here anyway);
- meta, data and WAL directories inside the instance's directory;
- HTTP and RPC (``bind-address``, used by backup/restore) on free loopback ports;
- ``auth-enabled = false``, ``log-enabled = false`` (no access log line per request),
  ``query-log-enabled = false``, logging level ``warn``;
- ``[monitor] store-enabled = false``: no ``_internal`` database written every 10 s;
- ``[continuous_queries] enabled = false``: none are defined anyway.

Everything else (the TSM engine, ``inmem`` index, cache sizes, compaction) is left as shipped.

Data layout: one measurement ``readings`` with tags ``sensor`` and ``metric`` and one field
``value`` (``readings,sensor=default,metric=Temperature value=71.2 <µs>``). This is how the
InfluxDB documentation advises laying out such data (don't encode the metric in the
measurement name); each (sensor, metric) is one series, so a query for one metric reads only
that series' points, as fast as a measurement per metric would.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import _mosquitto
from _mosquitto import HOST, free_port

INFLUXD = shutil.which("influxd") or "/usr/bin/influxd"
MEASUREMENT = "readings"
DATABASE = "office"
BATCH_LINES = 50_000
LAYOUT = (
    f"measurement {MEASUREMENT!r}, tags sensor and metric, field value (float), "
    "timestamps to the microsecond"
)


class InfluxError(RuntimeError):
    pass


@dataclass
class Influx:
    """A running influxd, reached over HTTP on ``port``."""

    port: int
    pid: int
    workdir: Path
    version: str = "InfluxDB (unknown version)"

    # ------------------------------------------------------------------ HTTP

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        *,
        timeout_s: float = 120.0,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, bytes]:
        """One request; returns (status, body). Reuses ``conn`` (keep-alive) when given."""
        url = path + ("?" + urlencode(params) if params else "")
        own = conn is None
        c = conn or self._connection(timeout_s)
        try:
            headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
            c.request(method, url, body=body, headers=headers)
            response = c.getresponse()
            return response.status, response.read()
        finally:
            if own:
                c.close()

    def ping(self) -> str | None:
        """The server's version if /ping answers, else None."""
        try:
            c = self._connection(2.0)
            c.request("GET", "/ping")
            response = c.getresponse()
            response.read()
            version = response.getheader("X-Influxdb-Version")
            c.close()
        except OSError:
            return None
        return version if response.status == 204 else None

    def query(
        self,
        q: str,
        *,
        db: str = DATABASE,
        epoch: str = "ms",
        conn: http.client.HTTPConnection | None = None,
        timeout_s: float = 300.0,
    ) -> list[dict[str, Any]]:
        """Run InfluxQL; returns the first statement's series (raises on an error)."""
        params = {"db": db, "q": q, "epoch": epoch}
        status, body = self.request("POST", "/query", params, timeout_s=timeout_s, conn=conn)
        if status != 200:
            raise InfluxError(f"query failed ({status}): {body[:500]!r}\n{q}")
        document = json.loads(body)
        result = document["results"][0]
        if "error" in result:
            raise InfluxError(f"query failed: {result['error']}\n{q}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    def timed_query(self, q: str, conn: http.client.HTTPConnection) -> tuple[float, bytes]:
        """Seconds from sending the query to having read the whole response, and the body
        (not decoded: JSON decoding is left out of the timing, as it is for ours)."""
        params = {"db": DATABASE, "q": q, "epoch": "ms"}
        url = "/query?" + urlencode(params)
        started = time.perf_counter()
        conn.request("GET", url)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            raise InfluxError(f"query failed ({response.status}): {body[:500]!r}\n{q}")
        return elapsed, body

    def create_database(self, name: str = DATABASE) -> None:
        status, body = self.request("POST", "/query", {"q": f'CREATE DATABASE "{name}"'})
        if status != 200 or b'"error"' in body:
            raise InfluxError(f"CREATE DATABASE failed ({status}): {body[:500]!r}")

    def write_lines(self, lines: Iterable[str], *, db: str = DATABASE, precision: str = "u") -> int:
        """Write line protocol in batches of BATCH_LINES over one keep-alive connection.
        Returns how many lines were written."""
        written = 0
        conn = self._connection(300.0)
        try:
            batch: list[str] = []
            for line in lines:
                batch.append(line)
                if len(batch) >= BATCH_LINES:
                    written += self._write_batch(conn, batch, db, precision)
                    batch = []
            if batch:
                written += self._write_batch(conn, batch, db, precision)
        finally:
            conn.close()
        return written

    def _write_batch(
        self, conn: http.client.HTTPConnection, batch: list[str], db: str, precision: str
    ) -> int:
        body = ("\n".join(batch) + "\n").encode()
        status, answer = self.request(
            "POST", "/write", {"db": db, "precision": precision}, body, conn=conn
        )
        if status != 204:
            raise InfluxError(f"write failed ({status}): {answer[:500]!r}")
        return len(batch)


def line(sensor: str, metric: str, value: float, ts_us: int) -> str:
    """One reading in line protocol (tag values here never need escaping: they are checked
    by ingest to be plain names; spaces, commas and '=' are escaped all the same)."""
    return (
        f"{MEASUREMENT},sensor={_escape(sensor)},metric={_escape(metric)} "
        f"value={float(value)!r} {ts_us}"
    )


def _escape(tag: str) -> str:
    return tag.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _config(workdir: Path, http_port: int, rpc_port: int, *, load_phase: bool) -> str:
    # While the cache is built: snapshot and fully compact a shard after 5 s without writes
    # (defaults 10 min and 4 h), so the data set is stored as a long-running server would
    # have stored a year-old history. Benchmark runs use the defaults.
    cold = (
        '  cache-snapshot-write-cold-duration = "5s"\n  compact-full-write-cold-duration = "5s"\n'
    )
    return f"""\
reporting-disabled = true
bind-address = "{HOST}:{rpc_port}"

[meta]
  dir = "{workdir}/meta"

[data]
  dir = "{workdir}/data"
  wal-dir = "{workdir}/wal"
  query-log-enabled = false
{cold if load_phase else ""}
[coordinator]
  query-timeout = "0s"
  log-queries-after = "0s"

[retention]
  enabled = true

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{HOST}:{http_port}"
  auth-enabled = false
  log-enabled = false
  write-tracing = false
  pprof-enabled = false

[logging]
  level = "warn"

[continuous_queries]
  enabled = false
"""


def installed() -> bool:
    return Path(INFLUXD).is_file()


@contextlib.contextmanager
def running_influxd(
    workdir: Path, *, load_phase: bool = False, start_timeout_s: float = 120.0
) -> Iterator[Influx]:
    """Start influxd on its own config and directories under ``workdir`` (which may already
    hold meta/, data/ and wal/ from an earlier run: it then serves that data); stop it on
    exit, whatever happens. Waits until /ping answers (opening a large data set takes a few
    seconds)."""
    if not installed():
        raise RuntimeError(
            f"no influxd at {INFLUXD}: run scripts/bench-deps.sh as root "
            "(apt-get install -y influxdb)"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, rpc_port = free_port(), free_port()
    while rpc_port == http_port:
        rpc_port = free_port()
    conf = workdir / "influxdb.conf"
    conf.write_text(_config(workdir, http_port, rpc_port, load_phase=load_phase))
    log_path = workdir / "influxd.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [INFLUXD, "run", "-config", str(conf)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=_mosquitto.die_with_parent,  # safe: no other thread runs here
        )
    try:
        influx = Influx(http_port, proc.pid, workdir)
        deadline = time.monotonic() + start_timeout_s
        while (version := influx.ping()) is None:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"influxd exited with {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"influxd did not answer /ping within {start_timeout_s:.0f} s")
            time.sleep(0.1)
        influx.version = f"InfluxDB {version}"
        yield influx
    finally:
        _mosquitto.stop_process(proc, timeout_s=30.0)


def rss_mb(pid: int) -> float:
    """Resident set size of a running process and its descendants, in MB (10^6 bytes; from
    VmRSS in /proc/PID/status)."""
    total_kib = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            for text in Path(f"/proc/{current}/status").read_text().splitlines():
                if text.startswith("VmRSS:"):
                    total_kib += int(text.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return total_kib * 1024 / 1e6
