"""The SQLite store's change feed on files written before the feed existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dyntaskmas.context.entries import Entry
from dyntaskmas.context.sqlite_store import SQLiteStore

_OLD_SCHEMA = """
CREATE TABLE context_entries (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
"""


def old_file(path: Path, entries: list[Entry]) -> None:
    connection = sqlite3.connect(path)
    connection.executescript(_OLD_SCHEMA)
    connection.executemany(
        "INSERT INTO context_entries (scope, key, version, entry) VALUES (?, ?, ?, ?)",
        [(e.scope, e.key, e.version, e.to_json()) for e in entries],
    )
    connection.commit()
    connection.close()


async def test_old_file_entries_join_feed(tmp_path: Path) -> None:
    path = tmp_path / "context.sqlite3"
    written = [
        Entry(scope="run", key="a", value=1, version=1, writer="t.1"),
        Entry(scope="run/t.2", key="output", value="x", version=3, writer="t.2"),
    ]
    old_file(path, written)
    store = SQLiteStore(path)
    try:
        changes = await store.changes_since("run", 0)
        again = await store.changes_since("run", changes.cursor)
    finally:
        await store.close()

    assert sorted(changes.entries, key=lambda e: e.address) == written
    assert changes.cursor == 2
    assert again.entries == ()
