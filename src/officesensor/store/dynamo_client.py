"""The one place the DynamoDB store talks to DynamoDB: boto3's low-level client (thread-safe),
configured from the ``dynamodb://`` URL, with the request shapes the store needs.

Credentials come only from the standard AWS chain (boto3's default session: environment,
shared files, container or instance role). Throttling and transient errors are retried by
botocore with the URL's ``retry_mode`` and ``max_attempts``; what survives them, and
everything else DynamoDB refuses, becomes a StoreError here, so ingest keeps its messages
unacknowledged (back-pressure, never loss). Batch calls retry their unprocessed part, and
nothing else needs to (conditional puts go one request each, concurrently).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from officesensor.config import DynamoOptions
from officesensor.errors import StoreError
from officesensor.store.dynamo_items import HASH_KEY, RANGE_KEY, Item

log = logging.getLogger(__name__)

#: Items per BatchWriteItem (DynamoDB's limit).
BATCH_WRITE_MAX = 25
#: Our own retries of unprocessed batch items, after botocore's retries of the request.
RETRY_ATTEMPTS = 8
RETRY_BASE_S = 0.05
RETRY_CAP_S = 5.0
#: Concurrent conditional puts per store (botocore's pool holds one connection each).
PUT_CONCURRENCY = 16


class _Written:
    def __repr__(self) -> str:
        return "WRITTEN"


WRITTEN = _Written()
#: What became of one put (see ``DynamoClient.put_many``).
Outcome = _Written | Item | StoreError


def backoff_s(attempt: int) -> float:
    """Full-jitter exponential back-off: uniform in [0, min(cap, base·2^attempt)]."""
    return random.uniform(0, min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt))


@dataclass
class Put:
    """One put: ``condition`` None means unconditional."""

    item: Item
    condition: str | None = "attribute_not_exists(#i)"
    values: dict[str, Any] = field(default_factory=dict)


class DynamoClient:
    def __init__(self, options: DynamoOptions) -> None:
        self.table = options.table
        config = Config(
            retries={"mode": options.retry_mode, "max_attempts": options.max_attempts},
            max_pool_connections=PUT_CONCURRENCY + 4,
        )
        try:
            session = boto3.session.Session()
            self.client: Any = session.client(
                "dynamodb",
                region_name=options.region,
                endpoint_url=options.endpoint_url,
                config=config,
            )
        except BotoCoreError as exc:  # e.g. no region configured anywhere
            raise StoreError(f"dynamodb: cannot set up a client: {exc}") from exc
        self._closed = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(PUT_CONCURRENCY, thread_name_prefix="dynamodb-put")

    # ------------------------------------------------------------------ lifecycle

    def check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=True)
        self.client.close()

    def _error(self, action: str, exc: Exception) -> StoreError:
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            detail = f"{error.get('Code', 'error')}: {error.get('Message', exc)}"
        else:
            detail = str(exc)
        return StoreError(f"dynamodb {action} on {self.table} failed: {detail}")

    @contextmanager
    def translate(self, action: str) -> Iterator[None]:
        """Foreign errors become StoreError where they enter."""
        self.check_open()
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._error(action, exc) from exc

    # ------------------------------------------------------------------ reads

    def query_pages(
        self,
        pk: str,
        lo: str | int | None = None,
        hi: str | int | None = None,
        *,
        descending: bool = False,
        page_size: int | None = None,
        consistent: bool = True,
        count_only: bool = False,
        below: str | int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Query responses of one partition, page by page, for ``lo <= ID <= hi`` (either
        bound optional) or ``ID < below``; the caller stops when it has enough."""
        condition = "#k = :pk"
        values: dict[str, Any] = {":pk": {"S": pk}}
        if below is not None:
            condition += " AND #i < :below"
            values[":below"] = {"N": str(below)}
        elif lo is not None and hi is not None:
            condition += " AND #i BETWEEN :lo AND :hi"
            values[":lo"], values[":hi"] = {"N": str(lo)}, {"N": str(hi)}
        elif lo is not None:
            condition += " AND #i >= :lo"
            values[":lo"] = {"N": str(lo)}
        elif hi is not None:
            condition += " AND #i <= :hi"
            values[":hi"] = {"N": str(hi)}
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": _names_in(condition),
            "ExpressionAttributeValues": values,
            "ScanIndexForward": not descending,
            "ConsistentRead": consistent,
        }
        if count_only:
            params["Select"] = "COUNT"
        if page_size is not None:
            params["Limit"] = page_size
        while True:
            with self.translate("query"):
                response: dict[str, Any] = self.client.query(**params)
            yield response
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def query_items(
        self, pk: str, lo: str | int | None, hi: str | int | None, **kw: Any
    ) -> list[Item]:
        """Every item of ``lo <= ID <= hi`` (all pages)."""
        items: list[Item] = []
        for page in self.query_pages(pk, lo, hi, **kw):
            items.extend(page.get("Items", []))
        return items

    def get(self, pk: str, key: str | int, *, consistent: bool = True) -> Item | None:
        with self.translate("read"):
            response = self.client.get_item(
                TableName=self.table,
                Key={HASH_KEY: {"S": pk}, RANGE_KEY: {"N": str(key)}},
                ConsistentRead=consistent,
            )
        item: Item | None = response.get("Item")
        return item

    def scan_pages(
        self, segment: int, segments: int, start_key: dict[str, Any] | None, page_size: int
    ) -> Iterator[dict[str, Any]]:
        """One segment of a parallel Scan, from ``start_key`` (a LastEvaluatedKey)."""
        params: dict[str, Any] = {
            "TableName": self.table,
            "Segment": segment,
            "TotalSegments": segments,
            "Limit": page_size,
        }
        if start_key:
            params["ExclusiveStartKey"] = start_key
        while True:
            with self.translate("scan"):
                response: dict[str, Any] = self.client.scan(**params)
            yield response
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def describe(self) -> dict[str, Any]:
        with self.translate("describe table"):
            table: dict[str, Any] = self.client.describe_table(TableName=self.table)["Table"]
        return table

    # ------------------------------------------------------------------ writes

    def put_many(self, puts: Sequence[Put]) -> list[Outcome]:
        """Conditional puts, sent concurrently (one request each, one write unit per item
        up to 1 KB). Returns per put: WRITTEN, the item that stood there when the condition
        failed (ReturnValuesOnConditionCheckFailure), or the StoreError it met; it never
        raises for one put, so the caller knows exactly what was written."""
        self.check_open()
        if len(puts) == 1:
            return [self._put_one(puts[0])]
        return list(self._pool.map(self._put_one, puts))

    def _put_one(self, put: Put) -> Outcome:
        params: dict[str, Any] = {"TableName": self.table, "Item": put.item}
        if put.condition is not None:
            params["ConditionExpression"] = put.condition
            params["ExpressionAttributeNames"] = _names_in(put.condition)
            if put.values:
                params["ExpressionAttributeValues"] = put.values
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            self.check_open()
            self.client.put_item(**params)
            return WRITTEN
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                old: Item = exc.response.get("Item") or {}
                return old
            return self._error("conditional write", exc)
        except BotoCoreError as exc:
            return self._error("conditional write", exc)
        except StoreError as exc:
            return exc

    def batch_write(self, items: Sequence[Item]) -> None:
        """Unconditional puts, 25 a request, retrying unprocessed items with back-off."""
        for first in range(0, len(items), BATCH_WRITE_MAX):
            pending: list[dict[str, Any]] = [
                {"PutRequest": {"Item": item}} for item in items[first : first + BATCH_WRITE_MAX]
            ]
            for attempt in range(RETRY_ATTEMPTS + 1):
                with self.translate("batch write"):
                    response = self.client.batch_write_item(RequestItems={self.table: pending})
                pending = response.get("UnprocessedItems", {}).get(self.table, [])
                if not pending:
                    break
                if attempt == RETRY_ATTEMPTS:
                    raise StoreError(
                        f"dynamodb batch write on {self.table} failed: {len(pending)} items "
                        f"still unprocessed after {RETRY_ATTEMPTS} retries"
                    )
                time.sleep(backoff_s(attempt))

    def add_to_set(self, pk: str, key: int, attribute: str, members: Sequence[str]) -> None:
        """Add strings to a string-set attribute (idempotent)."""
        with self.translate("update"):
            self.client.update_item(
                TableName=self.table,
                Key={HASH_KEY: {"S": pk}, RANGE_KEY: {"N": str(key)}},
                UpdateExpression="ADD #s :m",
                ExpressionAttributeNames={"#s": attribute},
                ExpressionAttributeValues={":m": {"SS": list(members)}},
            )

    def put(self, item: Item) -> None:
        with self.translate("write"):
            self.client.put_item(TableName=self.table, Item=item)

    def probe_write(self) -> None:
        """A conditional update that can never succeed: DynamoDB checks that we may write
        and that the table takes writes now, and changes nothing."""
        try:
            with self.translate("write probe"):
                self.client.update_item(
                    TableName=self.table,
                    Key={HASH_KEY: {"S": "~probe"}, RANGE_KEY: {"N": "0"}},
                    UpdateExpression="SET #p = :p",
                    ConditionExpression="attribute_exists(#i) AND attribute_not_exists(#i)",
                    ExpressionAttributeNames={"#p": "probe", "#i": RANGE_KEY},
                    ExpressionAttributeValues={":p": {"N": "1"}},
                )
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and cause.response.get("Error", {}).get("Code") == (
                "ConditionalCheckFailedException"
            ):
                return
            raise


def _names_in(expression: str) -> dict[str, str]:
    names = {"#i": RANGE_KEY, "#k": HASH_KEY, "#g": "gen"}
    return {name: value for name, value in names.items() if name in expression}


def error_code(exc: BaseException) -> str | None:
    """The DynamoDB error code behind a StoreError (or ClientError), if any."""
    cause = exc.__cause__ if isinstance(exc, StoreError) else exc
    if isinstance(cause, ClientError):
        code = cause.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None
