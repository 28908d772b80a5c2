"""Run budgets and stuck runs: a run stops cleanly, says why, and never hangs."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.budget import Budget, BudgetTracker
from dyntaskmas.engine.executor import Engine, EngineConfig, _Run
from dyntaskmas.engine.followups import FollowUpLimits
from dyntaskmas.errors import StuckRunError
from dyntaskmas.format import format_result
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.scripted import ScriptedRequest
from dyntaskmas.llm.types import Completion, Usage

from .harness import ROLE, ROLES, make_engine, output_of, records, replies_by_task, scripted_model
from .harness import step as make_step


def research_step(request: ScriptedRequest) -> str:
    """Research step k answers and asks for step k + 1, up to step 100."""
    task = next(
        line.removeprefix("Your task: ")
        for line in request.last_user_text.splitlines()
        if line.startswith("Your task: ")
    )
    k = int(task.rsplit(" ", 1)[1])
    follow_ups = []
    if k < 100:
        follow_ups = [
            {"id": "next", "description": f"Research step {k + 1}", "role": ROLE, "depends_on": []}
        ]
    return json.dumps({"answer": f"finding {k}", "follow_ups": follow_ups})


async def test_research_loop_stops_at_its_model_call_budget() -> None:
    """A loop that would need 100 steps, with a budget of 25 model calls, stops at 25."""
    limits = FollowUpLimits(max_per_task=1, max_per_run=200, max_depth=200)
    config = EngineConfig(roles=ROLES, follow_ups=limits, budget=Budget(max_llm_calls=25))
    async with scripted_model(research_step) as (server, model):
        engine = Engine(AgentPool(build_agents(2, ROLES, {"scripted": model})), config=config)
        result = await engine.run_graph(
            [TaskSpec(id="r", description="Research step 1", role=ROLE)]
        )

    assert len(server.calls) == 25
    assert result.llm_calls == 25
    assert result.status == "stopped"
    assert result.answer is None
    stop = result.stop
    assert stop is not None
    assert (stop.limit, stop.allowed, stop.used) == ("max_llm_calls", 25, 25)
    outputs = [t.output for t in result.tasks if t.kind == "work" and t.state == "done"]
    assert outputs == [f"finding {k}" for k in range(1, 26)]
    # The 26th step was asked for but did not run, nor did the joins after it.
    not_run = records(result)
    assert stop.not_run
    assert all(not_run[task_id].state in ("pending", "ready") for task_id in stop.not_run)
    assert any(not_run[task_id].description == "Research step 26" for task_id in stop.not_run)
    text = format_result(result)
    assert "budget of 25 model calls was used up" in text
    assert result.to_json()["stop"]["limit"] == "max_llm_calls"


async def test_task_budget_keeps_finished_outputs() -> None:
    """max_tasks = 2 on a chain of four: a and b run, c and d are listed as not run.

    a --> b --> c --> d
    """
    async with scripted_model(replies_by_task({})) as (server, model):
        engine = make_engine(model, 1)
        engine.config = EngineConfig(roles=ROLES, budget=Budget(max_tasks=2))
        result = await engine.run_graph(
            [make_step("a"), make_step("b", "a"), make_step("c", "b"), make_step("d", "c")]
        )

    assert len(server.calls) == 2
    assert result.status == "stopped"
    assert result.stop is not None
    assert result.stop.not_run == ("c", "d")
    assert records(result)["b"].output == output_of("b")


def usage(tokens: int) -> Completion:
    return Completion("x", Usage(tokens, 0), "m", "stop", 0.0)


def test_token_budget_lets_calls_finish() -> None:
    tracker = BudgetTracker(Budget(max_tokens=100))
    assert tracker.may_start(running=0)
    tracker.started()
    tracker.charge([usage(60)])
    assert tracker.may_start(running=1)
    tracker.charge([usage(60)])
    assert not tracker.may_start(running=0)
    stop = tracker.stop_reason(["z"])
    assert stop is not None and (stop.limit, stop.used) == ("max_tokens", 120)


@pytest.mark.parametrize("value", [0, -3])
def test_budget_rejects_limits_below_one(value: int) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        Budget(max_llm_calls=value)


class DroppingEngine(Engine):
    """An engine with a routing bug: it never queues the tasks named in ``lost``."""

    lost: tuple[str, ...] = ("lost",)

    def _route(self, run: _Run, task_ids: Iterable[str]) -> None:
        super()._route(run, [t for t in task_ids if t not in self.lost])


async def test_unstartable_tasks_raise_stuck_error() -> None:
    """``lost`` is never queued, so it and its dependent can never run.

    ok
    lost --> after
    """
    async with scripted_model(replies_by_task({})) as (server, model):
        agents = build_agents(1, ROLES, {"scripted": model})
        engine = DroppingEngine(AgentPool(agents), config=EngineConfig(roles=ROLES))
        with pytest.raises(StuckRunError) as caught:
            await engine.run_graph([make_step("ok"), make_step("lost"), make_step("after", "lost")])

    assert caught.value.task_ids == ("lost", "after")
    assert "'lost'" in str(caught.value)
    assert len(server.calls) == 1


async def test_stuck_error_covers_tasks_added_during_the_run() -> None:
    """The follow-up ``r.f1`` that step 1 asks for is never queued: the run stops naming it."""
    limits = FollowUpLimits(max_per_task=1, max_per_run=5, max_depth=5)
    config = EngineConfig(roles=ROLES, follow_ups=limits)
    async with scripted_model(research_step) as (server, model):
        engine = DroppingEngine(
            AgentPool(build_agents(1, ROLES, {"scripted": model})), config=config
        )
        engine.lost = ("r.f1",)
        with pytest.raises(StuckRunError) as caught:
            await engine.run_graph([TaskSpec(id="r", description="Research step 1", role=ROLE)])

    assert caught.value.task_ids == ("r.f1", "r.followed")
    assert len(server.calls) == 1
