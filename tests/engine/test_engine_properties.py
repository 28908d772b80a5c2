"""Properties of whole runs on random graphs, in virtual time.

Each task's model call takes exactly its cost estimate C(v) on the virtual
clock, so a run of many simulated seconds takes milliseconds, and makespans
can be compared exactly with their lower bounds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.graph.priority import PRIORITY_POLICIES
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage, Completion, Usage
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

ROLES = {"worker": "does the step it is given"}
# Virtual seconds are exact, but the engine reads the clock a few times per
# task; this absorbs float rounding, not real waiting.
EPSILON_S = 1e-6


class CostTimedModel:
    """A model that answers each task after exactly its cost, in virtual seconds."""

    def __init__(self, costs: Mapping[str, float]) -> None:
        self.costs = costs
        self.calls: list[str] = []

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        task_id = messages[-1].content.split("Your task: Step ", 1)[1].split("\n", 1)[0]
        self.calls.append(task_id)
        await asyncio.sleep(self.costs[task_id])
        return Completion(
            text=f"output of {task_id}",
            usage=Usage(1, 1),
            model="cost-timed",
            finish_reason="stop",
            latency_s=self.costs[task_id],
        )


@st.composite
def dags(draw: st.DrawFn) -> list[TaskSpec]:
    """Random DAGs: edges only from lower to higher index, costs 0.1 to 5 s."""
    count = draw(st.integers(min_value=1, max_value=14))
    specs = []
    for index in range(count):
        earlier = [f"n{j}" for j in range(index)]
        depends_on = (
            draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        )
        cost = draw(st.floats(min_value=0.1, max_value=5.0, allow_nan=False))
        specs.append(
            TaskSpec(
                id=f"n{index}",
                description=f"Step n{index}",
                role="worker",
                depends_on=tuple(depends_on),
                cost_s=round(cost, 3),
                output_tokens=draw(st.integers(min_value=0, max_value=500)),
            )
        )
    return specs


def _run(
    specs: list[TaskSpec], agents: int, policy: str, level_sync: bool
) -> tuple[RunResult, CostTimedModel]:
    model = CostTimedModel({spec.id: spec.cost_s for spec in specs})

    async def main() -> RunResult:
        pool = AgentPool(build_agents(agents, ROLES, {"timed": model}))
        config = EngineConfig(roles=ROLES, priority=policy, level_sync=level_sync)  # type: ignore[arg-type]
        return await Engine(pool, config=config, clock=EventLoopClock()).run_graph(specs)

    return run_virtual(main()), model


def _critical_path_s(specs: list[TaskSpec]) -> float:
    finish: dict[str, float] = {}
    for spec in specs:  # specs are in topological order by construction
        start = max((finish[d] for d in spec.depends_on), default=0.0)
        finish[spec.id] = start + spec.cost_s
    return max(finish.values())


@settings(max_examples=60, deadline=None)
@given(
    specs=dags(),
    agents=st.integers(min_value=1, max_value=6),
    policy=st.sampled_from(PRIORITY_POLICIES),
    level_sync=st.booleans(),
)
def test_every_task_runs_once_after_its_dependencies(
    specs: list[TaskSpec], agents: int, policy: str, level_sync: bool
) -> None:
    result, model = _run(specs, agents, policy, level_sync)
    tasks = {record.id: record for record in result.tasks}

    assert result.status == "succeeded"
    assert sorted(model.calls) == sorted(spec.id for spec in specs)
    for spec in specs:
        record = tasks[spec.id]
        assert record.state == "done"
        assert record.started_at is not None
        for dependency in spec.depends_on:
            finished = tasks[dependency].finished_at
            assert finished is not None
            assert record.started_at >= finished - EPSILON_S


@settings(max_examples=60, deadline=None)
@given(specs=dags(), agents=st.integers(min_value=1, max_value=6))
def test_makespan_never_beats_lower_bound(specs: list[TaskSpec], agents: int) -> None:
    result, _ = _run(specs, agents, "critical_path", level_sync=False)
    total_work = sum(spec.cost_s for spec in specs)

    assert result.makespan_s >= _critical_path_s(specs) - EPSILON_S
    assert result.makespan_s >= total_work / agents - EPSILON_S
    # A greedy list schedule is never worse than twice the better bound
    # (Graham's bound, 2 - 1/m).
    bound = max(_critical_path_s(specs), total_work / agents)
    assert result.makespan_s <= (2 - 1 / agents) * bound + EPSILON_S


@settings(max_examples=40, deadline=None)
@given(specs=dags())
def test_enough_agents_reach_critical_path(specs: list[TaskSpec]) -> None:
    result, _ = _run(specs, len(specs), "critical_path", level_sync=False)

    assert abs(result.makespan_s - _critical_path_s(specs)) <= 1e-3
