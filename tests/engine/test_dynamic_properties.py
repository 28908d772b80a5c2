"""Properties of runs whose graph grows while they run, in virtual time.

Random graphs in which random tasks ask for random follow-ups, some of them
depending on each other, under random model-call budgets. Each model call
takes one virtual second, so a run takes milliseconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.budget import Budget
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.followups import FollowUpLimits
from dyntaskmas.engine.result import RunResult
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage, Completion, Usage
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

ROLES = {"worker": "does the step it is given"}
EPSILON_S = 1e-6
# Follow-ups a task asks for: (label, labels it depends on), in list order.
FollowUpPlan = list[tuple[str, list[str]]]


class FollowUpModel:
    """Answers each step after one virtual second, asking for the follow-ups planned for it."""

    def __init__(self, plans: Mapping[str, FollowUpPlan]) -> None:
        self.plans = plans
        self.calls: list[str] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        name = messages[-1].content.split("Your task: Step ", 1)[1].split("\n", 1)[0]
        self.calls.append(name)
        await asyncio.sleep(1.0)
        follow_ups = [
            {
                "id": label,
                "description": f"Step {name}-{label}",
                "role": "worker",
                "depends_on": depends_on,
            }
            for label, depends_on in self.plans.get(name, [])
        ]
        text = json.dumps({"answer": f"output of {name}", "follow_ups": follow_ups})
        return Completion(text, Usage(1, 1), "follow-up", "stop", 1.0)


@st.composite
def follow_up_plans(draw: st.DrawFn) -> FollowUpPlan:
    plan: FollowUpPlan = []
    for k in range(draw(st.integers(min_value=0, max_value=3))):
        earlier = [label for label, _ in plan]
        depends_on = (
            draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else []
        )
        plan.append((f"x{k}", depends_on))
    return plan


@st.composite
def dynamic_runs(draw: st.DrawFn) -> tuple[list[TaskSpec], dict[str, FollowUpPlan]]:
    count = draw(st.integers(min_value=1, max_value=8))
    specs = []
    for index in range(count):
        earlier = [f"n{j}" for j in range(index)]
        depends_on = (
            draw(st.lists(st.sampled_from(earlier), unique=True, max_size=2)) if earlier else []
        )
        specs.append(
            TaskSpec(
                id=f"n{index}",
                description=f"Step n{index}",
                role="worker",
                depends_on=tuple(depends_on),
            )
        )
    # Plans for the graph's tasks and for first-level follow-ups.
    names = [f"n{index}" for index in range(count)]
    plans = {name: draw(follow_up_plans()) for name in names}
    for name in names:
        for label, _ in plans[name]:
            plans[f"{name}-{label}"] = draw(follow_up_plans())
    return specs, plans


def run(
    specs: list[TaskSpec], plans: dict[str, FollowUpPlan], agents: int, budget: Budget
) -> tuple[RunResult, FollowUpModel]:
    model = FollowUpModel(plans)
    limits = FollowUpLimits(max_per_task=3, max_per_run=12, max_depth=2)

    async def main() -> RunResult:
        pool = AgentPool(build_agents(agents, ROLES, {"model": model}))
        config = EngineConfig(roles=ROLES, follow_ups=limits, budget=budget)
        return await Engine(pool, config=config, clock=EventLoopClock()).run_graph(specs)

    return run_virtual(main()), model


@settings(max_examples=80, deadline=None)
@given(
    setup=dynamic_runs(),
    agents=st.integers(min_value=1, max_value=5),
    max_calls=st.none() | st.integers(min_value=1, max_value=20),
)
def test_growing_graph_runs_tasks_once(
    setup: tuple[list[TaskSpec], dict[str, FollowUpPlan]], agents: int, max_calls: int | None
) -> None:
    specs, plans = setup
    result, model = run(specs, plans, agents, Budget(max_llm_calls=max_calls))
    tasks = {record.id: record for record in result.tasks}

    # Each task ran at most once, and never before its dependencies finished.
    assert len(model.calls) == len(set(model.calls))
    assert result.llm_calls == len(model.calls)
    for record in result.tasks:
        if record.started_at is None:
            continue
        for dependency in record.depends_on:
            finished = tasks[dependency].finished_at
            assert finished is not None
            assert record.started_at >= finished - EPSILON_S
    # Follow-ups stay within the run's limits.
    follow_ups = [t for t in result.tasks if ".f" in t.id and t.kind == "work"]
    assert len(follow_ups) <= 12
    assert all(t.id.count(".f") <= 2 for t in follow_ups)
    # Every follow-up feeds each task of the initial graph that depends on its requester.
    for spec in specs:
        for requester in spec.depends_on:
            asked = {t.id for t in follow_ups if t.id.rsplit(".f", 1)[0] == requester}
            assert asked <= set(tasks[spec.id].depends_on)
    # The run ends: complete, or stopped at its budget with what did not run.
    if max_calls is None or result.stop is None:
        assert all(t.state == "done" for t in result.tasks)
        assert result.status == "succeeded"
    else:
        assert result.status == "stopped"
        assert len(model.calls) == max_calls
        assert set(result.stop.not_run) == {t.id for t in result.tasks if t.state != "done"}
