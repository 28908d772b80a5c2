"""The runs and resume commands: listing, and one-line errors for runs that cannot resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from dyntaskmas.cli import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, format_runs, main
from dyntaskmas.journal.store import FORMAT_VERSION, JournalStore, with_shown_status
from test_cli import FINAL_ANSWER, REQUEST, ThreadedServer, answering, json_lines, run_main


def journal_with_runs(journal_dir: Path) -> None:
    with JournalStore(journal_dir) as store:
        store.begin_run("20260101T000000Z-aaaaaa", "Compare two trenches", {})
        store.append("20260101T000000Z-aaaaaa", "TaskFinished", 1.0, {"task_id": "t.plan"})
        store.finish_run("20260101T000000Z-aaaaaa", "succeeded")
        store.begin_run("20260101T000001Z-bbbbbb", "A request that was cut short", {})


def test_runs_lists_each_run_with_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal_with_runs(tmp_path)
    code = main(["runs", "--journal-dir", str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert code == EXIT_OK
    assert len(lines) == 3
    assert "20260101T000000Z-aaaaaa" in lines[2]
    assert "succeeded" in lines[2]
    # The test process recorded the second run, and it is alive.
    assert "running" in lines[1]


def test_runs_without_journal_says_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["runs", "--journal-dir", str(empty)])
    assert code == EXIT_OK
    assert capsys.readouterr().out.strip() == "no runs recorded"


def test_format_runs_cuts_long_requests(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        store.begin_run("r1", "word " * 40, {})
        text = format_runs(list(with_shown_status(store.runs())))
    assert text.splitlines()[1].endswith("...")


@pytest.mark.parametrize(
    ("run_id", "expected"),
    [
        ("no-such-run", "is not in the journal"),
        ("20260101T000000Z-aaaaaa", "already succeeded"),
    ],
    ids=["unknown", "succeeded"],
)
def test_resume_rejects_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], run_id: str, expected: str
) -> None:
    journal_with_runs(tmp_path)
    code = main(["resume", run_id, "--journal-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.count("\n") == 1
    assert expected in err


def test_resume_rejects_newer_journal_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal_with_runs(tmp_path)
    with JournalStore(tmp_path) as store:
        store.set_format_version(FORMAT_VERSION + 1)
    code = main(["resume", "20260101T000001Z-bbbbbb", "--journal-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.count("\n") == 1
    assert f"format version {FORMAT_VERSION + 1}" in err


def test_resume_without_journal_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["resume", "any", "--journal-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.count("\n") == 1
    assert "no journal" in err


def test_budget_stopped_run_lists_as_stopped_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two model calls per session: the plan and t.1, then t.2 and the answer."""
    journal = str(tmp_path / "journal")
    with ThreadedServer(answering) as server:
        first_code, first_out, _ = run_main(
            [
                "run",
                REQUEST,
                "--base-url",
                server.base_url,
                "--max-llm-calls",
                "2",
                "--journal-dir",
                journal,
                "--json",
            ],
            capsys,
        )
        (first,) = json_lines(first_out)
        _, runs_out, _ = run_main(["runs", "--journal-dir", journal, "--json"], capsys)
        (listed,) = json_lines(runs_out)
        resume_code, resume_out, _ = run_main(
            ["resume", listed["run_id"], "--journal-dir", journal, "--json"], capsys
        )
        (resumed,) = json_lines(resume_out)
        _, after_out, _ = run_main(["runs", "--journal-dir", journal, "--json"], capsys)
        (listed_after,) = json_lines(after_out)

    assert first_code == EXIT_RUN_FAILED
    assert first["status"] == "stopped"
    assert first["run_id"] == listed["run_id"]
    assert listed["status"] == "stopped"
    assert resumed["run_id"] == listed["run_id"]
    assert resume_code == EXIT_OK
    assert resumed["status"] == "succeeded"
    assert resumed["answer"] == FINAL_ANSWER
    assert listed_after["run_id"] == listed["run_id"]
    assert listed_after["status"] == "succeeded"


def test_text_output_names_run_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = str(tmp_path / "journal")
    with ThreadedServer(answering) as server:
        code, out, _ = run_main(
            ["run", REQUEST, "--base-url", server.base_url, "--journal-dir", journal], capsys
        )
    _, runs_out, _ = run_main(["runs", "--journal-dir", journal, "--json"], capsys)
    (listed,) = json_lines(runs_out)

    assert code == EXIT_OK
    assert f"Run id: {listed['run_id']}" in out
