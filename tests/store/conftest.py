"""The contract suite runs over every store implementation listed in STORE_FACTORIES.

To add a store (DynamoDB against moto, say), append a factory that opens a fresh, empty
store under ``tmp_path`` (or with a unique table name) and returns it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from officesensor.store import Store
from officesensor.store.sqlite import SqliteStore

StoreFactory = Callable[[Path], Store]


def sqlite_store(tmp_path: Path) -> Store:
    return SqliteStore(tmp_path / "officesensor.db")


STORE_FACTORIES: list[StoreFactory] = [sqlite_store]


@pytest.fixture(params=STORE_FACTORIES, ids=lambda factory: factory.__name__)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store = request.param(tmp_path)
    try:
        yield opened
    finally:
        opened.close()
