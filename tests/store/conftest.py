"""The contract suite runs over every store implementation listed in STORE_FACTORIES.

To add a store, append a factory that opens a fresh, empty store under ``tmp_path`` (or with
a unique table name) and returns it. DynamoDB runs against one moto server (real HTTP) per
test session, a fresh table per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from officesensor.config import dynamodb_options
from officesensor.store import Store
from officesensor.store.dynamo_table import create_table
from officesensor.store.dynamodb import DynamoStore
from officesensor.store.sqlite import SqliteStore
from tests.moto_server import MotoServer, fake_aws_env, start_moto

StoreFactory = Callable[[Path], Store]

_moto: MotoServer | None = None
_saved_env: dict[str, str | None] = {}
_tables = itertools.count()


def moto() -> MotoServer:
    """The session's moto server, started on first use (stopped by ``_stop_moto``), with
    fresh fake credentials in the environment for boto3's default chain meanwhile."""
    global _moto
    if _moto is None:
        env = fake_aws_env()
        _saved_env.update({key: os.environ.get(key) for key in env})
        os.environ.update(env)
        _moto = start_moto()
    return _moto


@pytest.fixture(scope="session", autouse=True)
def _stop_moto() -> Iterator[None]:
    yield
    if _moto is not None:
        _moto.stop()
    for key, value in _saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def fresh_table(**params: str) -> str:
    """A new, empty table on the session's moto server; returns its store URL."""
    server = moto()
    url = server.store_url(f"contract-{os.getpid()}-{next(_tables)}", **params)
    create_table(dynamodb_options(url))
    return url


def sqlite_store(tmp_path: Path) -> Store:
    return SqliteStore(tmp_path / "officesensor.db")


def dynamodb_store(tmp_path: Path) -> Store:
    return DynamoStore(dynamodb_options(fresh_table()))


STORE_FACTORIES: list[StoreFactory] = [sqlite_store, dynamodb_store]


@pytest.fixture(params=STORE_FACTORIES, ids=lambda factory: factory.__name__)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store = request.param(tmp_path)
    try:
        yield opened
    finally:
        opened.close()
