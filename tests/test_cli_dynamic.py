"""The ``run`` options for budgets and graph changes: checks, stop output, exit codes."""

from __future__ import annotations

import json

import pytest

from dyntaskmas.cli import EXIT_RUN_FAILED, EXIT_USAGE
from test_cli import REQUEST, ThreadedServer, answering, run_main


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--max-tasks", "0"], "max_tasks must be between 3 and"),
        (["--max-llm-calls", "-1"], "--max-llm-calls must be >= 1, got -1"),
        (["--max-run-tokens", "0"], "--max-run-tokens must be >= 1, got 0"),
        (["--follow-ups", "-2"], "--follow-ups must be >= 0, got -2"),
        (["--replans", "-1"], "--replans must be >= 0, got -1"),
        (["--reviews", "-1"], "--reviews must be >= 0, got -1"),
    ],
)
def test_bad_budget_or_change_option_exits_2(
    args: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(
        ["run", REQUEST, "--base-url", "http://127.0.0.1:9/v1", *args], capsys
    )

    assert code == EXIT_USAGE
    assert out == ""
    assert fragment in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_run_stopped_by_its_budget_reports_what_did_not_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One model call: the plan runs; its two subtasks and the answer do not."""
    with ThreadedServer(answering) as server:
        code, out, _ = run_main(
            ["run", REQUEST, "--base-url", server.base_url, "--max-llm-calls", "1", "--json"],
            capsys,
        )
        calls = len(server.calls)

    (result,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert code == EXIT_RUN_FAILED
    assert calls == 1
    assert result["status"] == "stopped"
    assert result["answer"] is None
    assert result["stop"]["limit"] == "max_llm_calls"
    assert result["stop"]["used"] == 1
    assert result["stop"]["not_run"] == ["answer", "t.1", "t.2"]


def test_text_output_of_a_stopped_run(capsys: pytest.CaptureFixture[str]) -> None:
    with ThreadedServer(answering) as server:
        code, out, _ = run_main(
            ["run", REQUEST, "--base-url", server.base_url, "--max-llm-calls", "2"], capsys
        )

    assert code == EXIT_RUN_FAILED
    assert "Answer: (none; the run stopped at a budget limit, see below)" in out
    assert "Run stopped" in out
    assert "Stopped early: the run's budget of 2 model calls was used up (2 used)" in out
    assert "not run: answer, t.2" in out
