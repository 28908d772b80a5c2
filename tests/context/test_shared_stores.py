"""Stores that several processes share: two handles on one SQLite file or Redis prefix."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dyntaskmas.context.entries import Entry, StagedWrite
from dyntaskmas.context.sqlite_store import SQLiteStore
from dyntaskmas.context.stores import ContextStore
from dyntaskmas.errors import VersionConflictError

from .conftest import redis_prefix


@pytest.fixture(params=["sqlite", "redis"])
async def two_handles(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[ContextStore, ContextStore]]:
    """Two independent store objects over the same storage, as two processes would have."""
    first: ContextStore
    second: ContextStore
    if request.param == "sqlite":
        first = SQLiteStore(tmp_path / "shared.sqlite3")
        second = SQLiteStore(tmp_path / "shared.sqlite3")
    else:
        from dyntaskmas.context.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        prefix = redis_prefix()
        first = RedisStore(url, prefix=prefix)
        second = RedisStore(url, prefix=prefix)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def write(value: str, over: int = 0) -> StagedWrite:
    return StagedWrite(over, Entry("run", "k", value, version=over + 1, writer="t.1"))


async def test_lock_held_across_handles(two_handles: tuple[ContextStore, ContextStore]) -> None:
    first, second = two_handles
    await first.prepare("tx1", [write("mine")])

    with pytest.raises(VersionConflictError) as caught:
        await second.prepare("tx2", [write("theirs")])

    assert caught.value.locked_by == "tx1"


async def test_commit_visible_across_handles(
    two_handles: tuple[ContextStore, ContextStore],
) -> None:
    first, second = two_handles
    await first.prepare("tx1", [write("mine")])
    await first.commit("tx1")
    await first.release("tx1")

    stored = await second.get("run", "k")

    assert stored is not None
    assert stored.value == "mine"


async def test_pending_transactions_listed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.sqlite3")
    await store.prepare("tx-left", [write("x")])

    pending = await store.pending_transactions()
    await store.close()

    assert pending == ["tx-left"]


async def test_sqlite_file_uses_wal(tmp_path: Path) -> None:
    store = SQLiteStore.in_data_dir(tmp_path / "data")
    await store.get("run", "k")
    await store.close()

    connection = sqlite3.connect(store.path)
    mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    connection.close()
    assert mode == "wal"
    assert store.path == tmp_path / "data" / "context.sqlite3"
