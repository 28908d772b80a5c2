"""The SQLite file of the run journal: runs, their events, the format version.

:class:`JournalStore` owns the schema and every SQL statement. It stores
an engine event as its kind and a JSON payload only, and
:mod:`dyntaskmas.journal.codec` turns events into payloads.

Schema (``format_version`` 1)::

    meta(key PRIMARY KEY, value)            -- 'format_version' -> '1'
    runs(run_id PRIMARY KEY, request, options JSON, status, pid,
         created_at, updated_at)            -- times in Unix seconds
    events(run_id, seq, kind, at_s, payload JSON, PRIMARY KEY (run_id, seq))

Durability: WAL mode with ``synchronous=NORMAL``. Each append is its own
transaction, and in WAL mode a committed transaction is in the WAL file
before ``commit()`` returns, so a killed process (SIGKILL included) loses
nothing it committed. Only a power loss or an OS crash can roll back the
last few commits, and the database stays consistent: a resume then runs
those tasks again. ``FULL`` would close that gap at the cost of one fsync
per event, which the engine would pay in its event loop for every state
change.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dyntaskmas.errors import JournalError, JournalVersionError, UnknownRunError

#: Bumped whenever the schema or a payload changes in a way older readers misread.
FORMAT_VERSION = 1
JOURNAL_DIR_ENV_VAR = "DYNTASKMAS_JOURNAL_DIR"
JOURNAL_FILE_NAME = "journal.sqlite3"

#: ``stopped``: a budget limit stopped the run, and a resume runs what is left.
RunStatus = Literal["running", "succeeded", "failed", "stopped"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs (run_id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at_s REAL NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""


def default_journal_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the journal's folder.

    That is ``$DYNTASKMAS_JOURNAL_DIR``, else ``$XDG_DATA_HOME/dyntaskmas``,
    else ``~/.local/share/dyntaskmas``.
    """
    env = os.environ if environ is None else environ
    if env.get(JOURNAL_DIR_ENV_VAR):
        return Path(env[JOURNAL_DIR_ENV_VAR]).expanduser()
    xdg = env.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "dyntaskmas"


@dataclass(frozen=True)
class RunRow:
    """One run as the journal stores it; times in Unix seconds."""

    run_id: str
    request: str
    options: Mapping[str, Any]
    status: RunStatus
    pid: int | None
    created_at: float
    updated_at: float
    events: int
    tasks_done: int


@dataclass(frozen=True)
class EventRow:
    """One journalled event: its kind (the event class name) and JSON payload."""

    seq: int
    kind: str
    at_s: float
    payload: Mapping[str, Any]


class JournalStore:
    """The journal file of one journal folder; opened with the schema in place.

    Raises :class:`~dyntaskmas.errors.JournalVersionError` for a file written
    by a newer format version, before anything is changed in it.
    """

    def __init__(self, journal_dir: Path | str, *, create: bool = True) -> None:
        self.journal_dir = Path(journal_dir)
        self.path = self.journal_dir / JOURNAL_FILE_NAME
        if not create and not self.path.exists():
            raise JournalError(
                f"no journal at {str(self.path)!r}; no run has been recorded in this "
                f"folder yet, so check --journal-dir or ${JOURNAL_DIR_ENV_VAR}"
            )
        try:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: autocommit, so each BEGIN ... COMMIT below
            # is exactly one transaction.
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open journal {str(self.path)!r}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._check_version()
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('format_version', ?)",
                (str(FORMAT_VERSION),),
            )
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise JournalError(
                f"journal {str(self.path)!r} is not a readable SQLite database ({exc}); "
                f"move it away or use another --journal-dir"
            ) from exc
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JournalStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_version(self) -> None:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if has_meta:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
            found = int(row[0]) if row else FORMAT_VERSION
            if found > FORMAT_VERSION:
                raise JournalVersionError(str(self.path), found, FORMAT_VERSION)

    @property
    def format_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'format_version'").fetchone()
        return int(row[0])

    def set_format_version(self, version: int) -> None:
        """Overwrite the stored format version (for tests of version checks)."""
        with self._transaction():
            self._db.execute(
                "UPDATE meta SET value = ? WHERE key = 'format_version'", (str(version),)
            )

    # --- writes: each one transaction, committed before it returns ------------

    def begin_run(self, run_id: str, request: str, options: Mapping[str, Any]) -> None:
        """Add a run, or mark an existing one as running again (a resume)."""
        now = time.time()
        with self._transaction():
            self._db.execute(
                "INSERT INTO runs (run_id, request, options, status, pid, created_at, updated_at)"
                " VALUES (?, ?, ?, 'running', ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET"
                " status = 'running', pid = excluded.pid, updated_at = excluded.updated_at",
                (run_id, request, json.dumps(dict(options)), os.getpid(), now, now),
            )

    def append(self, run_id: str, kind: str, at_s: float, payload: Mapping[str, Any]) -> int:
        """Append one event to a run and return its sequence number."""
        with self._transaction():
            row = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?", (run_id,)
            ).fetchone()
            seq = int(row[0]) + 1
            self._db.execute(
                "INSERT INTO events (run_id, seq, kind, at_s, payload) VALUES (?, ?, ?, ?, ?)",
                (run_id, seq, kind, at_s, json.dumps(dict(payload), ensure_ascii=False)),
            )
            self._db.execute(
                "UPDATE runs SET updated_at = ? WHERE run_id = ?", (time.time(), run_id)
            )
        return seq

    def finish_run(self, run_id: str, status: RunStatus) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE runs SET status = ?, updated_at = ? WHERE run_id = ?",
                (status, time.time(), run_id),
            )

    # --- reads -----------------------------------------------------------------

    def run(self, run_id: str) -> RunRow:
        """Return one run; raise UnknownRunError if the journal has none with this id."""
        rows = self._run_rows("WHERE r.run_id = ?", (run_id,))
        if not rows:
            raise UnknownRunError(run_id, str(self.path))
        return rows[0]

    def runs(self) -> list[RunRow]:
        """Return every run, newest first."""
        return self._run_rows("", ())

    def events(self, run_id: str) -> list[EventRow]:
        """Return a run's events in the order they were appended."""
        cursor = self._db.execute(
            "SELECT seq, kind, at_s, payload FROM events WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        return [EventRow(seq, kind, at, json.loads(payload)) for seq, kind, at, payload in cursor]

    def _run_rows(self, where: str, parameters: tuple[str, ...]) -> list[RunRow]:
        cursor = self._db.execute(
            "SELECT r.run_id, r.request, r.options, r.status, r.pid, r.created_at, r.updated_at,"
            " (SELECT COUNT(*) FROM events e WHERE e.run_id = r.run_id),"
            " (SELECT COUNT(*) FROM events e WHERE e.run_id = r.run_id"
            "  AND e.kind = 'TaskFinished')"
            f" FROM runs r {where} ORDER BY r.created_at DESC, r.run_id DESC",
            parameters,
        )
        rows = []
        for run_id, request, options, status, pid, created, updated, events, done in cursor:
            rows.append(
                RunRow(
                    run_id=run_id,
                    request=request,
                    options=json.loads(options),
                    status=status,
                    pid=pid,
                    created_at=created,
                    updated_at=updated,
                    events=events,
                    tasks_done=done,
                )
            )
        return rows

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` on an exception.

    IMMEDIATE takes the write lock at the start, so two processes appending
    to one journal wait for each other instead of failing half-way.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def with_shown_status(rows: list[RunRow]) -> Iterator[tuple[RunRow, str]]:
    """Yield each run with the status to show.

    A run recorded as running whose process is gone shows as 'interrupted'.
    """
    for row in rows:
        display_status: str = row.status
        if row.status == "running" and not process_alive(row.pid):
            display_status = "interrupted"
        yield row, display_status


def process_alive(pid: int | None) -> bool:
    """Return whether a process with this id exists on this machine."""
    # NOTE: checks the pid on this machine only, and a reused pid reads as
    # alive; a journal shared between machines shows their runs as running.
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
