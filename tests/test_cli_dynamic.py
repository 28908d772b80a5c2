"""The ``run`` options for budgets and graph changes: checks, stop output, exit codes."""

from __future__ import annotations

import json

import pytest

from dyntaskmas.cli import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    build_parser,
    options_from_args,
)
from dyntaskmas.llm.scripted import Handler, ScriptedReply, ScriptedRequest
from test_cli import (
    FINAL_ANSWER,
    REQUEST,
    ThreadedServer,
    answering,
    is_answer_request,
    run_main,
)


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


def test_budget_stop_lists_unrun_tasks(
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


def failing_first_work_call_of_subtask_1(failed: list[str]) -> Handler:
    """Reply like :func:`answering`, but reject the first work call of subtask 1 with HTTP 400.

    A 400 is not retried, so the task fails. Every later call is answered,
    the re-plan's included.
    """

    def handle(request: ScriptedRequest) -> ScriptedReply:
        is_work = request.response_format is None and not is_answer_request(request)
        if is_work and "trench 1" in request.last_user_text and not failed:
            failed.append(request.last_user_text)
            return ScriptedReply(status=400, error_message="work call rejected by the test")
        return answering(request)

    return handle


def test_failed_task_recovers_through_default_replan(capsys: pytest.CaptureFixture[str]) -> None:
    """Plan -> (t.1, t.2) -> answer; t.1 fails once and is re-planned as t.1.r1.

    No ``--replans`` is given, so this is the default.
    """
    failed: list[str] = []
    with ThreadedServer(failing_first_work_call_of_subtask_1(failed)) as server:
        code, out, _ = run_main(["run", REQUEST, "--base-url", server.base_url, "--json"], capsys)

    (result,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    states = {task["id"]: task["state"] for task in result["tasks"]}
    assert len(failed) == 1
    assert code == EXIT_OK
    assert result["status"] == "succeeded"
    assert result["answer"] == FINAL_ANSWER
    assert states["t.1"] == "failed"
    assert states["t.1.r1.plan"] == "done"
    assert states["t.1.r1"] == "done"
    assert states["t.2"] == "done"


def test_replans_0_reports_failure_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    failed: list[str] = []
    with ThreadedServer(failing_first_work_call_of_subtask_1(failed)) as server:
        code, out, _ = run_main(
            ["run", REQUEST, "--base-url", server.base_url, "--json", "--replans", "0"], capsys
        )

    (result,) = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert code == EXIT_RUN_FAILED
    assert result["status"] == "failed"
    assert not any(task["id"].startswith("t.1.r") for task in result["tasks"])


def test_replans_with_max_depth_1_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_main(
        [
            "run",
            REQUEST,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--max-depth",
            "1",
            "--replans",
            "2",
        ],
        capsys,
    )

    assert code == EXIT_USAGE
    assert out == ""
    assert "--replans 2 needs --max-depth 2 or more" in err
    assert len(err.strip().splitlines()) == 1


def test_optimiser_on_unless_turned_off() -> None:
    default = options_from_args(build_parser().parse_args(["run", "q"]))
    off = options_from_args(build_parser().parse_args(["run", "--no-optimise", "q"]))

    assert default.optimise is True
    assert off.optimise is False
