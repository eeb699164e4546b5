"""``officesensor dynamodb create-table``: the original sample's table, made or checked.

The schema is the original's: partition key ``Metric`` (S), sort key ``ID`` (N); nothing
else (the store needs no index). Billing is on-demand unless provisioned capacity is asked
for. Creating is idempotent: a table that exists with this key schema is left as it is; one
with another key schema is an error that says what it has.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from officesensor.config import DynamoOptions
from officesensor.errors import StoreError
from officesensor.store.dynamo_client import DynamoClient, error_code
from officesensor.store.dynamo_items import HASH_KEY, RANGE_KEY

KEY_SCHEMA = [
    {"AttributeName": HASH_KEY, "KeyType": "HASH"},
    {"AttributeName": RANGE_KEY, "KeyType": "RANGE"},
]
ATTRIBUTES = [
    {"AttributeName": HASH_KEY, "AttributeType": "S"},
    {"AttributeName": RANGE_KEY, "AttributeType": "N"},
]


@dataclass(frozen=True, slots=True)
class Billing:
    """``on-demand`` (PAY_PER_REQUEST), or ``provisioned`` with read and write units."""

    mode: str = "on-demand"
    read_units: int = 5
    write_units: int = 5


def create_table(
    options: DynamoOptions, billing: Billing | None = None, *, timeout_s: float = 300
) -> str:
    """Create the table and wait until it is ACTIVE. Returns "created" or "exists"."""
    billing = billing or Billing()
    db = DynamoClient(options)
    try:
        params: dict[str, Any] = {
            "TableName": options.table,
            "KeySchema": KEY_SCHEMA,
            "AttributeDefinitions": ATTRIBUTES,
        }
        if billing.mode == "provisioned":
            params["BillingMode"] = "PROVISIONED"
            params["ProvisionedThroughput"] = {
                "ReadCapacityUnits": billing.read_units,
                "WriteCapacityUnits": billing.write_units,
            }
        else:
            params["BillingMode"] = "PAY_PER_REQUEST"
        outcome = "created"
        try:
            with db.translate("create table"):
                db.client.create_table(**params)
        except StoreError as exc:
            if error_code(exc) not in ("ResourceInUseException", "TableAlreadyExistsException"):
                raise
            outcome = "exists"
        description = _wait_active(db, timeout_s)
        check_schema(options.table, description)
        return outcome
    finally:
        db.close()


def _wait_active(db: DynamoClient, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        description = db.describe()
        if description.get("TableStatus") == "ACTIVE":
            return description
        if time.monotonic() > deadline:
            raise StoreError(
                f"table {db.table} is {description.get('TableStatus')} after {timeout_s:.0f} s"
            )
        time.sleep(1.0)


def check_schema(table: str, description: dict[str, Any]) -> None:
    """StoreError unless the table is keyed as the original: Metric (S), ID (N)."""
    types = {a["AttributeName"]: a["AttributeType"] for a in description["AttributeDefinitions"]}
    keys = {k["KeyType"]: k["AttributeName"] for k in description["KeySchema"]}
    want = {"HASH": HASH_KEY, "RANGE": RANGE_KEY}
    if keys != want or types.get(HASH_KEY) != "S" or types.get(RANGE_KEY) != "N":
        have = ", ".join(f"{kind} {name} ({types.get(name)})" for kind, name in keys.items())
        raise StoreError(
            f"table {table} exists with another key schema ({have}); Office Sensor needs "
            f"HASH {HASH_KEY} (S), RANGE {RANGE_KEY} (N): choose another --table"
        )
