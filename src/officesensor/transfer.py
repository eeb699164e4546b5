"""Moving readings in and out: CSV (``sensor,metric,id,timestamp,value``, UTC ISO 8601), and
DynamoDB tables in the original sample's format (``import --from dynamodb://…``,
``export --to dynamodb://…``).

Export streams a day at a time, never holding a whole series in memory; import goes through
the store's idempotent ``write_many``, so importing the same file twice changes nothing.
DynamoDB transfers keep a checkpoint file, so an interrupted one continues where it stopped.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

from officesensor.config import Settings, dynamodb_options, sqlite_path
from officesensor.errors import OfficeSensorError
from officesensor.live import LiveAnalytics, flagged, write_and_flag
from officesensor.models import Reading, WriteResult, from_epoch_us
from officesensor.payload import METRIC_NAME, SENSOR_NAME
from officesensor.store import Store, open_store
from officesensor.store.dynamo_client import DynamoClient
from officesensor.store.dynamo_items import parse_pk, parse_reading_item
from officesensor.store.dynamodb import DynamoStore

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
    store = open_store(settings.store, settings.tz)
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
    store = open_store(settings.store, settings.tz)
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


# --------------------------------------------------------------------------- DynamoDB

#: Items per Scan page of an import, readings per write of an export.
DYNAMO_PAGE = 1_000
_EXPORT_CHUNK = 500


@dataclass
class TransferReport:
    """What an import or export run did; ``complete`` is False when it stopped early
    (``max_items``): running it again continues from its checkpoint."""

    items: int = 0  # source items (import) or readings (export) gone through
    result: WriteResult = field(default_factory=WriteResult)
    skipped: int = 0  # items that are not readings (``~`` items, unreadable payloads)
    complete: bool = True


def default_checkpoint(settings: Settings, kind: str, table: str) -> Path:
    """Beside the SQLite database (or in the working directory)."""
    folder = sqlite_path(settings.store).parent if settings.store.startswith("sqlite:") else Path()
    return folder / f"{kind}-{table}.checkpoint.json"


def _load_checkpoint(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint of an unfinished run of the same transfer, if any."""
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise OfficeSensorError(f"cannot read the checkpoint {path}: {exc}") from None
    if state.get("identity") != identity or state.get("complete"):
        return None
    return state


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically (write, fsync, rename): a crash leaves the old or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        json.dump(state, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def import_dynamodb(
    settings: Settings,
    source_url: str,
    *,
    checkpoint: Path,
    progress: Callable[[int, int | None], None] | None = None,
    max_items: int | None = None,
    segments: int = 1,
    page_size: int = DYNAMO_PAGE,
) -> TransferReport:
    """Copy a table in the original format (any items its IoT rule or this app wrote) into
    the configured store, resumably: the Scan's LastEvaluatedKey of each segment is saved
    after each page's readings are committed, so an interrupted import continues where it
    stopped, and the page it was in is met again as duplicates (the store is idempotent).
    Then the anomalies of the imported series are recorded, in time order."""
    options = dynamodb_options(source_url)
    identity = {"source": options.table, "segments": segments}
    state = _load_checkpoint(checkpoint, identity) or {
        "identity": identity,
        "segments": {str(s): {"start": None, "done": False} for s in range(segments)},
        "items": 0,
        "series": [],
        "complete": False,
    }
    report = TransferReport()
    source = DynamoClient(options)
    store = open_store(settings.store, settings.tz)
    try:
        total = int(source.describe().get("ItemCount", 0)) or None
        if progress:
            progress(state["items"], total)
        touched = {tuple(key) for key in state["series"]}
        for segment, seg_state in sorted(state["segments"].items()):
            while not seg_state["done"]:
                if max_items is not None and report.items >= max_items:
                    report.complete = False
                    return report
                page = next(
                    source.scan_pages(int(segment), segments, seg_state["start"], page_size)
                )
                items = page.get("Items", [])
                readings = _readings_of(items, settings.tz)
                report.skipped += len(items) - len(readings)
                _add(report.result, store.write_many(readings))
                touched |= {(r.sensor, r.metric) for r in readings}
                report.items += len(items)
                seg_state["start"] = page.get("LastEvaluatedKey")
                seg_state["done"] = seg_state["start"] is None
                state["items"] += len(items)
                state["series"] = sorted(touched)
                _save_checkpoint(checkpoint, state)
                if progress:
                    progress(state["items"], total)
        for sensor, metric in sorted(touched):
            _flag_series(store, settings, sensor, metric)
        state["complete"] = True
        _save_checkpoint(checkpoint, state)
        return report
    finally:
        store.close()
        source.close()


def _readings_of(items: list[dict[str, Any]], tz: tzinfo) -> list[Reading]:
    readings = []
    for item in items:
        names = parse_pk(item["Metric"]["S"])
        if names is None:  # the app's own ``~`` items, or a partition that is no series
            continue
        sensor, metric = names
        named = item["Metric"]["S"] != metric  # ``<Metric>#<sensor>``: that sensor's only
        parsed = parse_reading_item(item, sensor if named else None, metric, tz)
        if parsed.reading is not None:
            readings.append(parsed.reading)
    return readings


def _flag_series(store: Store, settings: Settings, sensor: str, metric: str) -> None:
    """Record the anomalies the live detector flags over a whole series, in time order, as
    ingest would have (recording is idempotent, so a resumed import may do it again)."""
    analytics = LiveAnalytics(store, settings.window, settings.z, settings.anomaly_method)
    for chunk in store.iter_range(sensor, metric, _BEGINNING, _far_future()):
        found = flagged(analytics.update(chunk))
        if found:
            store.record_anomalies(found)


def _far_future() -> datetime:
    return datetime.now(UTC) + timedelta(days=366)


def export_dynamodb(
    settings: Settings,
    target_url: str,
    *,
    checkpoint: Path,
    progress: Callable[[int, int | None], None] | None = None,
    max_items: int | None = None,
) -> TransferReport:
    """Copy every series of the configured store into a DynamoDB table (created with
    ``officesensor dynamodb create-table``), in time order, recording anomalies as ingest
    would. The last reading written of each series is checkpointed, so a second run
    continues where the first stopped."""
    options = dynamodb_options(target_url)
    identity = {"target": options.table, "store": settings.store}
    state = _load_checkpoint(checkpoint, identity) or {
        "identity": identity,
        "series": {},
        "items": 0,
        "complete": False,
    }
    report = TransferReport()
    source = open_store(settings.store, settings.tz)
    try:
        target = DynamoStore(options, tz=settings.tz)
    except BaseException:
        source.close()
        raise
    try:
        infos = source.series()
        total = sum(info.count for info in infos)
        if progress:
            progress(state["items"], total)
        analytics = LiveAnalytics(target, settings.window, settings.z, settings.anomaly_method)
        for info in infos:
            name = f"{info.sensor}/{info.metric}"
            cursor = state["series"].get(name)
            if cursor == "done":
                continue
            start = _BEGINNING if cursor is None else from_epoch_us(cursor[0])
            stream = source.iter_range(
                info.sensor, info.metric, start, _far_future(), _EXPORT_CHUNK
            )
            for chunk in stream:
                if cursor is not None:
                    chunk = [r for r in chunk if (r.ts_us, r.reading_id) > tuple(cursor)]
                if not chunk:
                    continue
                if max_items is not None and report.items >= max_items:
                    report.complete = False
                    return report
                _add(report.result, write_and_flag(target, chunk, analytics))
                report.items += len(chunk)
                cursor = [chunk[-1].ts_us, chunk[-1].reading_id]
                state["series"][name] = cursor
                state["items"] += len(chunk)
                _save_checkpoint(checkpoint, state)
                if progress:
                    progress(state["items"], total)
            state["series"][name] = "done"
            _save_checkpoint(checkpoint, state)
        state["complete"] = True
        _save_checkpoint(checkpoint, state)
        return report
    finally:
        target.close()
        source.close()
