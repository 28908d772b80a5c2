"""Fixtures for every test: keep run journals out of the user's journal folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from dyntaskmas.journal.store import JOURNAL_DIR_ENV_VAR


@pytest.fixture(autouse=True)
def journal_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the default journal folder at the test's own temporary folder."""
    journal_dir = tmp_path / "journal"
    monkeypatch.setenv(JOURNAL_DIR_ENV_VAR, str(journal_dir))
    return journal_dir
