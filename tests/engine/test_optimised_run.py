"""The workflow optimiser inside planned runs, over real HTTP on a scripted server."""

from __future__ import annotations

import json

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import PLANNER_ROLE, Engine, EngineConfig
from dyntaskmas.engine.optimiser import OptimiserConfig
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.planning.planner import Planner

from .harness import ROLE, ROLES, records, scripted_model

REQUEST = "Find three numbers and add them"
SYNTHESIS_MARK = "Final answer:"


def subtask(
    label: str, description: str, *, atomic: bool = True, cost: str = "small"
) -> dict[str, object]:
    return {
        "id": label,
        "description": description,
        "role": ROLE,
        "depends_on": [],
        "atomic": atomic,
        "cost": cost,
        "output_size": "short",
    }


class PlanServer:
    def __init__(self, subtasks: list[dict[str, object]]) -> None:
        self.subtasks = subtasks
        self.plans = 0
        self.work: list[str] = []

    def __call__(self, request: ScriptedRequest) -> ScriptedReply:
        text = request.last_user_text
        if request.response_format is not None:
            self.plans += 1
            return ScriptedReply(text=json.dumps({"subtasks": self.subtasks}))
        if SYNTHESIS_MARK in text:
            return ScriptedReply(text="sum is 6")
        self.work.append(text)
        return ScriptedReply(text="1, 2 and 3")


def engine(
    model: OpenAIChatModel, agents: int, optimiser: OptimiserConfig, max_tasks: int | None = None
) -> Engine:
    pool = AgentPool(build_agents(agents, [*ROLES, PLANNER_ROLE], {"scripted": model}))
    config = EngineConfig(roles=ROLES, optimiser=optimiser, max_tasks=max_tasks)
    return Engine(pool, planner=Planner(model, roles=ROLES), config=config)


TINY = [subtask("s1", "Find one number"), subtask("s2", "Find two"), subtask("s3", "Find three")]


async def test_tiny_sibling_subtasks_run_as_one_merged_task() -> None:
    """With one agent, three tiny siblings would take three calls in a row; they take one."""
    logic = PlanServer(TINY)
    async with scripted_model(logic) as (server, model):
        result = await engine(model, 1, OptimiserConfig(task_overhead_s=5.0)).run(REQUEST)

    tasks = records(result)
    assert result.status == "succeeded"
    assert len(logic.work) == 1
    assert "(1) Find one number (2) Find two (3) Find three" in logic.work[0]
    assert tasks["t.1.m"].state == "done"
    assert [tasks[t].state for t in ("t.1", "t.2", "t.3")] == ["cancelled"] * 3
    assert tasks["answer"].depends_on == ("t.1.m", "t.plan")
    assert any("optimiser merged 3 tiny tasks into 1" in note for note in result.notes)
    assert len(server.calls) == 3


async def test_tiny_siblings_stay_apart_with_an_agent_each() -> None:
    logic = PlanServer(TINY)
    async with scripted_model(logic) as (server, model):
        result = await engine(model, 3, OptimiserConfig(task_overhead_s=5.0)).run(REQUEST)

    assert result.status == "succeeded"
    assert len(logic.work) == 3
    assert not any("merged" in note for note in result.notes)
    assert len(server.calls) == 5


async def test_merge_past_task_limit_is_skipped() -> None:
    """The plan, the answer and three subtasks fill a limit of 5, so a merged sixth does not fit."""
    logic = PlanServer(TINY)
    async with scripted_model(logic) as (server, model):
        optimiser = OptimiserConfig(task_overhead_s=5.0)
        result = await engine(model, 1, optimiser, max_tasks=5).run(REQUEST)

    assert result.status == "succeeded"
    assert len(result.tasks) == 5
    assert len(logic.work) == 3
    assert len(server.calls) == 5


async def test_costly_siblings_are_not_merged() -> None:
    logic = PlanServer([subtask("s1", "Find one number"), subtask("s2", "Find two")])
    async with scripted_model(logic) as (server, model):
        result = await engine(model, 2, OptimiserConfig(task_overhead_s=0.1)).run(REQUEST)

    assert len(logic.work) == 2
    assert not any("merged" in note for note in result.notes)
    assert len(server.calls) == 4


async def test_nested_plan_with_one_idle_agent_runs_as_one_task() -> None:
    """A large non-atomic subtask is not planned again when no agent could share it."""
    logic = PlanServer(
        [subtask("s1", "Find many numbers", atomic=False, cost="large"), subtask("s2", "Find two")]
    )
    async with scripted_model(logic) as (server, model):
        result = await engine(model, 1, OptimiserConfig(task_overhead_s=0.1)).run(REQUEST)

    tasks = records(result)
    assert result.status == "succeeded"
    assert logic.plans == 1
    assert tasks["t.1.1"].description == "Find many numbers"
    assert any("skipped by the optimiser" in note for note in result.notes)
    assert len(server.calls) == 4
