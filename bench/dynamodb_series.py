"""Requests and read units per ``DynamoStore.series()`` call against moto's server: the cost
of the overview, /metrics and every stream reconnect on DynamoDB (docs/dynamodb.md).

    .venv/bin/python bench/dynamodb_series.py          # 6 series x 180 days at 30 min
    DAYS=30 .venv/bin/python bench/dynamodb_series.py
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.dynamodb import Meter
from tests.dynamo_helpers import raw_client
from tests.moto_server import fake_aws_env, start_moto

from officesensor.config import dynamodb_options
from officesensor.models import Reading
from officesensor.store.dynamo_items import natural_key, reading_item, series_pk
from officesensor.store.dynamo_table import create_table
from officesensor.store.dynamodb import DynamoStore

DAYS = int(os.environ.get("DAYS", "180"))
STEP = timedelta(minutes=30)
SENSORS = ("default", "office-2")
METRICS = ("Temperature", "Humidity", "Pressure")


def main() -> None:
    os.environ.update(fake_aws_env())
    server = start_moto()
    try:
        url = server.store_url("measure")
        create_table(dynamodb_options(url))
        client = raw_client(server)
        now = datetime.now(UTC).replace(microsecond=0)
        count = int(timedelta(days=DAYS) / STEP)
        for sensor in SENSORS:
            for metric in METRICS:
                pk = series_pk(sensor, metric)
                rs = [
                    Reading(sensor, metric, i, now - (count - i) * STEP, 20.0 + i % 7)
                    for i in range(count)
                ]
                for first in range(0, len(rs), 25):
                    req = [
                        {
                            "PutRequest": {
                                "Item": reading_item(pk, natural_key(r.ts_us, r.reading_id), r)
                            }
                        }
                        for r in rs[first : first + 25]
                    ]
                    while req:
                        req = (
                            client.batch_write_item(RequestItems={"measure": req})
                            .get("UnprocessedItems", {})
                            .get("measure", [])
                        )
                client.update_item(
                    TableName="measure",
                    Key={"Metric": {"S": "~series"}, "ID": {"N": "0"}},
                    UpdateExpression="ADD pks :m",
                    ExpressionAttributeValues={":m": {"SS": [pk]}},
                )
        n = len(SENSORS) * len(METRICS)
        print(f"{n} series, {DAYS} days each at {STEP}, {count} readings each")

        def measure(label: str, store: DynamoStore, meter: Meter) -> None:
            meter.reset()
            infos = store.series()
            assert len(infos) == n, infos
            assert all(i.count >= count for i in infos), infos
            print(
                f"{label:55s} {meter.total:4d} requests ({meter.total / n:5.1f}/series), "
                f"{meter.read_units:7.1f} RCU, {dict(meter.requests)}"
            )

        store = DynamoStore(dynamodb_options(url))
        meter = Meter(store._db.client)
        measure("first call of a process (computes day rollups)", store, meter)
        measure("second call, at once", store, meter)
        later = now + timedelta(seconds=5)
        store.write_many([Reading(s, m, count + 1, later, 1.0) for s in SENSORS for m in METRICS])
        measure("after this process wrote a reading per series", store, meter)
        store.close()
        store = DynamoStore(dynamodb_options(url), series_ttl_s=0.0)
        meter = Meter(store._db.client)
        measure("new process, rollups cached in the table", store, meter)
        measure("again (no result cache: TTL 0)", store, meter)
        measure("and again", store, meter)
        store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
