"""The dashboard benchmark's data: a year (or ``days``) of simulated readings, one every 15 s
for each of the three metrics, made once and cached, in two copies holding identical points:

- ``store.db``: our SQLite store, filled by the simulator's backfill
  (``officesensor.sensor.backfill``: each reading is encoded as our sensor publishes it and
  parsed back by ``payload.parse_message``, then ``Store.write_many`` in large batches);
- ``influx/``: an InfluxDB 1.6 data directory with the same readings, read back from the
  SQLite file through ``Store.range`` in 7-day chunks and written with line protocol. Before
  the cache is closed the instance is left to snapshot its cache and fully compact every
  shard, as a year-old data set in a long-running InfluxDB would be.

Only the Store API is used (``open_store``, ``write_many`` via backfill, ``range``,
``series``), never table names: the SQLite schema may change. The cache lives in
``$OFFICESENSOR_BENCH_CACHE`` or ``~/.cache/officesensor-bench/`` under a key made of
``CACHE_VERSION``, the store's schema version (``PRAGMA user_version`` of a fresh store) and
the span, so a schema change regenerates it. ``meta.json`` is written last: a directory
without it is an interrupted build and is rebuilt.

A benchmark run works on copies (``working_copy``), so it never changes the cache, and tops
them up (``top_up``) from the cache's end to now with the same simulator, so "the last 24 h"
and "the last year" are full even when the cache is some days old.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import _influx
from officesensor.models import DEFAULT_SENSOR
from officesensor.sensor.backfill import backfill, history
from officesensor.sensor.simulated import METRICS, SimulatedOffice
from officesensor.store import Store, open_store

#: Bump to throw away every cache made by an earlier version of this module.
CACHE_VERSION = "2"  # 2: day histograms (built as the backfill closes each day)
INTERVAL_S = 15
SEED = 2018
CHUNK = timedelta(days=7)
#: A cache older than this is rebuilt rather than topped up.
MAX_TOP_UP = timedelta(days=30)
#: How long the builder waits for InfluxDB to compact every shard to one file.
COMPACTION_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class YearData:
    directory: Path
    meta: dict[str, Any]

    @property
    def store_path(self) -> Path:
        return self.directory / "store.db"

    @property
    def influx_dir(self) -> Path:
        return self.directory / "influx"

    @property
    def end(self) -> datetime:
        """Exclusive end: the next sample of the simulation would be at this time."""
        return datetime.fromisoformat(self.meta["end"])

    @property
    def readings(self) -> int:
        return int(sum(self.meta["readings"].values()))


def cache_root() -> Path:
    configured = os.environ.get("OFFICESENSOR_BENCH_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "officesensor-bench"


def schema_version() -> int:
    """The schema version this package's SQLite store creates (its ``PRAGMA user_version``)."""
    with tempfile.TemporaryDirectory(prefix="officesensor-schema-") as tmp:
        path = Path(tmp) / "probe.db"
        open_store(f"sqlite:///{path}").close()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])


def cache_key(days: int) -> str:
    return f"v{CACHE_VERSION}-schema{schema_version()}-{days}d-{INTERVAL_S}s"


def _say(stream: TextIO | None, text: str) -> None:
    if stream is not None:
        stream.write(text + "\n")
        stream.flush()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time per cache key (a second run waits for the first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure(days: int, *, rebuild: bool = False, progress: TextIO | None = sys.stderr) -> YearData:
    """The cached data set for ``days`` days, built first when missing, incomplete, too old
    or when ``rebuild`` is set."""
    root = cache_root()
    key = cache_key(days)
    directory = root / key
    with _locked(root / f"{key}.lock"):
        meta_file = directory / "meta.json"
        if meta_file.exists() and not rebuild:
            data = YearData(directory, json.loads(meta_file.read_text()))
            age = datetime.now(UTC) - data.end
            if age <= MAX_TOP_UP:
                return data
            _say(progress, f"data set: cache {directory} is {age.days} days old; rebuilding")
        if directory.exists():
            shutil.rmtree(directory)
        building = root / f"{key}.building"
        shutil.rmtree(building, ignore_errors=True)
        meta = _build(building, days, progress)
        (building / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        building.rename(directory)
        # Other versions' caches stay: another checkout (at another schema) may use them.
        others = [p for p in root.glob(f"v*-{days}d-{INTERVAL_S}s") if p != directory]
        if others:
            _say(progress, f"data set: other caches, not removed: {', '.join(map(str, others))}")
    return YearData(directory, meta)


def _build(directory: Path, days: int, progress: TextIO | None) -> dict[str, Any]:
    directory.mkdir(parents=True)
    store_path = directory / "store.db"
    now = datetime.now(UTC).replace(microsecond=0)
    now -= timedelta(seconds=now.second % INTERVAL_S)
    span = timedelta(days=days)
    _say(
        progress,
        f"data set: building {days} days x {INTERVAL_S} s x {len(METRICS)} metrics in "
        f"{directory} (once; later runs reuse it)",
    )
    started = time.perf_counter()
    store = open_store(f"sqlite:///{store_path}")
    try:
        samples, count = history(SimulatedOffice(seed=SEED), span, INTERVAL_S, now)
        stored, rejected = backfill(store, samples, count, sensor=DEFAULT_SENSOR, progress=progress)
    finally:
        store.close()
    backfill_s = time.perf_counter() - started
    _say(
        progress,
        f"data set: SQLite {stored:,} readings ({rejected} rejected) in {backfill_s:.0f} s",
    )

    started = time.perf_counter()
    store = open_store(f"sqlite:///{store_path}")
    try:
        counts = {info.metric: info.count for info in store.series()}
        with _influx.running_influxd(directory / "influx", load_phase=True) as influx:
            influx.create_database()
            points = _copy_to_influx(store, influx, now - span, now, progress)
            load_s = time.perf_counter() - started
            _check_same(influx, counts, now - span, now)
            compact_started = time.perf_counter()
            _wait_compacted(directory / "influx", progress)
            compaction_s = time.perf_counter() - compact_started
    finally:
        store.close()
    _say(
        progress,
        f"data set: InfluxDB {points:,} points loaded in {load_s:.0f} s, "
        f"compacted in {compaction_s:.0f} s",
    )
    return {
        "cache_version": CACHE_VERSION,
        "schema_version": schema_version(),
        "days": days,
        "interval_s": INTERVAL_S,
        "seed": SEED,
        "sensor": DEFAULT_SENSOR,
        "start": (now - span).isoformat(),
        "end": now.isoformat(),
        "readings": counts,
        "influx_points": points,
        "backfill_s": round(backfill_s, 1),
        "influx_load_s": round(load_s, 1),
        "influx_compaction_s": round(compaction_s, 1),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "influx_layout": _influx.LAYOUT,
    }


def _copy_to_influx(
    store: Store,
    influx: _influx.Influx,
    start: datetime,
    end: datetime,
    progress: TextIO | None,
) -> int:
    """Write every reading of ``DEFAULT_SENSOR`` with start <= time < end, read back from
    the store in CHUNK slices, to InfluxDB. Returns how many points were written."""
    written = 0
    for metric in METRICS:
        cursor = start
        while cursor < end:
            upper = min(cursor + CHUNK, end)
            readings = store.range(DEFAULT_SENSOR, metric, cursor, upper)
            written += influx.write_lines(
                _influx.line(r.sensor, r.metric, r.value, r.ts_us) for r in readings
            )
            cursor = upper
            if progress is not None:
                progress.write(
                    f"\rInfluxDB load: {metric:<12} up to {upper:%Y-%m-%d}  {written:,} points"
                )
                progress.flush()
    if progress is not None:
        progress.write("\n")
    return written


def _check_same(
    influx: _influx.Influx, counts: dict[str, int], start: datetime, end: datetime
) -> None:
    """Both copies must hold the same number of points per metric."""
    where = f"time >= {_ns(start)} AND time < {_ns(end)}"  # InfluxQL from our own numbers
    q = f"SELECT count(value) FROM {_influx.MEASUREMENT} WHERE {where} GROUP BY metric"  # noqa: S608
    series = influx.query(q)
    got = {s["tags"]["metric"]: s["values"][0][1] for s in series}
    if got != counts:
        raise RuntimeError(f"InfluxDB holds {got} points, the SQLite store {counts}")


def _ns(ts: datetime) -> int:
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1000


def _wait_compacted(influx_dir: Path, progress: TextIO | None) -> None:
    """Wait until every shard's cache is snapshotted and the shard is fully compacted (one
    .tsm file, WAL empty), which the load-phase config makes happen after 5 s of quiet."""
    deadline = time.monotonic() + COMPACTION_TIMEOUT_S
    while True:
        database = influx_dir / "data" / _influx.DATABASE
        # data/<db>/<retention policy>/<shard id>/; _series/ holds the series file, no shard
        shards = [p for p in database.glob("*/*") if p.is_dir() and p.parent.name[0] != "_"]
        pending = [s for s in shards if len(list(s.glob("*.tsm"))) != 1]
        wal_bytes = sum(
            f.stat().st_size for f in (influx_dir / "wal").rglob("*.wal") if f.is_file()
        )
        if shards and not pending and wal_bytes == 0:
            if progress is not None:
                progress.write("\n")
            return
        if time.monotonic() > deadline:
            _say(
                progress,
                f"\nInfluxDB: {len(pending)} of {len(shards)} shards not fully compacted "
                f"after {COMPACTION_TIMEOUT_S:.0f} s; going on",
            )
            return
        if progress is not None:
            progress.write(
                f"\rInfluxDB compaction: {len(shards) - len(pending)}/{len(shards)} shards "
                f"fully compacted, WAL {wal_bytes / 1e6:.1f} MB"
            )
            progress.flush()
        time.sleep(2)


# ----------------------------------------------------------------------------- a run's copy


def working_copy(data: YearData, workdir: Path) -> tuple[Path, Path]:
    """Copy the SQLite file and the InfluxDB directory into ``workdir``; a run writes to the
    copies only (the SSE test publishes readings, the server may keep its own state)."""
    workdir.mkdir(parents=True, exist_ok=True)
    store_path = workdir / "store.db"
    for suffix in ("", "-wal"):  # not -shm: SQLite rebuilds the WAL index on open
        source = Path(str(data.store_path) + suffix)
        if source.exists():
            shutil.copyfile(source, Path(str(store_path) + suffix))
    influx_dir = workdir / "influx"
    shutil.copytree(data.influx_dir, influx_dir, ignore=shutil.ignore_patterns("*.conf", "*.log"))
    return store_path, influx_dir


def top_up(
    store_path: Path,
    influx: _influx.Influx,
    since: datetime,
    now: datetime,
    progress: TextIO | None = sys.stderr,
) -> int:
    """Continue the simulation from ``since`` (the cache's end) up to ``now`` in both copies.
    Returns how many readings were added to each."""
    if now - since < timedelta(seconds=INTERVAL_S):
        return 0
    count = int((now - since).total_seconds() // INTERVAL_S)
    samples = SimulatedOffice(seed=SEED + 1).samples(since, INTERVAL_S)
    store = open_store(f"sqlite:///{store_path}")
    try:
        stored, _rejected = backfill(store, samples, count, sensor=DEFAULT_SENSOR, progress=None)
        end = since + timedelta(seconds=count * INTERVAL_S)
        points = _copy_to_influx(store, influx, since, end, None)
    finally:
        store.close()
    if points != stored:
        raise RuntimeError(f"top-up: {stored} readings stored but {points} written to InfluxDB")
    _say(progress, f"data set: topped up with {stored:,} readings from {since:%Y-%m-%d %H:%M} UTC")
    return stored


def main() -> int:
    """``python bench/_yeardata.py [DAYS] [--rebuild]``: build (or show) the cache."""
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    days = int(args[0]) if args else 365
    data = ensure(days, rebuild="--rebuild" in sys.argv)
    print(json.dumps({"directory": str(data.directory), **data.meta}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
