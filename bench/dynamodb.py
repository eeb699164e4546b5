"""DynamoDB benchmark against moto's server (real HTTP), ours and the original's pattern in
one run, so the ratios mean something on a noisy machine.

    .venv/bin/python bench/dynamodb.py           # 6,000 writes; a year at a 5-minute cadence
    .venv/bin/python bench/dynamodb.py --quick   # 1,500 writes; a year at a 1-hour cadence

1. Writes. N readings of one series, written (peer) as the original IoT rule writes them,
   one PutItem per message, one after another; (ours) through ``DynamoStore.write_many`` in
   batches of ``ingest.batch_size`` (500, what ingest commits under load): conditional puts,
   16 in flight. Readings per second (median of interleaved rounds), requests and write
   units per reading.
2. The dashboard's 1-year view of one series: the chart (``buckets`` over 365 days at the
   width the page picks, 12 h) and the statistics table (``interval_stats`` of the last
   hour, day, week, month and year) with ``first_time``, as the metric page asks for them.
   Ours reads the rollup cache; the first view after the data arrives computes it (cold),
   later ones read it (warm). The peer reads the year with a plain Query of every item (the
   original app's "read the metric's items", over a year) and groups them itself. Requests
   are counted on the wire (botocore's ``before-send``); read units are computed from the
   items each response returned, with DynamoDB's documented rules (item size = names +
   values; per response ceil(bytes / 4 KB), at least 1; halved for eventually consistent
   reads). moto's own ``ConsumedCapacity`` is a constant 1.0 and is not used.

A year at a 15-s cadence (2.1 M items) is more than moto holds comfortably, so the year is
measured at a coarser cadence (stated in the output); the peer's cost grows with the number
of items, ours does not (a day's rollup is the same size whatever the cadence; only its
histogram grows with the spread of values). The 15-s figure of the peer is computed from its
measured bytes per item, and labelled as computed.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.moto_server import REGION, MotoServer, aws_environment, start_moto  # noqa: E402

from officesensor.config import dynamodb_options  # noqa: E402
from officesensor.models import Reading, to_epoch_us  # noqa: E402
from officesensor.store.dynamo_items import natural_key, reading_item, series_pk  # noqa: E402
from officesensor.store.dynamo_table import create_table  # noqa: E402
from officesensor.store.dynamodb import DynamoStore  # noqa: E402
from officesensor.web.ranges import STAT_INTERVALS, bucket_width  # noqa: E402

BATCH = 500  # ingest.batch_size's default
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, "1y": 365 * 86400}


# ----------------------------------------------------------------------------- metering


def _number_size(raw: str) -> int:
    digits = raw.lstrip("-").replace(".", "").split("e")[0].split("E")[0].strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def attribute_size(value: dict[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return _number_size(raw)
    if kind == "B":
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in raw.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in raw)
    if kind == "SS":
        return sum(len(s.encode()) for s in raw)
    raise ValueError(kind)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


class Meter:
    """Requests on the wire, and read units by DynamoDB's rules, of one botocore client."""

    def __init__(self, client: Any) -> None:
        self.requests: Counter[str] = Counter()
        self.read_units = 0.0
        self.bytes_read = 0
        self.items_read = 0
        self._consistent = threading.local()
        self._lock = threading.Lock()
        client.meta.events.register("before-send.dynamodb", self._sent)
        client.meta.events.register("before-call.dynamodb", self._call)
        client.meta.events.register("after-call.dynamodb", self._done)

    def _sent(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        name = target.decode() if isinstance(target, bytes) else str(target)
        with self._lock:
            self.requests[name.rsplit(".", 1)[-1]] += 1

    def _call(self, params: dict[str, Any], **_: Any) -> None:
        self._consistent.value = bool(params.get("ConsistentRead"))

    def _done(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name not in ("Query", "GetItem", "Scan", "BatchGetItem"):
            return
        items = parsed.get("Items") or ([parsed["Item"]] if parsed.get("Item") else [])
        size = sum(item_size(item) for item in items)
        units = max(1, math.ceil(size / 4096))
        if not getattr(self._consistent, "value", False):
            units /= 2
        with self._lock:
            self.read_units += units
            self.bytes_read += size
            self.items_read += len(items)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.read_units = 0.0
            self.bytes_read = 0
            self.items_read = 0

    @property
    def total(self) -> int:
        return sum(self.requests.values())


# ----------------------------------------------------------------------------- data


def year_readings(end: datetime, cadence_s: int, seed: int = 2018) -> list[Reading]:
    """A year of one series ending at ``end``: a daily cycle, weather and noise (°F)."""
    count = 365 * 86400 // cadence_s
    rng = np.random.default_rng(seed)
    t = np.arange(count) * cadence_s
    values = (
        70
        + 4 * np.sin(2 * np.pi * t / 86400)
        + 3 * np.sin(2 * np.pi * t / (365 * 86400))
        + np.cumsum(rng.normal(0, 0.05, count)).clip(-5, 5)
        + rng.normal(0, 0.3, count)
    )
    start = end - timedelta(days=365)
    out = []
    for i in range(count):
        ts = start + timedelta(seconds=int(t[i]))
        out.append(
            Reading(
                "default", "Temperature", to_epoch_us(ts) // 1000, ts, round(float(values[i]), 2)
            )
        )
    return out


def load(client: Any, table: str, readings: list[Reading]) -> None:
    """The data set in our item format (as the rule would store our sensor's messages),
    25 a request: setting up, not measured."""
    pk = series_pk("default", "Temperature")
    for first in range(0, len(readings), 25):
        requests = [
            {"PutRequest": {"Item": reading_item(pk, natural_key(r.ts_us, r.reading_id), r)}}
            for r in readings[first : first + 25]
        ]
        while requests:
            reply = client.batch_write_item(RequestItems={table: requests})
            requests = reply.get("UnprocessedItems", {}).get(table, [])


# ----------------------------------------------------------------------------- writes


def write_peer(client: Any, table: str, readings: list[Reading]) -> float:
    """The original rule: one PutItem per message, unconditional, one after another."""
    pk = series_pk("default", "Temperature")
    started = time.perf_counter()
    for r in readings:
        client.put_item(TableName=table, Item=reading_item(pk, str(r.reading_id), r))
    return len(readings) / (time.perf_counter() - started)


def write_ours(store: DynamoStore, readings: list[Reading]) -> float:
    started = time.perf_counter()
    stored = 0
    for first in range(0, len(readings), BATCH):
        stored += store.write_many(readings[first : first + BATCH]).stored
    elapsed = time.perf_counter() - started
    assert stored == len(readings)
    return len(readings) / elapsed


def add_round_trip(client: Any, rtt_ms: float) -> None:
    """Model the network: every request waits ``rtt_ms`` before it is sent (moto answers
    from this machine in about 2 ms; DynamoDB from the same region in several)."""
    if rtt_ms > 0:
        client.meta.events.register("before-send.dynamodb", lambda **_: time.sleep(rtt_ms / 1000))


def bench_writes(server: MotoServer, count: int, rounds: int, rtt_ms: float) -> dict[str, Any]:
    import boto3

    client = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name=REGION)
    add_round_trip(client, rtt_ms)
    now = datetime.now(UTC).replace(microsecond=0)
    readings = [
        Reading("default", "Temperature", to_epoch_us(ts) // 1000, ts, 70 + (i % 40) / 8)
        for i in range(count)
        for ts in [now - timedelta(seconds=15 * (count - i))]
    ]
    peer_rates, our_rates = [], []
    our_meter: Meter | None = None
    for n in range(rounds):
        table = f"bench-writes-peer-{rtt_ms:g}-{n}"
        create_table(dynamodb_options(server.store_url(table)))
        peer_rates.append(write_peer(client, table, readings))
        table = f"bench-writes-ours-{rtt_ms:g}-{n}"
        create_table(dynamodb_options(server.store_url(table)))
        store = DynamoStore(dynamodb_options(server.store_url(table)))
        add_round_trip(store._db.client, rtt_ms)
        our_meter = Meter(store._db.client)
        our_rates.append(write_ours(store, readings))
        store.close()
    assert our_meter is not None
    return {
        "peer": statistics.median(peer_rates),
        "ours": statistics.median(our_rates),
        "peer_runs": peer_rates,
        "our_runs": our_rates,
        "our_requests": dict(our_meter.requests),
        "count": count,
        "rtt_ms": rtt_ms,
    }


# ----------------------------------------------------------------------------- the year view


def page_view(store: DynamoStore, now: datetime) -> None:
    """What the metric page at ?range=1y reads from the store (web/history.py)."""
    start = now - timedelta(days=365)
    store.buckets("default", "Temperature", start, now, bucket_width(timedelta(days=365)))
    store.first_time("default", "Temperature")
    for name in STAT_INTERVALS:
        store.interval_stats("default", "Temperature", now - timedelta(seconds=WINDOWS[name]), now)


def peer_view(client: Any, table: str, start: datetime, end: datetime) -> dict[int, list[float]]:
    """A plain Query of every item of the year, grouped client-side into the same buckets."""
    lo, hi = to_epoch_us(start) // 1000, to_epoch_us(end) // 1000
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "Metric = :m AND ID BETWEEN :lo AND :hi",
        "ExpressionAttributeValues": {
            ":m": {"S": "Temperature"},
            ":lo": {"N": str(lo)},
            ":hi": {"N": str(hi)},
        },
    }
    groups: dict[int, list[float]] = {}
    width = bucket_width(timedelta(days=365))
    while True:
        page = client.query(**kwargs)
        for item in page["Items"]:
            key = int(item["ID"]["N"]) // 1000 // width
            groups.setdefault(key, []).append(float(item["payload"]["M"]["Temperature"]["N"]))
        if "LastEvaluatedKey" not in page:
            return groups
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def bench_year(server: MotoServer, cadence_s: int) -> dict[str, Any]:
    import boto3

    table = "bench-year"
    url = server.store_url(table)
    create_table(dynamodb_options(url))
    client = boto3.client("dynamodb", endpoint_url=server.endpoint, region_name=REGION)
    now = datetime.now(UTC).replace(microsecond=0)
    readings = year_readings(now, cadence_s)
    started = time.perf_counter()
    load(client, table, readings)
    load_s = time.perf_counter() - started
    store = DynamoStore(dynamodb_options(url))
    meter = Meter(store._db.client)
    out: dict[str, Any] = {"readings": len(readings), "load_s": load_s, "cadence_s": cadence_s}
    start = now - timedelta(days=365)
    width = bucket_width(timedelta(days=365))
    for phase in ("cold", "warm"):
        meter.reset()
        started = time.perf_counter()
        chart = store.buckets("default", "Temperature", start, now, width)
        out[f"{phase}_chart"] = (meter.total, meter.read_units, time.perf_counter() - started)
        meter.reset()
        started = time.perf_counter()
        page_view(store, now)
        out[f"{phase}_page"] = (meter.total, meter.read_units, time.perf_counter() - started)
        out[f"{phase}_page_requests"] = dict(meter.requests)
    peer_meter = Meter(client)
    started = time.perf_counter()
    groups = peer_view(client, table, start, now)
    out["peer"] = (peer_meter.total, peer_meter.read_units, time.perf_counter() - started)
    out["peer_bytes_per_item"] = peer_meter.bytes_read / max(peer_meter.items_read, 1)
    out["peer_items"] = peer_meter.items_read
    # the same answer: our chart's counts, min and max against the peer's grouping
    peer_buckets = {k: (len(v), min(v), max(v)) for k, v in groups.items()}
    ours = {int(b.start.timestamp()) // width: (b.count, b.min, b.max) for b in chart}
    out["same_answer"] = ours == peer_buckets
    stats = store.interval_stats("default", "Temperature", start, now)
    values = np.array([r.value for r in readings if start <= r.ts < now])
    out["quartile_gap"] = max(
        abs(q - e)
        for q, e in zip(
            [stats.q25, stats.median, stats.q75],
            np.quantile(values, [0.25, 0.5, 0.75]),
            strict=True,
        )
        if q is not None
    )
    out["quantile_error"] = stats.quantile_error
    store.close()
    return out


# ----------------------------------------------------------------------------- report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller: a smoke run")
    parser.add_argument("--writes", type=int, default=None, help="readings per write round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved write rounds")
    parser.add_argument("--cadence", type=int, default=None, help="seconds between readings")
    parser.add_argument(
        "--rtt-ms",
        type=float,
        nargs="+",
        default=[0.0, 8.0],
        help="round trips to model for the writes (default: 0 and 8 ms)",
    )
    args = parser.parse_args()
    writes = args.writes or (1500 if args.quick else 6000)
    cadence = args.cadence or (3600 if args.quick else 300)
    import boto3

    print(f"machine  : {platform.node()}, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    with aws_environment():
        server = start_moto()
        try:
            import moto

            print(f"software : moto {moto.__version__} (server mode, 127.0.0.1:{server.port}), "
                  f"boto3 {boto3.__version__}")  # fmt: skip
            ws = [bench_writes(server, writes, args.rounds, rtt) for rtt in args.rtt_ms]
            y = bench_year(server, cadence)
        finally:
            server.stop()
    print()
    for w in ws:
        print(f"1) writes: {w['count']:,} readings of one series, {args.rounds} interleaved "
              f"rounds, {w['rtt_ms']:g} ms added to every request")  # fmt: skip
        print(f"   peer: one PutItem per message   "
              f"{', '.join(f'{r:,.0f}' for r in w['peer_runs'])} readings/s")  # fmt: skip
        print(f"   ours: write_many, batches of {BATCH} "
              f"{', '.join(f'{r:,.0f}' for r in w['our_runs'])} readings/s")  # fmt: skip
        print(f"   ours, requests in the last round: {w['our_requests']}")
    print()
    per_year = 365 * 86400 // 15
    peer_15s_bytes = per_year * y["peer_bytes_per_item"]
    peer_15s_units = math.ceil(peer_15s_bytes / 4096) / 2
    peer_15s_requests = math.ceil(peer_15s_bytes / 2**20)  # Query pages hold up to 1 MB
    print(f"2) the 1-year view: {y['readings']:,} readings (one every {y['cadence_s']} s), "
          f"loaded in {y['load_s']:.0f} s")  # fmt: skip
    for phase in ("cold", "warm"):
        requests, units, seconds = y[f"{phase}_chart"]
        print(
            f"   ours {phase}: chart {requests} requests, {units:,.1f} read units, {seconds:.1f} s"
        )
        requests, units, seconds = y[f"{phase}_page"]
        print(f"   ours {phase}: chart + statistics table + first_time: {requests} requests, "
              f"{units:,.1f} read units ({y[f'{phase}_page_requests']})")  # fmt: skip
    requests, units, seconds = y["peer"]
    print(
        f"   peer: Query of every item: {requests} requests, {units:,.1f} read units, "
        f"{y['peer_items']:,} items, {y['peer_bytes_per_item']:.0f} bytes each, {seconds:.1f} s"
    )
    print(
        f"   same chart (count, min, max of every bucket): {y['same_answer']}; "
        f"year quartiles within {y['quartile_gap']:.2g} of exact (bound {y['quantile_error']})"
    )
    print(f"   peer at a 15-s cadence, computed from its bytes per item: {per_year:,} items, "
          f"{peer_15s_requests:,} requests, {peer_15s_units:,.0f} read units per view "
          f"(eventually consistent)")  # fmt: skip
    print()
    warm_chart, warm_page = y["warm_chart"], y["warm_page"]
    rows = [
        (
            f"writes/s, +{w['rtt_ms']:g} ms per request",
            f"{w['ours']:,.0f}",
            f"{w['peer']:,.0f}",
            f"ours {w['ours'] / w['peer']:.2f}x",
        )
        for w in ws
    ]
    rows += [
        ("1-year chart, requests", str(warm_chart[0]), str(y["peer"][0]),
         f"peer {y['peer'][0] / warm_chart[0]:.2g}x"),
        ("1-year chart, read units", f"{warm_chart[1]:,.1f}", f"{y['peer'][1]:,.1f}",
         f"peer {y['peer'][1] / warm_chart[1]:.2g}x"),
        ("  requests, peer at 15 s (computed)", str(warm_chart[0]), f"{peer_15s_requests:,}",
         f"peer {peer_15s_requests / warm_chart[0]:,.0f}x"),
        ("  read units, peer at 15 s (computed)", f"{warm_chart[1]:,.1f}",
         f"{peer_15s_units:,.0f}", f"peer {peer_15s_units / warm_chart[1]:,.0f}x"),
        ("1-year page (chart+stats), requests", str(warm_page[0]), "-", "-"),
        ("1-year page (chart+stats), read units", f"{warm_page[1]:,.1f}", "-", "-"),
    ]  # fmt: skip
    print(f"{'figure':40} {'ours':>12} {'peer':>12} {'ratio':>14}")
    print("-" * 81)
    for name, ours, peer, ratio in rows:
        print(f"{name:40} {ours:>12} {peer:>12} {ratio:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
