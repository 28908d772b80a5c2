"""The SQLite context store: the durable default, one file in WAL mode.

Entries are rows of ``context_entries``, one per (scope, key), holding the
entry as JSON. A prepared transaction is a set of rows in
``context_pending`` whose primary key is (scope, key), so a row there is the
key's lock. A second transaction cannot prepare the same key, even from
another process that opened the same file. Each protocol call is one SQLite
transaction begun with ``BEGIN IMMEDIATE``, which is what makes prepare,
commit and abort atomic in this store.

All SQLite calls run on one worker thread owned by the store, so the event
loop never blocks on disk and the connection never changes threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from dyntaskmas.context.entries import Entry, StagedWrite
from dyntaskmas.context.stores import ChangeSet, check_distinct
from dyntaskmas.errors import VersionConflictError

DEFAULT_FILE_NAME = "context.sqlite3"
#: How long a connection waits for another process's write lock, in milliseconds.
BUSY_TIMEOUT_MS = 5_000

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS context_entries (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS context_pending (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    txid TEXT NOT NULL,
    entry TEXT NOT NULL,
    before TEXT,
    committed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS context_pending_txid ON context_pending (txid);
CREATE TABLE IF NOT EXISTS context_changes (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS context_changes_seq ON context_changes (seq);
-- Files written before the change feed existed: give their entries a place in it.
INSERT OR IGNORE INTO context_changes (scope, key, seq)
SELECT scope, key,
       (SELECT COALESCE(MAX(seq), 0) FROM context_changes)
       + ROW_NUMBER() OVER (ORDER BY scope, key)
FROM context_entries AS e
WHERE NOT EXISTS (
    SELECT 1 FROM context_changes AS c WHERE c.scope = e.scope AND c.key = e.key
);
"""

# Run inside a write transaction, which SQLite gives one connection at a
# time, so sequence numbers are handed out in commit order without gaps.
_RECORD_CHANGE = (
    "INSERT INTO context_changes (scope, key, seq) "
    "VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM context_changes)) "
    "ON CONFLICT (scope, key) DO UPDATE SET seq = excluded.seq"
)


class SQLiteStore:
    """A store in one SQLite file, in WAL mode, safe to share between processes.

    Use :meth:`in_data_dir` for the default file name under a data directory.
    """

    def __init__(self, path: str | Path, *, name: str = "sqlite") -> None:
        self.path = Path(path)
        self._name = name
        self._connection: sqlite3.Connection | None = None
        # One thread: SQLite connections must stay on the thread that made them.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="context-sqlite")
        self._closed = False

    @classmethod
    def in_data_dir(cls, data_dir: str | Path, *, name: str = "sqlite") -> SQLiteStore:
        """Return a store on ``data_dir/context.sqlite3``, creating the directory."""
        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory / DEFAULT_FILE_NAME, name=name)

    @property
    def name(self) -> str:
        return self._name

    async def get(self, scope: str, key: str) -> Entry | None:
        def read(connection: sqlite3.Connection) -> Entry | None:
            row = connection.execute(
                "SELECT entry FROM context_entries WHERE scope = ? AND key = ?", (scope, key)
            ).fetchone()
            return Entry.from_json(row[0]) if row is not None else None

        return await self._run(read)

    async def list_entries(self, scope: str) -> list[Entry]:
        prefix = scope + "/"

        def read(connection: sqlite3.Connection) -> list[Entry]:
            # substr, not LIKE, so that '%' and '_' in scope names match literally.
            rows = connection.execute(
                "SELECT entry FROM context_entries "
                "WHERE scope = ? OR substr(scope, 1, ?) = ? ORDER BY scope, key",
                (scope, len(prefix), prefix),
            ).fetchall()
            return [Entry.from_json(row[0]) for row in rows]

        return await self._run(read)

    async def changes_since(self, scope: str, cursor: int) -> ChangeSet:
        prefix = scope + "/"

        def read(connection: sqlite3.Connection) -> ChangeSet:
            # One read transaction, so both queries see the same snapshot.
            connection.execute("BEGIN")
            try:
                rows = connection.execute(
                    "SELECT c.scope, c.key, c.seq, e.entry FROM context_changes AS c "
                    "LEFT JOIN context_entries AS e ON e.scope = c.scope AND e.key = c.key "
                    "WHERE c.seq > ? AND (c.scope = ? OR substr(c.scope, 1, ?) = ?) "
                    "ORDER BY c.seq",
                    (cursor, scope, len(prefix), prefix),
                ).fetchall()
                # The cursor moves past changes in other scopes too, so they are not read again.
                latest = connection.execute("SELECT COALESCE(MAX(seq), 0) FROM context_changes")
                newest = max(cursor, int(latest.fetchone()[0]))
            finally:
                connection.execute("COMMIT")
            entries = tuple(Entry.from_json(row[3]) for row in rows if row[3] is not None)
            removed = tuple((row[0], row[1]) for row in rows if row[3] is None)
            return ChangeSet(entries, removed, newest)

        return await self._run(read)

    async def prepare(self, txid: str, writes: Sequence[StagedWrite]) -> None:
        check_distinct(writes)

        def prepare(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                if connection.execute(
                    "SELECT 1 FROM context_pending WHERE txid = ? LIMIT 1", (txid,)
                ).fetchone():
                    raise ValueError(f"transaction {txid!r} is already prepared in {self._name!r}")
                for write in writes:
                    scope, key = write.address
                    holder = connection.execute(
                        "SELECT txid FROM context_pending WHERE scope = ? AND key = ?",
                        (scope, key),
                    ).fetchone()
                    current = connection.execute(
                        "SELECT version, entry FROM context_entries WHERE scope = ? AND key = ?",
                        (scope, key),
                    ).fetchone()
                    actual = int(current[0]) if current is not None else 0
                    if holder is not None or actual != write.expected_version:
                        raise VersionConflictError(
                            self._name,
                            scope,
                            key,
                            expected_version=write.expected_version,
                            actual_version=actual,
                            locked_by=holder[0] if holder is not None else None,
                        )
                    connection.execute(
                        "INSERT INTO context_pending (scope, key, txid, entry, before) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (
                            scope,
                            key,
                            txid,
                            write.entry.to_json(),
                            current[1] if current is not None else None,
                        ),
                    )

        await self._run(prepare)

    async def commit(self, txid: str) -> None:
        def commit(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                rows = connection.execute(
                    "SELECT entry, committed FROM context_pending WHERE txid = ?", (txid,)
                ).fetchall()
                if not rows:
                    raise ValueError(
                        f"transaction {txid!r} is not prepared in store {self._name!r}; "
                        f"prepare it first"
                    )
                if all(row[1] for row in rows):
                    return
                for entry_json, _ in rows:
                    entry = Entry.from_json(entry_json)
                    connection.execute(
                        "INSERT INTO context_entries (scope, key, version, entry) "
                        "VALUES (?, ?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET "
                        "version = excluded.version, entry = excluded.entry",
                        (entry.scope, entry.key, entry.version, entry_json),
                    )
                    connection.execute(_RECORD_CHANGE, (entry.scope, entry.key))
                connection.execute(
                    "UPDATE context_pending SET committed = 1 WHERE txid = ?", (txid,)
                )

        await self._run(commit)

    async def abort(self, txid: str) -> None:
        def abort(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                rows = connection.execute(
                    "SELECT scope, key, before, committed FROM context_pending WHERE txid = ?",
                    (txid,),
                ).fetchall()
                for scope, key, before, committed in rows:
                    if not committed:
                        continue
                    if before is None:
                        connection.execute(
                            "DELETE FROM context_entries WHERE scope = ? AND key = ?", (scope, key)
                        )
                    else:
                        version = Entry.from_json(before).version
                        connection.execute(
                            "UPDATE context_entries SET version = ?, entry = ? "
                            "WHERE scope = ? AND key = ?",
                            (version, before, scope, key),
                        )
                    connection.execute(_RECORD_CHANGE, (scope, key))
                connection.execute("DELETE FROM context_pending WHERE txid = ?", (txid,))

        await self._run(abort)

    async def release(self, txid: str) -> None:
        def release(connection: sqlite3.Connection) -> None:
            with _immediate(connection):
                connection.execute("DELETE FROM context_pending WHERE txid = ?", (txid,))

        await self._run(release)

    async def pending_transactions(self) -> list[str]:
        """Return the ids of transactions prepared here and neither released nor aborted.

        Ids left by a process that died between prepare and release keep their
        keys locked; abort them once no live process owns them.
        """

        def read(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(
                "SELECT DISTINCT txid FROM context_pending ORDER BY txid"
            ).fetchall()
            return [row[0] for row in rows]

        return await self._run(read)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def close() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        await asyncio.get_running_loop().run_in_executor(self._executor, close)
        self._executor.shutdown(wait=True)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise RuntimeError(f"store {self._name!r} is closed")

        def call() -> _T:
            return work(self._connect())

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _connect(self) -> sqlite3.Connection:
        # Runs on the worker thread, the first time a call needs the database.
        if self._connection is None:
            # isolation_level=None: this module issues BEGIN and COMMIT itself.
            connection = sqlite3.connect(self.path, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(_SCHEMA)
            self._connection = connection
        return self._connection


class _immediate:
    """A ``BEGIN IMMEDIATE`` transaction: commit on success, roll back on any exception."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> sqlite3.Connection:
        self._connection.execute("BEGIN IMMEDIATE")
        return self._connection

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._connection.execute("COMMIT")
        else:
            self._connection.execute("ROLLBACK")
