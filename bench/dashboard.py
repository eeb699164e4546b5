"""Dashboard benchmark: the read side over a year of readings, against InfluxDB 1.6 and the
original sample's per-view Bokeh figure, all in one run on this machine.

    .venv/bin/python bench/dashboard.py            # a year: 365 days x 15 s x 3 metrics
    .venv/bin/python bench/dashboard.py --quick    # smoke run: 30 days, short phases

The data set (about 6.3 M readings for a year) is made once by the simulator's backfill and
cached with an identical copy in InfluxDB (bench/_yeardata.py); each run works on copies.
Then Mosquitto, ``officesensor serve`` (a subprocess on a free port) and a private influxd
are started, and each figure is measured several times after a warm-up, ours beside its
peer, in the same run:

  a) chart data for the last year (~1,000 buckets of min/max/mean): ``/api/chart`` against
     InfluxDB ``GROUP BY time()`` over the same time span and bucket width;
  b) interval statistics with quartiles: ``/api/stats`` against InfluxDB's count, mean,
     stddev, min, percentile 25/50/75 and max over the same span;
  c) a metric page's HTML, one client and 16 concurrent keep-alive clients, against the
     original's approach of building a Bokeh figure on every view (timed in-process);
  d) publish -> event received by a Server-Sent Events client, at 1 and 100 msg/s;
  e) the server's RSS with the data and 200 open SSE connections, and a normal request's
     latency while they are open.

See bench/README.md for what each figure means and how the peer is configured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import _influx
import _mosquitto
import _yeardata
from _mosquitto import HOST, free_port
from ingest_throughput import _cpu_model, _filesystem, _ram_gib, percentile

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SENSOR = "default"
METRIC = "Temperature"
YEAR_S = 365 * 86_400
TARGET_BUCKETS = 1000

TARGET_CHART_SPEEDUP = 50.0
TARGET_CHART_MS = 20.0
TARGET_STATS_MS = 100.0
TARGET_PAGE_MS = 15.0
TARGET_SSE_P99_MS = 50.0
TARGET_RSS_MIB = 200.0


# ----------------------------------------------------------------------------- measuring


def summary(seconds: list[float]) -> dict[str, float]:
    """Median, p95 (nearest rank), min and max in milliseconds."""
    ms = sorted(s * 1000 for s in seconds)
    return {
        "n": len(ms),
        "median": statistics.median(ms),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "min": ms[0],
        "max": ms[-1],
    }


def _fmt_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _times(ratio: float) -> str:
    return f"{ratio:.1f}x faster" if ratio < 10 else f"{ratio:.0f}x faster"


def _show(label: str, s: dict[str, float]) -> str:
    return (
        f"{label:<44} median {_fmt_ms(s['median']):>9}  p95 {_fmt_ms(s['p95']):>9}  "
        f"min {_fmt_ms(s['min']):>9}  ({s['n']} runs)"
    )


class HttpError(RuntimeError):
    pass


class Http:
    """One keep-alive connection to a server; ``get`` times a whole request."""

    def __init__(self, port: int, timeout_s: float = 120.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout_s)

    def get(self, path: str) -> tuple[float, int, bytes, http.client.HTTPResponse]:
        """Seconds from sending the request to having read the whole body, status, body."""
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.conn.request("GET", path)
                response = self.conn.getresponse()
                body = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()  # the server closed an idle keep-alive connection: retry
                if attempt == 2:
                    raise
                continue
            elapsed = time.perf_counter() - started
            if response.getheader("Connection", "").lower() == "close":
                self.conn.close()
            return elapsed, response.status, body, response
        raise AssertionError("unreachable")

    def get_ok(self, path: str) -> tuple[float, bytes, http.client.HTTPResponse]:
        elapsed, status, body, response = self.get(path)
        if status != 200:
            raise HttpError(f"GET {path} answered {status}: {body[:300]!r}")
        return elapsed, body, response

    def close(self) -> None:
        self.conn.close()


def _ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Figure:
    """One row of the final table."""

    name: str
    ours: str = "n/a"
    peer: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: bool | None = None  # None: no target, or not measured
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    log: Path


def _officesensor_command() -> list[str]:
    script = Path(sys.executable).parent / "officesensor"
    if script.exists():
        return [str(script)]
    found = shutil.which("officesensor")
    if found:
        return [found]
    raise RuntimeError("no officesensor command next to this Python: run make (pip install -e .)")


@contextlib.contextmanager
def running_server(store_path: Path, mqtt_port: int, workdir: Path) -> Iterator[Server]:
    """``officesensor serve`` on a free port over ``store_path``; stopped on exit."""
    port = free_port()
    env = {
        **os.environ,
        "OFFICESENSOR_STORE": f"sqlite:///{store_path}",
        "OFFICESENSOR_MQTT_URL": f"mqtt://{HOST}:{mqtt_port}",
        "OFFICESENSOR_MQTT_CLIENT_ID": "bench-dashboard",
        "OFFICESENSOR_SENSOR_TIMEZONE": "UTC",
        "OFFICESENSOR_LOG_LEVEL": "WARNING",
    }
    env.pop("OFFICESENSOR_CONFIG", None)
    log_path = workdir / "serve.log"
    command = [*_officesensor_command(), "serve", "--http", f"{HOST}:{port}"]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
            preexec_fn=_mosquitto.die_with_parent,  # safe: no other thread runs here
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"officesensor serve exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                client = Http(port, timeout_s=5)
                try:
                    _elapsed, status, _body, _r = client.get("/api/series")
                finally:
                    client.close()
                if status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("officesensor serve did not answer /api/series within 120 s")
            time.sleep(0.2)
        yield Server(port, proc.pid, log_path)
    finally:
        _mosquitto.stop_process(proc, timeout_s=20)


# ----------------------------------------------------------------------------- a) chart


def _influxql(select: str, start: datetime, end: datetime, group_by: str = "") -> str:
    """One InfluxQL statement over our series between start (inclusive) and end (exclusive);
    every part comes from this script, nothing from outside."""
    where = (
        f"sensor = '{SENSOR}' AND metric = '{METRIC}' "
        f"AND time >= {_ns(start)} AND time < {_ns(end)}"
    )
    parts = ["SELECT", select, "FROM", _influx.MEASUREMENT, "WHERE", where]
    return " ".join(parts + (["GROUP BY", group_by] if group_by else []))


def _chart_query(start: datetime, end: datetime, width_s: int) -> str:
    select = "min(value), max(value), mean(value), count(value)"
    return _influxql(select, start, end, f"time({width_s}s)")


def _stats_query(start: datetime, end: datetime) -> str:
    select = (
        "count(value), mean(value), stddev(value), min(value), percentile(value, 25), "
        "percentile(value, 50), percentile(value, 75), max(value)"
    )
    return _influxql(select, start, end)


def measure_chart(
    server: Server | None, influx: _influx.Influx, args: argparse.Namespace, now: datetime
) -> Figure:
    fig = Figure(
        "a) chart data, 1 year, ~1,000 buckets",
        target=f">= {TARGET_CHART_SPEEDUP:.0f}x peer, < {TARGET_CHART_MS:.0f} ms",
    )
    path = "/api/chart?" + urlencode(
        {"sensor": SENSOR, "metric": METRIC, "range": "1y", "buckets": TARGET_BUCKETS}
    )
    ours: dict[str, Any] | None = None
    ours_times: list[float] = []
    client = Http(server.port) if server else None
    start, end, width = now - timedelta(seconds=YEAR_S), now, YEAR_S // TARGET_BUCKETS
    try:
        if client:
            try:
                _t, body, _r = client.get_ok(path)
                ours = json.loads(body)
                start, end = _parse_time(ours["start"]), _parse_time(ours["end"])
                width = int(ours["bucket_s"])
            except (HttpError, KeyError, ValueError, OSError) as exc:
                fig.ours = f"failed: {str(exc)[:60]}"
                fig.notes.append(f"ours: {exc}")
                client.close()
                client = None
        query = _chart_query(start, end, width)
        if client:
            print(f"  GET {path}")
        print(f"  InfluxQL: {query}")
        peer_conn = http.client.HTTPConnection(HOST, influx.port, timeout=300)
        peer_times: list[float] = []
        peer_body = b""
        for _ in range(args.peer_warmup):
            influx.timed_query(query, peer_conn)
            if client:
                for _ in range(args.warmup):
                    client.get_ok(path)
        per_round = max(1, args.repeat // args.peer_repeat)
        for _ in range(args.peer_repeat):  # interleaved: a noisy second hits both
            if client:
                for _ in range(per_round):
                    ours_times.append(client.get_ok(path)[0])
            elapsed, peer_body = influx.timed_query(query, peer_conn)
            peer_times.append(elapsed)
        exact_width = YEAR_S // TARGET_BUCKETS
        other_times: list[float] = []
        if width != exact_width:  # for reference: the width, 365 d / 1000
            other = _chart_query(start, end, exact_width)
            other_times = [influx.timed_query(other, peer_conn)[0] for _ in range(3)]
        peer_conn.close()
    finally:
        if client:
            client.close()
    peer = summary(peer_times)
    print(_show(f"InfluxDB GROUP BY time({width}s)", peer))
    if other_times:
        label = f"(InfluxDB GROUP BY time({exact_width}s), reference)"
        print(_show(label, summary(other_times)))
    fig.peer = _fmt_ms(peer["median"])
    peer_series = json.loads(peer_body)["results"][0].get("series", [])
    peer_rows = peer_series[0]["values"] if peer_series else []
    peer_filled = [row for row in peer_rows if row[4]]
    print(
        f"  peer answer: {len(peer_rows)} buckets of {width} s, {len(peer_filled)} with data, "
        f"{sum(row[4] for row in peer_filled):,} readings"
    )
    if ours is not None and ours_times:
        s = summary(ours_times)
        print(_show("ours GET /api/chart", s))
        points = ours["points"]
        print(
            f"  ours answer: {len(points['t'])} buckets of {width} s, "
            f"{sum(c for c in points['count'] if c):,} readings"
        )
        _compare_buckets(points, peer_filled, fig)
        speedup = peer["median"] / s["median"]
        fig.ours = f"{_fmt_ms(s['median'])} (p95 {_fmt_ms(s['p95'])})"
        fig.ratio = _times(speedup)
        fig.met = speedup >= TARGET_CHART_SPEEDUP and s["median"] < TARGET_CHART_MS
    return fig


def _compare_buckets(points: dict[str, list[Any]], peer_rows: list[list[Any]], fig: Figure) -> None:
    """Both answers must hold the same buckets: same start, count, min and max."""
    peer = {int(row[0]): row for row in peer_rows}
    same = differ = 0
    mean_diff = 0.0
    for t, count, mean, low, high in zip(
        points["t"], points["count"], points["mean"], points["min"], points["max"], strict=False
    ):
        if not count:
            continue
        row = peer.get(int(t))
        if row and row[4] == count and abs(row[1] - low) < 1e-9 and abs(row[2] - high) < 1e-9:
            same += 1
            mean_diff = max(mean_diff, abs(row[3] - mean))
        else:
            differ += 1
    text = (
        f"buckets compared with the peer: {same} identical (count, min, max; mean within "
        f"{mean_diff:.1e}), {differ} different, peer has {len(peer)} non-empty"
    )
    print(f"  {text}")
    if differ or same != len(peer):
        fig.notes.append(text)


# ----------------------------------------------------------------------------- b) stats


def measure_stats(
    server: Server | None, influx: _influx.Influx, args: argparse.Namespace, now: datetime
) -> Figure:
    fig = Figure("b) interval statistics, 1 year, quartiles", target=f"< {TARGET_STATS_MS:.0f} ms")
    path = "/api/stats?" + urlencode({"sensor": SENSOR, "metric": METRIC, "range": "1y"})
    client = Http(server.port) if server else None
    start, end = now - timedelta(seconds=YEAR_S), now
    interval: dict[str, Any] | None = None
    ours_times: list[float] = []
    try:
        if client:
            try:
                _t, body, _r = client.get_ok(path)
                intervals = {row["name"]: row for row in json.loads(body)["intervals"]}
                interval = intervals.get("selected") or intervals["1y"]
                start, end = _parse_time(interval["start"]), _parse_time(interval["end"])
            except (HttpError, KeyError, ValueError, OSError) as exc:
                fig.ours = f"failed: {str(exc)[:60]}"
                fig.notes.append(f"ours: {exc}")
                client.close()
                client = None
        query = _stats_query(start, end)
        if client:
            print(f"  GET {path}")
        print(f"  InfluxQL: {query}")
        peer_conn = http.client.HTTPConnection(HOST, influx.port, timeout=600)
        peer_times: list[float] = []
        peer_body = b""
        # No untimed query for the peer here: the chart queries just read the same points
        # (files in the page cache, index loaded), and each of these takes seconds.
        if client:
            for _ in range(args.warmup):
                client.get_ok(path)
        per_round = max(1, args.repeat // args.stats_peer_repeat)
        for _ in range(args.stats_peer_repeat):
            if client:
                for _ in range(per_round):
                    ours_times.append(client.get_ok(path)[0])
            elapsed, peer_body = influx.timed_query(query, peer_conn)
            peer_times.append(elapsed)
        peer_conn.close()
    finally:
        if client:
            client.close()
    peer = summary(peer_times)
    print(_show("InfluxDB count/mean/stddev/min/percentile x3/max", peer))
    fig.peer = _fmt_ms(peer["median"])
    row = json.loads(peer_body)["results"][0]["series"][0]["values"][0]
    names = ("count", "mean", "std", "min", "q25", "median", "q75", "max")
    peer_stats = dict(zip(names, row[1:], strict=True))
    print("  peer answer: " + _stats_text(peer_stats))
    if interval is not None and ours_times:
        s = summary(ours_times)
        print(_show("ours GET /api/stats (all 6 intervals)", s))
        print("  ours answer: " + _stats_text(interval))
        if interval.get("count") != peer_stats["count"]:
            note = f"counts differ: ours {interval.get('count')}, peer {peer_stats['count']}"
            print(f"  {note}")
            fig.notes.append(note)
        error = interval.get("quantile_error") or 0.0
        worst = max(abs(interval[k] - peer_stats[k]) for k in ("q25", "median", "q75"))
        print(
            f"  quartiles: largest difference from the peer's exact ones {worst:.3g} "
            f"(ours says within {error:.3g})"
        )
        fig.ours = f"{_fmt_ms(s['median'])} (p95 {_fmt_ms(s['p95'])})"
        fig.ratio = _times(peer["median"] / s["median"])
        fig.met = s["median"] < TARGET_STATS_MS
    return fig


def _stats_text(stats: dict[str, Any]) -> str:
    def num(key: str) -> str:
        value = stats.get(key)
        return "-" if value is None else f"{value:.3f}"

    count = stats.get("count")
    return (f"n {count:,} " if isinstance(count, int) else "n - ") + " ".join(
        f"{k} {num(k)}" for k in ("mean", "std", "min", "q25", "median", "q75", "max")
    )


# ----------------------------------------------------------------------------- c) page


def measure_page(
    server: Server | None, store_path: Path, args: argparse.Namespace
) -> tuple[Figure, Figure]:
    single = Figure(
        "c) metric page HTML, 1 client", peer="-", target=f"< {TARGET_PAGE_MS:.0f} ms median"
    )
    loaded = Figure(f"   page requests/s, {args.clients} clients")
    path = "/temperature?range=24h"
    peer = summary(_bokeh_per_view(store_path, args))
    print(_show("peer: Bokeh figure + components() per view", peer))
    single.peer = _fmt_ms(peer["median"])
    if server is None:
        return single, loaded
    client = Http(server.port)
    times: list[float] = []
    server_ms: list[float] = []
    try:
        try:
            _t, body, _r = client.get_ok(path)
        except (HttpError, OSError) as exc:
            single.ours = f"failed: {str(exc)[:60]}"
            single.notes.append(f"ours: {exc}")
            return single, loaded
        size = len(body)
        for _ in range(args.warmup * 3):
            client.get_ok(path)
        for _ in range(args.page_repeat):
            elapsed, _body, response = client.get_ok(path)
            times.append(elapsed)
            timing = _server_timing_ms(response.getheader("Server-Timing"))
            if timing is not None:
                server_ms.append(timing / 1000)  # summary() takes seconds
    finally:
        client.close()
    s = summary(times)
    print(f"  GET {path}: {size:,} bytes of HTML")
    print(_show("ours GET /temperature?range=24h (client-side)", s))
    median = s["median"]
    if server_ms:
        st = summary(server_ms)
        print(_show("ours, Server-Timing header", st))
        median = st["median"]
        single.notes.append("ours: the Server-Timing header's median")
    single.ours = f"{_fmt_ms(s['median'])} (p95 {_fmt_ms(s['p95'])})"
    single.ratio = _times(peer["median"] / s["median"])
    single.met = median < TARGET_PAGE_MS

    rate, latencies, errors = _load(server.port, path, args.clients, args.load_s)
    ls = summary(latencies) if latencies else None
    print(
        f"ours, {args.clients} keep-alive clients for {args.load_s:g} s: {rate:,.0f} req/s, "
        + (f"latency p50 {_fmt_ms(ls['median'])} p99 {_fmt_ms(ls['p99'])}, " if ls else "")
        + f"{errors} errors"
    )
    loaded.ours = f"{rate:,.0f} req/s" + (f" (p50 {_fmt_ms(ls['median'])})" if ls else "")
    loaded.peer = f"{1000 / peer['median']:,.1f}/s/core"
    loaded.notes.append("peer: 1 / the per-view figure time, on one core, for the figure alone")
    if errors:
        loaded.notes.append(f"{errors} requests failed under load")
    return single, loaded


def _server_timing_ms(header: str | None) -> float | None:
    """The server's own time from a Server-Timing header, in ms: its ``total`` entry, else
    the longest ``dur`` (entries may nest); None if absent."""
    if not header:
        return None
    durations: dict[str, float] = {}
    for entry in header.split(","):
        name, *params = (item.strip() for item in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key == "dur":
                with contextlib.suppress(ValueError):
                    durations[name] = float(value)
    if not durations:
        return None
    return durations.get("total", max(durations.values()))


def _bokeh_per_view(store_path: Path, args: argparse.Namespace) -> list[float]:
    """The original sample's page view, timed in-process: read the metric's last 50 readings,
    compute the moving average and standard deviation over 10 and the z-scores, build a Bokeh
    figure (observations, moving average, mean +/- 2 sigma band, anomalies) and embed it with
    ``bokeh.embed.components``, as its Flask view does on every request."""
    import numpy as np
    from bokeh.embed import components
    from bokeh.models import ColumnDataSource
    from bokeh.plotting import figure

    from officesensor.store import open_store

    store = open_store(f"sqlite:///{store_path}")

    def view() -> str:
        readings = store.latest(SENSOR, METRIC, 50)
        x = [r.ts.replace(tzinfo=None) for r in readings]
        values = np.array([r.value for r in readings], dtype=float)
        window = 10
        mean = np.full(values.size, np.nan)
        std = np.full(values.size, np.nan)
        for i in range(window - 1, values.size):
            chunk = values[i - window + 1 : i + 1]
            mean[i], std[i] = chunk.mean(), chunk.std(ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (values - mean) / std
        flagged = np.abs(np.nan_to_num(z)) >= 2
        source = ColumnDataSource(
            {
                "x": x,
                "value": values,
                "mean": mean,
                "lower": mean - 2 * std,
                "upper": mean + 2 * std,
            }
        )
        plot = figure(
            title=f"{METRIC}",
            x_axis_type="datetime",
            height=350,
            sizing_mode="stretch_width",
            tools="pan,wheel_zoom,box_zoom,reset,save",
        )
        plot.varea(x="x", y1="lower", y2="upper", source=source, fill_alpha=0.2)
        plot.line(x="x", y="value", source=source, legend_label="observation")
        plot.line(x="x", y="mean", source=source, color="orange", legend_label="moving average")
        plot.scatter(
            x=[x[i] for i in np.flatnonzero(flagged)],
            y=values[flagged],
            color="red",
            size=8,
            legend_label="anomaly",
        )
        script, div = components(plot)
        return script + div

    try:
        for _ in range(3):
            view()
        times = []
        for _ in range(args.bokeh_repeat):
            started = time.perf_counter()
            view()
            times.append(time.perf_counter() - started)
    finally:
        store.close()
    return times


def _load(port: int, path: str, clients: int, duration_s: float) -> tuple[float, list[float], int]:
    """``clients`` threads, each with one keep-alive connection, requesting ``path`` in a
    loop for ``duration_s``. Returns (requests/s, latencies, errors)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_at = time.perf_counter() + 0.2
    stop_at = start_at + duration_s
    barrier = threading.Barrier(clients)

    def worker(index: int) -> None:
        client = Http(port, timeout_s=30)
        barrier.wait()
        try:
            while (now := time.perf_counter()) < stop_at:
                if now < start_at:
                    time.sleep(start_at - now)
                    continue
                try:
                    elapsed, status, _body, _r = client.get(path)
                except (OSError, http.client.HTTPException):
                    errors[index] += 1
                    client.close()
                    client = Http(port, timeout_s=30)
                    continue
                if status == 200:
                    latencies[index].append(elapsed)
                else:
                    errors[index] += 1
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration_s + 60)
    done = [x for per in latencies for x in per]
    return len(done) / duration_s, done, sum(errors)


# ----------------------------------------------------------------------------- d) SSE


class SseClient:
    """A raw HTTP/1.1 client of ``/api/stream``: records when each reading's event arrives,
    keyed by the reading ID (``data`` JSON ``id``)."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
            "Cache-Control: no-cache\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        self.file = self.sock.makefile("rb")
        status = self.file.readline().decode(errors="replace").strip()
        if " 200" not in status:
            raise HttpError(f"GET {path} answered {status!r}")
        self.chunked = False
        while (line := self.file.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode(errors="replace").partition(":")
            if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True
        self.received: dict[int, int] = {}  # reading ID -> time.time_ns() at receipt
        self.events = 0
        self.arrived = threading.Condition()
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _lines(self) -> Iterator[bytes]:
        if not self.chunked:
            while line := self.file.readline():
                yield line
            return
        pending = b""
        while True:
            size_line = self.file.readline()
            if not size_line:
                return
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            pending += self.file.read(size)
            self.file.readline()  # the CRLF after the chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line + b"\n"

    def _run(self) -> None:
        event = ""
        data: list[str] = []
        with contextlib.suppress(OSError, ValueError):
            for raw in self._lines():
                now = time.time_ns()
                line = raw.decode(errors="replace").rstrip("\r\n")
                if line == "":
                    if event in ("", "reading") and data:
                        self._record("\n".join(data), now)
                    event, data = "", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())

    def _record(self, text: str, now_ns: int) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            reading_id = int(json.loads(text)["id"])
            with self.arrived:
                self.events += 1
                self.received.setdefault(reading_id, now_ns)
                self.arrived.notify_all()

    def wait_for(self, reading_id: int, timeout_s: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: reading_id in self.received, timeout_s)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


class Publisher:
    """paho, QoS 1, our sensor's payloads on office/metrics/<metric>, current timestamps and
    increasing IDs (epoch ms). Records the wall time of each publish by reading ID."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-dashboard-pub")
        self.client.max_inflight_messages_set(1000)
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()
        self.last_id = 0
        self.sent: dict[int, int] = {}

    def publish(self, value: float) -> int:
        from officesensor.models import Reading, from_epoch_us
        from officesensor.payload import encode_reading

        sent_ns = time.time_ns()
        self.last_id = max(self.last_id + 1, sent_ns // 1_000_000)
        reading = Reading(SENSOR, METRIC, self.last_id, from_epoch_us(sent_ns // 1000), value)
        topic, payload = encode_reading(reading, UTC)
        self.sent[self.last_id] = time.time_ns()
        self.client.publish(topic, payload, qos=1)
        return self.last_id

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def measure_sse(server: Server, broker_port: int, args: argparse.Namespace) -> list[Figure]:
    path = "/api/stream?" + urlencode({"sensor": SENSOR, "metric": METRIC})
    figures = []
    try:
        stream = SseClient(server.port, path)
    except (HttpError, OSError) as exc:
        fig = Figure("d) publish -> SSE event", ours=f"failed: {str(exc)[:60]}")
        fig.notes.append(f"ours: {exc}")
        return [fig]
    publisher = Publisher(broker_port)
    try:
        # Until ingest is subscribed and the stream is live, probes go unanswered.
        deadline = time.monotonic() + 60
        while not stream.wait_for(publisher.publish(70.0), 2.0):
            if time.monotonic() > deadline:
                raise RuntimeError("no event on /api/stream within 60 s of publishing")
        for rate, duration in ((1.0, args.sse_slow_s), (100.0, args.sse_fast_s)):
            first_id = publisher.last_id + 1
            count = round(rate * duration)
            started = time.perf_counter()
            for i in range(count):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                publisher.publish(round(65.0 + (i % 1000) / 100, 2))
            last_id = publisher.last_id
            stream.wait_for(last_id, 10.0)
            time.sleep(0.5)
            ids = [i for i in publisher.sent if first_id <= i <= last_id]
            latencies = [
                (stream.received[i] - publisher.sent[i]) / 1e9 for i in ids if i in stream.received
            ]
            lost = len(ids) - len(latencies)
            fig = Figure(
                f"d) publish -> SSE event, {rate:g} msg/s",
                target=f"p99 < {TARGET_SSE_P99_MS:.0f} ms",
            )
            if latencies:
                s = summary(latencies)
                print(
                    f"SSE at {rate:g} msg/s for {duration:g} s: {len(latencies)} events, "
                    f"p50 {_fmt_ms(s['median'])} p95 {_fmt_ms(s['p95'])} "
                    f"p99 {_fmt_ms(s['p99'])} max {_fmt_ms(s['max'])}, {lost} missing"
                )
                fig.ours = f"p50 {_fmt_ms(s['median'])}, p99 {_fmt_ms(s['p99'])}"
                fig.met = s["p99"] < TARGET_SSE_P99_MS and lost == 0
            if lost:
                fig.notes.append(f"{lost} of {len(ids)} published readings had no event")
            figures.append(fig)
    finally:
        publisher.close()
        stream.close()
    return figures


# ----------------------------------------------------------------------------- e) RSS


async def _open_streams(port: int, path: str, count: int) -> None:
    """Open ``count`` SSE connections at once; they stay in _STREAMS until closed."""

    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection(HOST, port)
        request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
        writer.write(request.encode() + b"\r\n")
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 30)
        if b" 200" not in status:
            writer.close()
            raise HttpError(f"stream answered {status!r}")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        streams.append((reader, writer))
        return writer

    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        for _reader, writer in streams:
            writer.close()
        raise HttpError(f"{len(failures)} of {count} streams failed to open: {failures[0]!r}")
    _STREAMS[:] = streams


_STREAMS: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []


async def _fan_out(reading_id: int, timeout_s: float) -> list[float]:
    """Seconds until each open stream has seen the reading's ID (streams that miss it are
    left out of the list)."""
    needle = f'"id":{reading_id}'.encode()
    needle_spaced = f'"id": {reading_id}'.encode()
    started = time.perf_counter()

    async def watch(reader: asyncio.StreamReader) -> float | None:
        buffer = b""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    chunk = await reader.read(65536)
                    if not chunk:
                        return None
                    buffer = buffer[-200:] + chunk
                    if needle in buffer or needle_spaced in buffer:
                        return time.perf_counter() - started
        except TimeoutError:
            return None

    found = await asyncio.gather(*(watch(r) for r, _w in _STREAMS))
    return [f for f in found if f is not None]


def measure_rss(
    server: Server, broker_port: int, influx: _influx.Influx, args: argparse.Namespace
) -> list[Figure]:
    rss = Figure(
        f"e) server RSS, data + {args.streams} SSE connections",
        target=f"< {TARGET_RSS_MIB:.0f} MB",
    )
    series = Figure(f"   /api/series with {args.streams} streams open")
    idle_mib = _influx.rss_mb(server.pid)
    rss.peer = f"{_influx.rss_mb(influx.pid):.0f} MB (influxd)"
    path = "/api/stream?" + urlencode({"sensor": SENSOR, "metric": METRIC})

    async def run() -> None:
        try:
            await _open_streams(server.port, path, args.streams)
        except (HttpError, OSError) as exc:
            rss.ours = f"failed: {str(exc)[:60]}"
            rss.notes.append(f"ours: {exc}")
            return
        try:
            await asyncio.sleep(2.0)
            open_mib = _influx.rss_mb(server.pid)
            threads = _threads(server.pid)
            times = []
            for _ in range(args.series_repeat):
                elapsed = await asyncio.to_thread(_one_get, server.port, "/api/series")
                times.append(elapsed)
            publisher = await asyncio.to_thread(Publisher, broker_port)
            try:
                reading_id = publisher.publish(70.5)
                delivered = await _fan_out(reading_id, 10.0)
            finally:
                await asyncio.to_thread(publisher.close)
            peak_mib = max(open_mib, _influx.rss_mb(server.pid))
            s = summary(times)
            print(
                f"server RSS: {idle_mib:.0f} MB before, {open_mib:.0f} MB with {args.streams} "
                f"SSE connections open ({threads} threads), {peak_mib:.0f} MB after one "
                f"reading was sent to all of them"
            )
            print(_show(f"GET /api/series with {args.streams} streams open", s))
            fan = summary(delivered) if delivered else None
            print(
                f"one reading published: {len(delivered)} of {args.streams} streams had it"
                + (
                    f", after p50 {_fmt_ms(fan['median'])} / max {_fmt_ms(fan['max'])}"
                    if fan
                    else ""
                )
            )
            rss.ours = f"{peak_mib:.0f} MB ({idle_mib:.0f} MB idle)"
            rss.met = peak_mib < TARGET_RSS_MIB
            series.ours = f"{_fmt_ms(s['median'])} (max {_fmt_ms(s['max'])})"
            if len(delivered) < args.streams:
                rss.notes.append(f"only {len(delivered)} of {args.streams} streams got a reading")
        finally:
            for _reader, writer in _STREAMS:
                writer.close()
            _STREAMS.clear()

    asyncio.run(run())
    return [rss, series]


def _one_get(port: int, path: str) -> float:
    client = Http(port, timeout_s=30)
    try:
        return client.get_ok(path)[0]
    finally:
        client.close()


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


# ----------------------------------------------------------------------------- report


def describe_machine(root: Path, influx_version: str) -> list[str]:
    return [
        f"machine  : {os.cpu_count()} CPUs ({_cpu_model()}), {_ram_gib():.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}",
        f"software : Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{influx_version}, bokeh {metadata.version('bokeh')}, {_mosquitto.version()}",
        f"data dir : {root} ({_filesystem(root)}); load average at start {os.getloadavg()[0]:.2f}",
    ]


def report(figures: list[Figure]) -> bool:
    print()
    header = f"{'figure':<44} {'ours':<26} {'peer':<22} {'ratio':<13} {'target':<24} verdict"
    print(header)
    print("-" * len(header))
    for f in figures:
        verdict = {True: "met", False: "NOT MET", None: ""}[f.met]
        print(f"{f.name:<44} {f.ours:<26} {f.peer:<22} {f.ratio:<13} {f.target:<24} {verdict}")
    notes = [(f.name.split(",")[0].strip(), n) for f in figures for n in f.notes]
    if notes:
        print()
        for name, note in notes:
            print(f"note ({name}): {note}")
    judged = [f.met for f in figures if f.target != "-"]
    return bool(judged) and all(m is True for m in judged)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=365, help="span of the data set")
    parser.add_argument("--quick", action="store_true", help="30 days, short phases")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per figure (ours)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (ours)")
    parser.add_argument("--peer-repeat", type=int, default=5, help="timed InfluxDB chart queries")
    parser.add_argument(
        "--stats-peer-repeat", type=int, default=3, help="timed InfluxDB percentile queries"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent page clients")
    parser.add_argument("--load-s", type=float, default=10.0, help="page load phase, seconds")
    parser.add_argument("--sse-slow-s", type=float, default=30.0, help="1 msg/s phase, seconds")
    parser.add_argument("--sse-fast-s", type=float, default=20.0, help="100 msg/s phase, seconds")
    parser.add_argument("--streams", type=int, default=200, help="SSE connections for RSS")
    parser.add_argument("--peer-only", action="store_true", help="InfluxDB figures only")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached data set")
    parser.add_argument("--tmpdir", type=Path, help="where the run's copies and logs live")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.days = 30 if args.days == 365 else args.days
        args.repeat, args.peer_repeat, args.stats_peer_repeat = 10, 3, 2
        args.load_s, args.sse_slow_s, args.sse_fast_s = 3.0, 5.0, 5.0
    args.peer_warmup = 1
    args.page_repeat = max(50, args.repeat * 5)
    args.bokeh_repeat = max(20, args.repeat)
    args.series_repeat = 10
    if min(args.days, args.repeat, args.peer_repeat, args.stats_peer_repeat, args.clients) < 1:
        parser.error("--days, --repeat, --peer-repeat and --clients must be positive")
    return args


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _ensure_deps() -> None:
    if _influx.installed() and Path(_mosquitto.MOSQUITTO).exists():
        return
    result = subprocess.run(["sh", str(REPO / "scripts" / "bench-deps.sh")], check=False)
    if result.returncode != 0 or not _influx.installed():
        raise RuntimeError("InfluxDB or Mosquitto missing: run scripts/bench-deps.sh as root")


def run(args: argparse.Namespace, root: Path) -> int:
    _ensure_deps()
    data = _yeardata.ensure(args.days, rebuild=args.rebuild)
    meta = data.meta
    print(
        f"data set : {data.readings:,} readings ({args.days} days x {meta['interval_s']} s x "
        f"{len(meta['readings'])} metrics, simulator seed {meta['seed']}), cached in "
        f"{data.directory} (built in {meta['backfill_s']:.0f} s + InfluxDB load "
        f"{meta['influx_load_s']:.0f} s + compaction {meta['influx_compaction_s']:.0f} s)"
    )
    started = time.perf_counter()
    store_path, influx_dir = _yeardata.working_copy(data, root / "data")
    print(f"copied the cache to {root / 'data'} in {time.perf_counter() - started:.1f} s")
    figures: list[Figure] = []
    with _influx.running_influxd(influx_dir) as influx:
        now = datetime.now(UTC)
        _yeardata.top_up(store_path, influx, data.end, now)
        for line in describe_machine(root, influx.version):
            print(line)
        print(f"peer     : private influxd on 127.0.0.1:{influx.port}, {_influx.LAYOUT}")
        print(
            "           defaults except reporting, ports, access/query logs and the _internal "
            "monitor database off; shards fully compacted (see bench/_influx.py)"
        )
        with contextlib.ExitStack() as stack:
            server: Server | None = None
            broker_port = 0
            if not args.peer_only:
                broker = stack.enter_context(
                    _mosquitto.running_broker(root / "broker", persistence=True)
                )
                broker_port = broker.port
                server = stack.enter_context(running_server(store_path, broker.port, root))
                print(
                    f"ours     : officesensor serve on 127.0.0.1:{server.port} (pid {server.pid}), "
                    f"store sqlite:///{store_path}, broker 127.0.0.1:{broker.port}"
                )
            now = datetime.now(UTC)
            print("\na) chart data, the last year")
            figures.append(measure_chart(server, influx, args, now))
            print("\nb) interval statistics, the last year")
            figures.append(measure_stats(server, influx, args, now))
            print("\nc) a metric page")
            figures.extend(measure_page(server, store_path, args))
            if server is not None:
                print("\nd) publish -> event on /api/stream")
                figures.extend(measure_sse(server, broker_port, args))
                print(f"\ne) memory with {args.streams} live connections")
                figures.extend(measure_rss(server, broker_port, influx, args))
    met = report(figures)
    if args.days < 365:
        print(
            f"note: the data set spans {args.days} days, so the 1-year figures cover "
            f"{args.days} days of readings (the issue's figures need the full year)"
        )
    print(
        f"measured in {time.perf_counter() - started:.0f} s (cache building not counted); "
        f"load average at the end {os.getloadavg()[0]:.2f}"
    )
    if args.peer_only:
        print("\n(--peer-only: our figures were not measured)")
    else:
        print(f"\nall targets met: {'yes' if met else 'no'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # stop every process on SIGTERM too
    root = Path(tempfile.mkdtemp(prefix="officesensor-dashboard-", dir=args.tmpdir))
    root.chmod(0o711)  # the broker, once it drops root, must reach its directory inside
    try:
        return run(args, root)
    except KeyboardInterrupt:
        print("\ninterrupted: every process stopped", file=sys.stderr)
        return 130
    except (RuntimeError, _influx.InfluxError) as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
