"""Observed runs for the observability tests: a graph on the scripted server, with its events."""

from __future__ import annotations

from collections.abc import Sequence

from dyntaskmas.adapt.allocator import Allocator
from dyntaskmas.adapt.controller import ControllerConfig
from dyntaskmas.adapt.monitor import Monitor
from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.attempts import LocalFlow, RetryingChatModel
from dyntaskmas.llm.scripted import Handler
from dyntaskmas.observe.events import Event, EventBus
from dyntaskmas.sim.capacity import CapacityChatModel, CapacityServer
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual
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


def allocator_run(tasks: int = 120) -> list[Event]:
    """Return the events of ``tasks`` tasks on 16 agents, endpoint ``e`` starting at a limit of 2.

    The allocator adapts the limit once per simulated second on the virtual
    clock, against the in-process capacity server.
    """
    events: list[Event] = []

    async def main() -> None:
        clock = EventLoopClock()
        flow = LocalFlow("e", concurrency=2, clock=clock)
        model = RetryingChatModel(
            CapacityChatModel(CapacityServer(), output_tokens=[60, 90, 140]), flow
        )
        pool = AgentPool(build_agents(16, ["worker"], {"e": model}), limits={"e": flow.limiter})
        bus = EventBus()
        bus.subscribe(events.append)
        monitor = Monitor(clock, pool=pool)
        monitor.watch(flow)
        monitor.attach(bus)
        allocator = Allocator(
            monitor, [(flow, ControllerConfig(max_limit=16))], clock=clock, events=bus, pool=pool
        )
        engine = Engine(
            pool,
            config=EngineConfig(roles={"worker": "w"}, work_max_tokens=140),
            clock=clock,
            events=bus,
        )
        async with allocator.running():
            specs = [TaskSpec(f"t{i}", "work") for i in range(tasks)]
            await engine.run_graph(specs, request="Adapt", run_id="run-adapt")

    run_virtual(main())
    return events
