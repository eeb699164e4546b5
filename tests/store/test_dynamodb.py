"""DynamoDB store specifics, against moto's server over HTTP (the contract suite in
test_contract.py runs on this store too): tables filled by the original IoT rule,
conditional writes, throttling and unprocessed items, read-only mode, the rollup cache and
its request bounds."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from officesensor.config import dynamodb_options
from officesensor.errors import StoreError
from officesensor.models import AnomalyRecord, Reading, WriteResult
from officesensor.store import open_store
from officesensor.store.dynamodb import DynamoStore
from tests.dynamo_helpers import (
    Faults,
    OriginalRun,
    RequestCounter,
    fake_response,
    fill_like_the_rule,
    original_item,
    raw_client,
    throttled,
)
from tests.store.conftest import fresh_table, moto
from tests.store.test_contract import _assert_buckets, _assert_stats, brute_buckets, brute_stats

LA = ZoneInfo("America/Los_Angeles")
T0 = datetime(2024, 3, 1, 8, 0, 0, 250000, tzinfo=UTC)


def _table(url: str) -> str:
    return dynamodb_options(url).table


@pytest.fixture
def url() -> str:
    return fresh_table()


@pytest.fixture
def store(url: str) -> Iterator[DynamoStore]:
    opened = DynamoStore(dynamodb_options(url), tz=LA, counter_refresh_s=0.0)
    try:
        yield opened
    finally:
        opened.close()


def ours(i: int, *, sensor: str = "default", value: float | None = None) -> Reading:
    """Our sensor's reading: ID = epoch ms of its time."""
    ts = T0 + timedelta(seconds=15 * i)
    return Reading(
        sensor, "Temperature", int(ts.timestamp() * 1000), ts, 70.0 + i if value is None else value
    )


def all_items(url: str) -> list[dict[str, Any]]:
    client = raw_client(moto())
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": _table(url)}
    while True:
        page = client.scan(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def reading_items(url: str) -> list[dict[str, Any]]:
    return [item for item in all_items(url) if not item["Metric"]["S"].startswith("~")]


# --------------------------------------------------------------------------- the original rule


def test_a_table_filled_by_the_original_rule_is_read(url: str) -> None:
    client = raw_client(moto())
    runs = [
        OriginalRun(datetime(2024, 1, 10, 9, 0), 400),  # overwritten up to ID 149 by:
        OriginalRun(datetime(2024, 1, 12, 17, 30), 150),
    ]
    held = fill_like_the_rule(client, _table(url), runs, LA, ("Temperature", "Humidity"))
    temperature = held["Temperature"]
    assert len(temperature) == 400  # what the table holds: run 2, then run 1's IDs 150-399
    # the original rule's items carry extra fields too: tolerated
    item = original_item("Pressure", 3, 1013.25, datetime(2024, 1, 12, 17, 31, 0, 5))
    item["payload"]["M"]["Firmware"] = {"S": "v1.2"}
    client.put_item(TableName=_table(url), Item=item)
    store = DynamoStore(dynamodb_options(url), tz=LA, exact_limit=0)
    try:
        assert store.latest("default", "Temperature", 5) == temperature[-5:]
        assert store.first_time("default", "Temperature") == temperature[0].ts
        start, end = temperature[100].ts, temperature[300].ts
        assert store.range("default", "Temperature", start, end) == temperature[100:300]
        assert store.range("default", "Temperature", start, end, limit=7) == temperature[100:107]
        streamed = [
            r for c in store.iter_range("default", "Temperature", start, end, 33) for r in c
        ]
        assert streamed == temperature[100:300]
        before = temperature[260].ts
        assert store.latest("default", "Temperature", 3, before=before) == temperature[257:260]
        infos = {(i.sensor, i.metric): i for i in store.series()}
        assert set(infos) == {
            ("default", "Temperature"),
            ("default", "Humidity"),
            ("default", "Pressure"),
        }
        assert infos["default", "Temperature"].count == 400
        assert infos["default", "Temperature"].latest == temperature[-1]
        assert infos["default", "Pressure"].latest == Reading(
            "default", "Pressure", 3, datetime(2024, 1, 13, 1, 31, 0, 5, tzinfo=UTC), 1013.25
        )
        lo, hi = datetime(2024, 1, 10, tzinfo=UTC), datetime(2024, 1, 14, tzinfo=UTC)
        for width in (60, 900, 3600, 86400, 7):
            _assert_buckets(
                store.buckets("default", "Temperature", lo, hi, width),
                brute_buckets(temperature, lo, hi, width),
            )
        _assert_stats(
            store.interval_stats("default", "Temperature", lo, hi), brute_stats(temperature, lo, hi)
        )
    finally:
        store.close()
    assert len(reading_items(url)) == 801  # reading writes nothing but ~ items


def test_counters_that_go_on_and_restart_while_the_store_reads(
    url: str, store: DynamoStore
) -> None:
    client = raw_client(moto())
    table = _table(url)
    first = fill_like_the_rule(client, table, [OriginalRun(datetime(2024, 2, 1, 8, 0), 300)], LA)
    readings = first["Temperature"]
    assert store.latest("default", "Temperature", 2) == readings[-2:]
    # the program counts on, then restarts twice; the store reads on in between
    later = [
        OriginalRun(datetime(2024, 2, 1, 8, 0), 340),  # IDs 300-339 are new (0-299 again)
        OriginalRun(datetime(2024, 2, 3, 8, 0), 120),  # restart: overwrites 0-119
        OriginalRun(datetime(2024, 2, 4, 8, 0), 60),  # and again: 0-59
    ]
    held: dict[int, Reading] = {r.reading_id: r for r in readings}
    for n, run in enumerate(later):
        rows = fill_like_the_rule(client, table, [run], LA, seed=10 + n)["Temperature"]
        for r in rows:
            held[r.reading_id] = r
        expected = sorted(held.values(), key=lambda r: (r.ts, r.reading_id))
        assert store.latest("default", "Temperature", 10) == expected[-10:], n
        span = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))
        assert store.range("default", "Temperature", *span) == expected, n


def test_our_sensor_through_the_rule_and_through_ingest_are_one_reading(
    url: str, store: DynamoStore
) -> None:
    """Our sensor's ID is its epoch ms: the rule and the app write the same key."""
    client = raw_client(moto())
    reading = ours(1)
    client.put_item(
        TableName=_table(url),
        Item={
            "Metric": {"S": "Temperature"},
            "ID": {"N": str(reading.reading_id)},
            "payload": {
                "M": {
                    "Temperature": {"N": repr(reading.value)},
                    "ID": {"N": str(reading.reading_id)},
                    "Timestamp": {"S": reading.ts.astimezone(LA).isoformat()},
                }
            },
        },
    )
    assert store.write_many([reading, ours(2)]) == WriteResult(
        stored=1, duplicates=1, new=[ours(2)]
    )
    assert store.latest("default", "Temperature", 10) == [reading, ours(2)]
    keys = sorted(int(item["ID"]["N"]) for item in reading_items(url))
    assert keys == [ours(1).reading_id, ours(2).reading_id]


# --------------------------------------------------------------------------- conditional writes


def test_conditional_writes_never_overwrite(url: str, store: DynamoStore) -> None:
    original = ours(0)
    store.write_many([original])
    before = reading_items(url)
    loser = ours(0, value=-3.5)
    result = store.write_many([loser])
    assert (result.stored, result.conflicts, result.conflicting) == (0, 1, [loser])
    assert reading_items(url) == before
    assert store.conflicts() == [loser]
    # another reading of the same ID and millisecond (its µs differ): both kept
    other_us = Reading("default", "Temperature", original.reading_id,
                       original.ts + timedelta(microseconds=1), 1.0)  # fmt: skip
    assert store.write_many([other_us]).stored == 1
    assert store.latest("default", "Temperature", 5) == [original, other_us]
    assert len(reading_items(url)) == 2
    # a restarted counter (same ID, later time) is a new reading, never an overwrite
    counter = [
        Reading("default", "Humidity", 7, T0 + timedelta(days=d), 40.0 + d) for d in range(3)
    ]
    assert store.write_many(counter).stored == 3
    assert store.latest("default", "Humidity", 5) == counter


def test_two_instances_writing_one_batch_store_it_once(url: str) -> None:
    batch = [ours(i) for i in range(60)]
    stores = [DynamoStore(dynamodb_options(url)) for _ in range(2)]
    results: list[WriteResult] = []
    try:
        threads = [threading.Thread(target=lambda s=s: results.append(s.write_many(batch)))
                   for s in stores]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(r.stored for r in results) == 60
        assert sum(r.duplicates for r in results) == 60
        assert stores[0].latest("default", "Temperature", 100) == batch
        assert len(reading_items(url)) == 60
    finally:
        for s in stores:
            s.close()


def _refuse(request: Any) -> Any:
    return fake_response(
        request,
        400,
        {"__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
         "message": "refused (injected by the test)"},
    )  # fmt: skip


def test_a_conflict_retried_after_a_failed_commit_is_kept_and_counted_once(
    url: str, store: DynamoStore
) -> None:
    store.write_many([ours(0)])
    loser, new = ours(0, value=-3.5), ours(1)
    batch = [loser, new]

    def rule(operation: str, body: dict[str, Any]) -> Any:
        # the step after the puts: tombstoning the closed hour and day ``new`` falls in
        return _refuse if operation == "BatchWriteItem" else None

    faults = Faults(store._db.client, rule)
    with pytest.raises(StoreError, match="injected"):
        store.write_many(batch)  # the conflict is recorded, then the commit step fails
    assert faults.injected["BatchWriteItem"] == 1
    faults.remove()
    assert store.conflicts() == [loser]
    assert store.series()[0].count == 2  # read between the attempts: what is stored
    results = [store.write_many(batch)]  # ingest's retry
    assert results[0] == WriteResult(stored=1, conflicts=1, conflicting=[loser], new=[new])
    results.append(store.write_many(batch))  # a redelivery: already kept aside
    assert results[1] == WriteResult(duplicates=2)
    other = DynamoStore(dynamodb_options(url))
    try:
        results.append(other.write_many([loser]))  # another instance meets it
    finally:
        other.close()
    assert results[2] == WriteResult(duplicates=1)
    assert sum(r.conflicts for r in results) == 1
    records = [item for item in all_items(url) if item["Metric"]["S"] == "~conflicts"]
    assert len(records) == 1
    assert store.conflicts() == [loser]
    (info,) = store.series()
    assert (info.count, info.latest) == (2, new)


def test_distinct_conflicting_newcomers_are_each_kept_once(store: DynamoStore) -> None:
    store.write_many([ours(0), ours(1)])
    a, b, c = ours(0, value=1.0), ours(0, value=2.0), ours(1, value=-0.0)
    result = store.write_many([a, b, a, c, b])
    assert (result.conflicts, result.duplicates, result.conflicting) == (3, 2, [a, b, c])
    assert sorted(store.conflicts(), key=lambda r: (r.ts, r.value)) == [a, b, c]
    assert store.write_many([ours(1, value=0.0)]) == WriteResult(duplicates=1)  # is -0.0


# --------------------------------------------------------------------------- throttling


def test_throttling_is_retried_by_the_sdk(url: str) -> None:
    store = DynamoStore(dynamodb_options(fresh_table(retry_mode="standard", max_attempts="4")))
    left = {"n": 6}

    def rule(operation: str, body: dict[str, Any]) -> Any:
        if operation == "PutItem" and left["n"] > 0:
            left["n"] -= 1
            return throttled
        return None

    faults = Faults(store._db.client, rule)
    try:
        batch = [ours(i) for i in range(3)]
        assert store.write_many(batch) == WriteResult(stored=3, new=batch)
        assert faults.injected["PutItem"] == 6
    finally:
        store.close()


def test_throttling_that_outlasts_the_retries_is_back_pressure(url: str) -> None:
    store = DynamoStore(dynamodb_options(fresh_table(retry_mode="standard", max_attempts="2")))
    throttle_odd = {"on": True}

    def rule(operation: str, body: dict[str, Any]) -> Any:
        payload = body.get("Item", {}).get("payload", {}).get("M", {})
        odd = int(payload.get("ID", {}).get("N", "0")) % 2
        return throttled if operation == "PutItem" and throttle_odd["on"] and odd else None

    faults = Faults(store._db.client, rule)
    try:
        batch = [
            Reading("default", "Temperature", i, T0 + timedelta(seconds=i), 1.0) for i in range(10)
        ]
        with pytest.raises(StoreError, match="ProvisionedThroughputExceeded"):
            store.write_many(batch)  # half of it got in, half did not: nothing acknowledged
        assert faults.injected["PutItem"] >= 10
        throttle_odd["on"] = False
        again = store.write_many(batch)  # the redelivery
        assert again == WriteResult(stored=10, new=batch)
        assert store.latest("default", "Temperature", 100) == batch
    finally:
        store.close()


def test_unprocessed_batch_items_are_retried(url: str) -> None:
    store = DynamoStore(dynamodb_options(url), exact_limit=0)
    day = datetime(2024, 4, 2, tzinfo=UTC)
    readings = [Reading("default", "Temperature", i, day + timedelta(minutes=7 * i), float(i % 11))
                for i in range(300)]  # fmt: skip
    store.write_many(readings)
    span = (day, day + timedelta(days=2))
    store.interval_stats("default", "Temperature", *span)  # caches the rollups
    unprocessed = {"left": 2}

    def rule(operation: str, body: dict[str, Any]) -> Any:
        if operation == "BatchWriteItem" and unprocessed["left"] > 0:
            unprocessed["left"] -= 1
            return lambda request: fake_response(
                request, 200, {"UnprocessedItems": body["RequestItems"]}
            )
        return None

    faults = Faults(store._db.client, rule)
    counter = RequestCounter(store._db.client)
    try:
        late_at = day + timedelta(hours=3)
        late = [Reading("default", "Temperature", 1000 + i, late_at, 99.0) for i in range(5)]
        store.write_many(late)  # tombstones the cached hour and day: a BatchWriteItem
        assert faults.injected["BatchWriteItem"] == 2
        assert counter.calls["BatchWriteItem"] == 3
        _assert_stats(
            store.interval_stats("default", "Temperature", *span),
            brute_stats(readings + late, *span),
        )
    finally:
        store.close()


# --------------------------------------------------------------------------- read-only


def test_read_only_refuses_writes_and_reads(url: str) -> None:
    client = raw_client(moto())
    held = fill_like_the_rule(
        client, _table(url), [OriginalRun(datetime(2024, 1, 2, 0, 0), 500)], LA
    )
    before = reading_items(url)
    store = open_store(url + "&read_only=true", LA)
    try:
        assert store.read_only is True
        with pytest.raises(StoreError, match="read-only"):
            store.write_many([ours(0)])
        with pytest.raises(StoreError, match="read-only"):
            store.record_anomalies([AnomalyRecord(ours(0), 1.0, 1.0, 3.0)])
        with pytest.raises(StoreError, match="read-only"):
            store.probe_write()
        store.ping()
        lo, hi = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)
        store.exact_limit = 0
        _assert_stats(
            store.interval_stats("default", "Temperature", lo, hi),
            brute_stats(held["Temperature"], lo, hi),
        )
    finally:
        store.close()
    assert reading_items(url) == before  # its own rollups, under ~ partitions, at most
    assert any(item["Metric"]["S"].startswith("~day#") for item in all_items(url))


def test_read_only_without_write_permission_computes_on_read(url: str) -> None:
    client = raw_client(moto())
    held = fill_like_the_rule(
        client, _table(url), [OriginalRun(datetime(2024, 1, 2, 0, 0), 500)], LA
    )
    store = DynamoStore(dynamodb_options(url + "&read_only=true"), tz=LA)

    def deny(operation: str, body: dict[str, Any]) -> Any:
        if operation in ("PutItem", "UpdateItem", "BatchWriteItem"):
            return lambda request: fake_response(
                request,
                400,
                {"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
                 "message": "not authorized to perform dynamodb:PutItem (injected)"},
            )  # fmt: skip
        return None

    Faults(store._db.client, deny)
    try:
        lo, hi = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 4, tzinfo=UTC)
        for _ in range(2):
            _assert_buckets(
                store.buckets("default", "Temperature", lo, hi, 3600),
                brute_buckets(held["Temperature"], lo, hi, 3600),
            )
        assert store._rollups.writable is False
        assert store.series()[0].count == 500
    finally:
        store.close()
    assert not any(item["Metric"]["S"].startswith("~") for item in all_items(url))


# --------------------------------------------------------------------------- rollups


def _year(store: DynamoStore, end: datetime, step: timedelta) -> list[Reading]:
    rng = np.random.default_rng(5)
    count = int(timedelta(days=365) / step)
    start = end - timedelta(days=365)
    readings = [
        Reading("default", "Temperature", i, start + i * step, round(float(v), 2))
        for i, v in enumerate(70 + 5 * np.sin(np.arange(count) / 40) + rng.normal(0, 1, count))
    ]
    for first in range(0, len(readings), 1000):
        store.write_many(readings[first : first + 1000])
    return readings


def test_a_year_view_costs_a_bounded_number_of_requests(url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = DynamoStore(dynamodb_options(url), exact_limit=0)
    try:
        readings = _year(store, now, timedelta(hours=2))
        counter = RequestCounter(store._db.client)
        start, end = now - timedelta(days=365), now + timedelta(seconds=1)
        cold = store.buckets("default", "Temperature", start, end, 43200)  # computes rollups
        cold_requests = counter.total
        counter.reset()
        warm = store.buckets("default", "Temperature", start, end, 43200)
        chart_requests = counter.total
        counter.reset()
        stats = store.interval_stats("default", "Temperature", start, end)
        stats_requests = counter.total
        assert warm == cold
        _assert_buckets(warm, brute_buckets(readings, start, end, 43200))
        _assert_stats(stats, brute_stats(readings, start, end))
        assert cold_requests > 100  # the first view reads the year once ...
        assert chart_requests <= 20  # ... later ones read rollups: ~ a dozen requests
        assert stats_requests <= 40
        assert chart_requests + stats_requests <= 60
    finally:
        store.close()


def test_rollups_equal_raw_computation_and_late_readings_count(url: str) -> None:
    store = DynamoStore(dynamodb_options(url), exact_limit=0)
    base = datetime(2024, 6, 1, 21, 30, tzinfo=UTC)
    rng = np.random.default_rng(3)
    offsets = 97 * np.arange(6000) + rng.integers(0, 60, 6000)
    values = np.round(rng.normal(20, 6, 6000), 2)
    readings = [
        Reading("default", "Temperature", i, base + timedelta(seconds=int(off)), float(v))
        for i, (off, v) in enumerate(zip(offsets, values, strict=True))
    ]
    try:
        store.write_many(readings)
        span = (base + timedelta(minutes=7), base + timedelta(days=6, hours=3))
        for _ in range(2):  # computed, then from the cache
            for width in (300, 3600, 21600, 86400):
                _assert_buckets(
                    store.buckets("default", "Temperature", *span, width),
                    brute_buckets(readings, *span, width),
                )
            _assert_stats(
                store.interval_stats("default", "Temperature", *span), brute_stats(readings, *span)
            )
        late_at = base + timedelta(days=2)
        late = [Reading("default", "Temperature", 10_000 + i, late_at, -40.0) for i in range(50)]
        store.write_many(late)
        both = readings + late
        _assert_stats(
            store.interval_stats("default", "Temperature", *span), brute_stats(both, *span)
        )
        _assert_buckets(
            store.buckets("default", "Temperature", *span, 86400), brute_buckets(both, *span, 86400)
        )
        assert store.series()[0].count == len(both)
    finally:
        store.close()


def test_counts_and_values_survive_a_new_process(url: str) -> None:
    first = DynamoStore(dynamodb_options(url))
    batch = [ours(i) for i in range(30)]
    first.write_many(batch)
    first.write_many([ours(3, value=math.pi)])
    first.record_anomalies([AnomalyRecord(batch[4], 70.0, 0.5, 8.0)])
    first.close()
    second = DynamoStore(dynamodb_options(url))
    try:
        assert second.latest("default", "Temperature", 100) == batch
        assert second.conflicts() == [ours(3, value=math.pi)]
        (info,) = second.series()
        assert (info.count, info.latest) == (30, batch[-1])
        assert second.write_many(batch) == WriteResult(duplicates=30)
        day = (T0 - timedelta(days=1), T0 + timedelta(days=1))
        assert second.anomalies("default", "Temperature", *day) == [
            AnomalyRecord(batch[4], 70.0, 0.5, 8.0)
        ]
    finally:
        second.close()


def test_a_missing_table_fails_at_open() -> None:
    url = moto().store_url("no-such-table")
    with pytest.raises(StoreError, match="ResourceNotFound"):
        DynamoStore(dynamodb_options(url))


# --------------------------------------------------------------------------- series()


def _recent(sensor: str, metric: str, now: datetime, days: int) -> list[Reading]:
    """A reading every 20 minutes over the last ``days`` days, up to ``now``."""
    step = timedelta(minutes=20)
    count = int(timedelta(days=days) / step)
    return [
        Reading(sensor, metric, i, now - (count - i) * step, 20.0 + i % 9) for i in range(count)
    ]


SERIES_KEYS = [(s, m) for s in ("default", "desk") for m in ("Temperature", "Humidity")]


def test_series_costs_a_bounded_number_of_requests(url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    writer = DynamoStore(dynamodb_options(url))
    held = {key: _recent(*key, now, days=4) for key in SERIES_KEYS}
    for readings in held.values():
        writer.write_many(readings)
    writer.close()
    n = len(SERIES_KEYS)
    cached = DynamoStore(dynamodb_options(url))
    uncached = DynamoStore(dynamodb_options(url), series_ttl_s=0.0)
    try:
        for store in (cached, uncached):
            infos = store.series()  # the first call of a process: the baselines
            assert {(i.sensor, i.metric): (i.count, i.latest) for i in infos} == {
                key: (len(rs), rs[-1]) for key, rs in held.items()
            }
        counter = RequestCounter(cached._db.client)
        assert cached.series() == infos
        assert counter.total == 0  # a page view, a scrape and an SSE reconnect at once
        later = [Reading(s, m, 10_000, now + timedelta(seconds=1), 5.0) for s, m in SERIES_KEYS]
        cached.write_many(later)
        counter.reset()
        after = {(i.sensor, i.metric): (i.count, i.latest) for i in cached.series()}
        assert counter.total == 0  # this process's writes keep the cached result exact
        assert after == {
            (s, m): (len(held[s, m]) + 1, r) for (s, m), r in zip(SERIES_KEYS, later, strict=True)
        }
        counter = RequestCounter(uncached._db.client)
        for _ in range(3):
            counter.reset()
            fresh = {(i.sensor, i.metric): (i.count, i.latest) for i in uncached.series()}
            assert fresh == after  # computed afresh: sees the other process's writes
            # the registry, then per series: the latest reading, the hours since the last
            # closed day, the open hour's readings (and a counter-region check)
            assert counter.calls["GetItem"] == 1
            assert counter.total <= 1 + 4 * n, counter.calls
            assert not [pk for pk in counter.queries if pk.startswith("~day")]
    finally:
        cached.close()
        uncached.close()


def test_series_counts_follow_late_writes_into_closed_days(url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = DynamoStore(dynamodb_options(url), series_ttl_s=0.0)
    other = DynamoStore(dynamodb_options(url), series_ttl_s=0.0, baseline_ttl_s=0.0)
    try:
        readings = _recent("default", "Temperature", now, days=3)
        store.write_many(readings)
        assert store.series()[0].count == len(readings)
        late = [
            Reading("default", "Temperature", 50_000 + i, now - timedelta(days=2, seconds=i), 1.0)
            for i in range(5)
        ]
        store.write_many(late[:2])  # this process: its baseline is dropped at once
        assert store.series()[0].count == len(readings) + 2
        other.write_many(late[2:])  # another instance: seen once the baseline expires
        assert other.series()[0].count == len(readings) + 5
        store._series_cache.baseline_ttl_s = 0.0
        assert store.series()[0].count == len(readings) + 5
    finally:
        store.close()
        other.close()


def test_a_write_landing_while_series_reads_is_counted_once(url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    store = DynamoStore(dynamodb_options(url), series_ttl_s=0.0)  # nothing cached yet
    held = {m: _recent("default", m, now, days=2) for m in ("Humidity", "Temperature")}
    for readings in held.values():
        store.write_many(readings)
    assert [i.count for i in store.series()] == [len(held["Humidity"]), len(held["Temperature"])]
    later = {m: Reading("default", m, 7, now + timedelta(seconds=2), 1.0) for m in held}
    fired = threading.Event()

    def write_meanwhile(request: Any, **_: Any) -> None:
        body = json.loads(request.body or b"{}")
        pk = body.get("ExpressionAttributeValues", {}).get(":pk", {}).get("S")
        if pk == "Temperature" and not fired.is_set():  # Humidity is read: Temperature next
            fired.set()
            store.write_many(list(later.values()))

    store._db.client.meta.events.register("before-send.dynamodb", write_meanwhile)
    try:
        store._series_cache.ttl_s = 60.0
        expected = [(len(held[m]) + 1, later[m]) for m in ("Humidity", "Temperature")]
        assert [(i.count, i.latest) for i in store.series()] == expected
        assert fired.is_set()
        counter = RequestCounter(store._db.client)
        assert [(i.count, i.latest) for i in store.series()] == expected  # as it was kept
        assert counter.total == 0
    finally:
        store.close()
