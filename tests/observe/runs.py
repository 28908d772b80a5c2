"""Observed runs for the observability tests: a graph on the scripted server, with its events."""

from __future__ import annotations

from collections.abc import Sequence

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.scripted import Handler
from dyntaskmas.observe.events import Event, EventBus
from engine.harness import ROLES, scripted_model, step


def twenty_steps() -> list[TaskSpec]:
    """Return a 20-task graph: four chains of four steps fanning into four joins.

    s0.0 -> s0.1 -> s0.2 -> s0.3 ... s3.0 -> ... -> s3.3, then m0 and m1
    each take two chain ends, and m2 takes m0 and m1, and end takes m2.
    """
    specs = []
    for chain in range(4):
        for index in range(4):
            previous = (f"s{chain}.{index - 1}",) if index else ()
            specs.append(step(f"s{chain}.{index}", *previous))
    specs.append(step("m0", "s0.3", "s1.3"))
    specs.append(step("m1", "s2.3", "s3.3"))
    specs.append(step("m2", "m0", "m1"))
    specs.append(step("end", "m2"))
    return specs


async def observed_run(
    specs: Sequence[TaskSpec], handler: Handler, *, agents: int = 3
) -> tuple[RunResult, list[Event]]:
    """Run ``specs`` on ``agents`` agents of the scripted server; return the result and events."""
    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    async with scripted_model(handler) as (_, model):
        pool = AgentPool(build_agents(agents, ROLES, {"scripted": model}))
        engine = Engine(pool, config=EngineConfig(roles=ROLES), events=bus)
        result = await engine.run_graph(specs, request="Twenty steps", run_id="run-test")
    return result, events
