"""Run options as the journal stores them: JSON, and read back unchanged."""

from __future__ import annotations

import json

from dyntaskmas.runner import RunOptions, journal_options, options_from_journal

OPTIONS = RunOptions(
    base_url="http://127.0.0.1:9/v1",
    model="m",
    agents=3,
    roles={"researcher": "finds facts"},
    journal_dir="/tmp/journal",
)


def test_journal_options_read_back_equal() -> None:
    stored = json.loads(json.dumps(journal_options(OPTIONS)))
    assert options_from_journal(stored) == OPTIONS


def test_options_from_journal_drops_unknown_keys() -> None:
    stored = {**journal_options(OPTIONS), "option_of_a_newer_version": 1}
    assert options_from_journal(stored) == OPTIONS


def test_options_from_journal_applies_overrides() -> None:
    rebuilt = options_from_journal(journal_options(OPTIONS), base_url="http://127.0.0.1:10/v1")
    assert rebuilt.base_url == "http://127.0.0.1:10/v1"
    assert rebuilt.agents == 3
