"""CSV export and import of readings: ``sensor,metric,id,timestamp,value`` (UTC ISO 8601).

Export streams a day at a time, never holding a whole series in memory; import goes through
the store's idempotent ``write_many``, so importing the same file twice changes nothing.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TextIO

from officesensor.config import Settings
from officesensor.errors import OfficeSensorError
from officesensor.live import LiveAnalytics, write_and_flag
from officesensor.models import Reading, WriteResult
from officesensor.payload import METRIC_NAME, SENSOR_NAME
from officesensor.store import Store, open_store

COLUMNS = ("sensor", "metric", "id", "timestamp", "value")
_CHUNK = timedelta(days=1)
_IMPORT_BATCH = 10_000
_BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)


def iter_readings(
    store: Store, sensor: str, metric: str, start: datetime, end: datetime
) -> Iterator[Reading]:
    """Readings of one series in [start, end), fetched a day at a time."""
    first = store.range(sensor, metric, start, end, limit=1)
    if not first:
        return
    chunk_start = max(start, first[0].ts)
    while chunk_start < end:
        chunk_end = min(chunk_start + _CHUNK, end)
        yield from store.range(sensor, metric, chunk_start, chunk_end)
        chunk_start = chunk_end


def export_csv(
    settings: Settings,
    out: TextIO,
    *,
    metric: str | None = None,
    sensor: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> int:
    store = open_store(settings.store)
    try:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        count = 0
        for info in store.series():
            if (metric and info.metric.lower() != metric.lower()) or (
                sensor and info.sensor != sensor
            ):
                continue
            for r in iter_readings(
                store,
                info.sensor,
                info.metric,
                start or _BEGINNING,
                end or datetime.now(UTC) + timedelta(days=1),
            ):
                writer.writerow(
                    (
                        r.sensor,
                        r.metric,
                        r.reading_id,
                        r.ts.isoformat(timespec="microseconds"),
                        repr(r.value),
                    )
                )
                count += 1
        return count
    finally:
        store.close()


def import_csv(settings: Settings, source: TextIO) -> WriteResult:
    """Store the file's readings, and record the anomalies the live z-score flags among the
    new ones (as ingest would have, for readings in time order)."""
    store = open_store(settings.store)
    analytics = LiveAnalytics(store, settings.window, settings.z, settings.anomaly_method)
    total = WriteResult()

    try:
        batch: list[Reading] = []
        for reading in parse_csv(source):
            batch.append(reading)
            if len(batch) >= _IMPORT_BATCH:
                _add(total, write_and_flag(store, batch, analytics))
                batch.clear()
        _add(total, write_and_flag(store, batch, analytics))
    finally:
        store.close()
    return total


def parse_csv(source: Iterable[str]) -> Iterator[Reading]:
    reader = csv.DictReader(source)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise OfficeSensorError(f"CSV header must be {','.join(COLUMNS)}")
    for row in reader:
        try:
            yield _reading(row)
        except (ValueError, TypeError) as exc:
            raise OfficeSensorError(f"CSV line {reader.line_num}: {exc}") from None


def _reading(row: dict[str, str]) -> Reading:
    if not SENSOR_NAME.fullmatch(row["sensor"] or ""):
        raise ValueError(f"bad sensor name {row['sensor']!r}")
    if not METRIC_NAME.fullmatch(row["metric"] or ""):
        raise ValueError(f"bad metric name {row['metric']!r}")
    ts = datetime.fromisoformat(row["timestamp"])
    if ts.tzinfo is None:
        raise ValueError("timestamp needs an offset")
    value = float(row["value"])
    if not math.isfinite(value):
        raise ValueError("value must be finite")
    reading_id = int(row["id"])
    if reading_id < 0:
        raise ValueError("id must not be negative")
    return Reading(row["sensor"], row["metric"], reading_id, ts.astimezone(UTC), value)


def _add(total: WriteResult, part: WriteResult) -> None:
    total.stored += part.stored
    total.duplicates += part.duplicates
    total.conflicts += part.conflicts
    total.conflicting.extend(part.conflicting)
