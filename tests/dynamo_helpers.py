"""DynamoDB test helpers: a table filled exactly as the original AWS IoT rule fills it, a
request counter, and faults injected at the HTTP level (botocore's ``before-send`` event:
the request is answered by a made-up HTTP response instead of reaching moto)."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import boto3

from officesensor.models import Reading
from tests.moto_server import REGION, MotoServer

KEY_SCHEMA = [
    {"AttributeName": "Metric", "KeyType": "HASH"},
    {"AttributeName": "ID", "KeyType": "RANGE"},
]


def raw_client(server: MotoServer) -> Any:
    return boto3.client("dynamodb", endpoint_url=server.endpoint, region_name=REGION)


def original_item(metric: str, counter: int, value: float, naive: datetime) -> dict[str, Any]:
    """What the original rule stores for ``{"<metric>": value, "ID": counter, "Timestamp":
    str(datetime.now())}`` on office/metrics/<metric>: Metric = topic(3), ID = the ID, the
    message as the map ``payload`` (the rule's DynamoDBv2 action)."""
    return {
        "Metric": {"S": metric},
        "ID": {"N": str(counter)},
        "payload": {
            "M": {
                metric: {"N": repr(value)},
                "ID": {"N": str(counter)},
                "Timestamp": {"S": str(naive)},
            }
        },
    }


@dataclass
class OriginalRun:
    """One life of the original sensor program: its counter from 0, every ``step``."""

    start: datetime  # naive local time
    count: int
    step: timedelta = timedelta(seconds=15)


def fill_like_the_rule(
    client: Any,
    table: str,
    runs: list[OriginalRun],
    tz: tzinfo,
    metrics: tuple[str, ...] = ("Temperature",),
    seed: int = 1,
) -> dict[str, list[Reading]]:
    """PutItem each message of each run, in time order, as the rule does (so a later run's
    counter overwrites an earlier run's items). Returns the readings the table then holds,
    per metric, oldest first."""
    rng = random.Random(seed)
    held: dict[tuple[str, int], Reading] = {}
    for run in runs:
        for counter in range(run.count):
            naive = run.start + counter * run.step + timedelta(microseconds=rng.randrange(10**6))
            if counter % 7 == 0:
                naive = naive.replace(microsecond=0)  # str() then prints no fraction
            for metric in metrics:
                value = round(rng.uniform(60, 80), 2)
                client.put_item(TableName=table, Item=original_item(metric, counter, value, naive))
                ts = naive.replace(tzinfo=tz).astimezone(UTC)
                held[(metric, counter)] = Reading("default", metric, counter, ts, value)
    out: dict[str, list[Reading]] = {}
    for (metric, _), reading in held.items():
        out.setdefault(metric, []).append(reading)
    return {m: sorted(rs, key=lambda r: (r.ts, r.reading_id)) for m, rs in out.items()}


class RequestCounter:
    """Counts the HTTP requests a botocore client sends, by operation (retries included),
    and Query requests by the partition they read (``queries``)."""

    def __init__(self, client: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        self._lock = threading.Lock()
        client.meta.events.register("before-send.dynamodb", self._count)

    def _count(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        name = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".", 1)[-1]
        partition = ""
        if name == "Query":
            values = json.loads(request.body or b"{}").get("ExpressionAttributeValues", {})
            partition = values.get(":pk", {}).get("S", "")
        with self._lock:
            self.calls[name] += 1
            if name == "Query":
                self.queries[partition] += 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.queries.clear()


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def fake_response(request: Any, status: int, body: dict[str, Any]) -> Any:
    from botocore.awsrequest import AWSResponse

    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "Content-Length": str(len(data))}
    return AWSResponse(request.url, status, headers, _Body(data))


def throttled(request: Any) -> Any:
    return fake_response(
        request,
        400,
        {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was "
            "exceeded (injected by the test)",
        },
    )


class Faults:
    """Answer chosen requests of a client with a made-up response. ``rule(operation, body)``
    returns a response maker (request -> AWSResponse) or None to let the request through."""

    def __init__(
        self, client: Any, rule: Callable[[str, dict[str, Any]], Callable[[Any], Any] | None]
    ) -> None:
        self._rule = rule
        self.injected: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._client = client
        client.meta.events.register("before-send.dynamodb", self._maybe)

    def _maybe(self, request: Any, **_: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else str(target)).rsplit(".")[-1]
        body = json.loads(request.body or b"{}")
        with self._lock:
            make = self._rule(operation, body)
            if make is None:
                return None
            self.injected[operation] += 1
        return make(request)

    def remove(self) -> None:
        self._client.meta.events.unregister("before-send.dynamodb", self._maybe)
