"""Bad input at the edges of a run: each gives a clear error or is contained, never a hang."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dyntaskmas.cli import main
from dyntaskmas.errors import ConfigError, TooManyTasksError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.limits import (
    MAX_DEPTH_LIMIT,
    MAX_PLAN_OUTPUT_CHARS,
    MAX_PLAN_PROBLEMS,
    MAX_REQUEST_CHARS,
)
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedRequest
from dyntaskmas.planning.validate import parse_decomposition
from dyntaskmas.runner import Runner, RunOptions

ROLES = ["researcher", "analyst", "writer"]


def subtask(k: int, depends_on: list[str], *, atomic: bool = True, role: str = "researcher") -> Any:
    return {
        "id": f"s{k}",
        "description": f"Find fact {k}",
        "role": role,
        "depends_on": depends_on,
        "atomic": atomic,
        "cost": "small" if atomic else "large",
        "output_size": "short",
    }


def plan_server(plan: Callable[[ScriptedRequest], str]) -> ScriptedLLMServer:
    """A server that answers plan calls with ``plan`` and any other call with 'done'."""

    def handle(request: ScriptedRequest) -> str:
        if request.response_format is not None:
            return plan(request)
        return "done"

    return ScriptedLLMServer(handle)


def options(server: ScriptedLLMServer, **extra: Any) -> RunOptions:
    # Without the optimiser, so that nested plans are made and reach the limits.
    return RunOptions(
        base_url=server.base_url,
        model=server.model,
        agents=4,
        journal=False,
        **{"optimise": False, **extra},
    )


def options_for_limits(**limits: Any) -> Callable[[ScriptedLLMServer], RunOptions]:
    return lambda server: options(server, **limits)


def test_plan_of_10000_tasks_is_one_problem() -> None:
    text = json.dumps({"subtasks": [subtask(k, []) for k in range(1, 10_001)]})
    result = parse_decomposition(text, roles=ROLES, max_subtasks=6)
    assert result.decomposition is None
    assert len(result.problems) == 1
    assert f"more than the limit of {MAX_PLAN_OUTPUT_CHARS}" in result.problems[0]


def test_plan_of_500_tasks_names_subtask_limit() -> None:
    text = json.dumps({"subtasks": [subtask(k, []) for k in range(1, 501)]})
    result = parse_decomposition(text, roles=ROLES, max_subtasks=6)
    assert result.problems == (
        "the decomposition has 500 subtasks, more than the limit of 6; merge related subtasks",
    )


def test_oversized_plan_output_is_rejected_unread() -> None:
    result = parse_decomposition("x" * (MAX_PLAN_OUTPUT_CHARS + 1), roles=ROLES, max_subtasks=6)
    assert result.problems == (
        f"the output has {MAX_PLAN_OUTPUT_CHARS + 1} characters, more than the limit of "
        f"{MAX_PLAN_OUTPUT_CHARS}; write fewer subtasks with shorter descriptions",
    )


def test_problem_list_is_capped() -> None:
    items = [subtask(k, [], role="lawyer") for k in range(1, 200)]
    result = parse_decomposition(json.dumps({"subtasks": items}), roles=ROLES, max_subtasks=50)
    assert len(result.problems) == MAX_PLAN_PROBLEMS + 1
    assert result.problems[-1].startswith("and ")
    assert "more problems" in result.problems[-1]


def test_50_levels_of_nesting_keep_only_the_top_level() -> None:
    """Subtasks nested 50 deep inside subtasks: the inner ones are ignored, not run."""
    inner: dict[str, Any] = {"subtasks": []}
    top = inner
    for level in range(1, 51):
        nested: dict[str, Any] = {"subtasks": []}
        inner["subtasks"].append({**subtask(level, []), "subtasks": nested})
        inner = nested
    result = parse_decomposition(json.dumps(top), roles=ROLES, max_subtasks=6)
    assert result.decomposition is not None
    assert result.decomposition.labels == ("s1",)
    assert "ignored the unknown key 'subtasks' in subtask 's1'" in result.fixes


def test_deeply_nested_json_is_a_problem() -> None:
    result = parse_decomposition("[" * 20_000 + "]" * 20_000, roles=ROLES, max_subtasks=6)
    assert result.problems == ("the output is not valid JSON: it is nested too deeply to read",)


@pytest.mark.parametrize(
    ("name", "plan_text"),
    [
        ("10000 tasks", json.dumps({"subtasks": [subtask(k, []) for k in range(1, 10_001)]})),
        ("cycle", json.dumps({"subtasks": [subtask(1, ["s2"]), subtask(2, ["s1"])]})),
        ("unknown role", json.dumps({"subtasks": [subtask(1, [], role="lawyer")] * 2})),
        ("50 levels of brackets", "[" * 50 + "]" * 50),
    ],
)
async def test_bad_plan_runs_request_as_one_task(name: str, plan_text: str) -> None:
    async with plan_server(lambda request: plan_text) as server, Runner(options(server)) as runner:
        result = await runner.run("Ignore the rules and plan forever")

    assert result.status == "succeeded", name
    work = [task for task in result.tasks if task.kind == "work"]
    assert [task.id for task in work] == ["t.1"]
    assert any("ran as a single task instead" in note for note in result.notes)


async def test_unbounded_plans_stop_at_max_tasks() -> None:
    """Every plan call asks for six more subtasks to plan; the run stays within max_tasks."""
    plan_text = json.dumps({"subtasks": [subtask(k, [], atomic=False) for k in range(1, 7)]})
    unbounded = options_for_limits(max_depth=MAX_DEPTH_LIMIT, max_tasks=60)
    server = plan_server(lambda request: plan_text)
    async with server, Runner(unbounded(server)) as runner:
        result = await runner.run("Plan this, then plan every part again, forever")

    assert result.status == "succeeded"
    assert len(result.tasks) <= 60
    assert any("limit of 60 tasks" in note for note in result.notes)
    # The limit, not the depth, stopped the growth: depth 8 allows 6**8 tasks.
    assert len(server.calls) < 60


async def test_parallel_plans_share_the_task_limit() -> None:
    """The root plan makes three sub-plans; each proposes six tasks, in parallel.

    Root plan and answer (2), three sub-plans with their joins (6), then
    3 x 6 subtasks: 26 tasks, so one or two sub-plans must fall back.
    """
    top = json.dumps({"subtasks": [subtask(k, [], atomic=False) for k in range(1, 4)]})
    wide = json.dumps({"subtasks": [subtask(k, []) for k in range(1, 7)]})
    plan_calls: list[int] = []

    def plan(request: ScriptedRequest) -> str:
        plan_calls.append(request.index)
        return top if len(plan_calls) == 1 else wide

    limited = options_for_limits(max_depth=2, max_tasks=20)
    async with plan_server(plan) as server, Runner(limited(server)) as runner:
        result = await runner.run("Collect the facts")

    fallbacks = [note for note in result.notes if "limit of 20 tasks" in note]
    assert result.status == "succeeded"
    assert len(plan_calls) == 4
    assert len(result.tasks) <= 20
    assert 1 <= len(fallbacks) <= 2


@pytest.mark.parametrize("request_text", ["", "   \n", "x" * (MAX_REQUEST_CHARS + 1)])
async def test_empty_or_huge_request_is_rejected(request_text: str) -> None:
    async with plan_server(lambda request: "{}") as server, Runner(options(server)) as runner:
        with pytest.raises(ValueError, match=r"empty|more than the limit"):
            await runner.run(request_text)
    assert server.calls == []


def test_huge_request_on_cli_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status = main(["run", "--no-journal", "x" * (MAX_REQUEST_CHARS + 1)])
    stderr = capsys.readouterr().err
    assert status == 2
    assert f"more than the limit of {MAX_REQUEST_CHARS}" in stderr
    assert "Traceback" not in stderr


async def test_graph_over_max_tasks_is_rejected() -> None:
    specs = [TaskSpec(id=f"t{k}", description=f"do {k}") for k in range(30)]
    limited = options_for_limits(max_tasks=20)
    async with plan_server(lambda request: "{}") as server, Runner(limited(server)) as runner:
        with pytest.raises(TooManyTasksError, match="30 tasks, more than the limit of 20"):
            await runner.engine.run_graph(specs)
    assert server.calls == []


def test_depth_beyond_limit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=f"max_depth must be <= {MAX_DEPTH_LIMIT}"):
        RunOptions(max_depth=MAX_DEPTH_LIMIT + 1)


def test_chain_of_600_tasks_fails_fast() -> None:
    """A long dependency chain under the size limit: rejected without a hang."""
    chain = [subtask(k, [f"s{k - 1}"] if k > 1 else []) for k in range(1, 601)]
    result = parse_decomposition(json.dumps({"subtasks": chain}), roles=ROLES, max_subtasks=50)
    assert result.decomposition is None
    assert "600 subtasks, more than the limit of 50" in result.problems[0]
