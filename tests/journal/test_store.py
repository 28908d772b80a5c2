"""The SQLite journal file: schema, format version, WAL, runs and events."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from dyntaskmas.errors import JournalError, JournalVersionError, UnknownRunError
from dyntaskmas.journal.store import (
    FORMAT_VERSION,
    JOURNAL_DIR_ENV_VAR,
    JournalStore,
    RunRow,
    default_journal_dir,
    with_shown_status,
)


def test_store_uses_wal_mode(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_new_store_writes_format_version(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        assert store.format_version == FORMAT_VERSION


def test_newer_format_version_is_rejected(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        store.set_format_version(FORMAT_VERSION + 1)
    with pytest.raises(JournalVersionError) as caught:
        JournalStore(tmp_path)
    assert caught.value.found == FORMAT_VERSION + 1
    assert "newer" in str(caught.value)


def test_missing_journal_is_reported_without_create(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal"):
        JournalStore(tmp_path / "nothing", create=False)


def test_events_come_back_in_order(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        store.begin_run("r1", "the request", {"agents": 2})
        first = store.append("r1", "TaskStarted", 0.5, {"task_id": "a"})
        second = store.append("r1", "TaskFinished", 1.5, {"task_id": "a", "output": "x"})
        events = store.events("r1")
    assert (first, second) == (1, 2)
    assert [event.kind for event in events] == ["TaskStarted", "TaskFinished"]
    assert events[1].payload["output"] == "x"


def test_run_row_counts_finished_tasks(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        store.begin_run("r1", "the request", {"agents": 2})
        store.append("r1", "TaskFinished", 1.0, {"task_id": "a"})
        store.append("r1", "TaskFinished", 2.0, {"task_id": "b"})
        store.finish_run("r1", "succeeded")
        row = store.run("r1")
    assert row.tasks_done == 2
    assert row.status == "succeeded"
    assert row.options == {"agents": 2}


def test_unknown_run_is_reported(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store, pytest.raises(UnknownRunError) as caught:
        store.run("no-such-run")
    assert caught.value.run_id == "no-such-run"


def test_begin_run_again_keeps_creation_time(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        store.begin_run("r1", "the request", {})
        created = store.run("r1").created_at
        store.finish_run("r1", "failed")
        store.begin_run("r1", "the request", {})
        row = store.run("r1")
    assert row.created_at == created
    assert row.status == "running"


def test_running_run_of_dead_process_shows_interrupted(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        store.begin_run("r1", "the request", {})
        rows = store.runs()
    # This process is alive; a pid above Linux's maximum (2**22) belongs to no process.
    alive = list(with_shown_status(rows))
    dead = list(with_shown_status([_with_pid(rows[0], 2**22 + 1)]))
    assert alive[0][1] == "running"
    assert dead[0][1] == "interrupted"


def test_default_journal_dir_order() -> None:
    assert default_journal_dir({JOURNAL_DIR_ENV_VAR: "/j"}) == Path("/j")
    assert default_journal_dir({"XDG_DATA_HOME": "/x"}) == Path("/x/dyntaskmas")
    assert default_journal_dir({}) == Path.home() / ".local" / "share" / "dyntaskmas"


def _with_pid(row: RunRow, pid: int) -> RunRow:
    return replace(row, pid=pid)


def test_file_that_is_not_sqlite_is_reported(tmp_path: Path) -> None:
    (tmp_path / "journal.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="not a readable SQLite database"):
        JournalStore(tmp_path)
