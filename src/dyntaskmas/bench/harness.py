"""Run one workload under one scheduling policy, in virtual time, and measure it.

The engine runs unchanged on a :class:`~dyntaskmas.sim.virtual_time.VirtualTimeEventLoop`.
Each agent gets its own :class:`TaskCostModel`. It looks up the task its
agent is running (``Agent.current_task``, which the pool sets before the
call) and spends that task's cost: its token counts on a simulated server,
or its fixed duration as a virtual sleep. The prompt text the engine builds is not
read, so changes to the engine's prompts do not change the timeline.

Server layouts: ``shared`` puts every agent on one server of ``slots``
slots, so their requests batch and queue; ``per_agent`` gives each agent a
server of its own, so the server is never the limit.

Policies (:data:`POLICIES`) are the engine's own settings:
``sequential`` is one agent; ``level_sync`` holds each level back until the
levels below have finished; ``fifo`` and ``paper_summary`` change the ready
queue's priority; ``critical_path`` is the default engine and
``critical_path_seconds`` the same with edge weights in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dyntaskmas.bench.metrics import busy_time_when_saturated
from dyntaskmas.bench.workloads import BenchTask, Workload, to_specs
from dyntaskmas.engine.agent_pool import Agent, AgentPool
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.llm.types import ChatMessage, Completion, Usage
from dyntaskmas.sim.latency import DEFAULT_LATENCY, LatencyModel
from dyntaskmas.sim.server import SimulatedServer
from dyntaskmas.sim.server_model import ServerConfig
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

Policy = Literal[
    "sequential", "level_sync", "fifo", "paper_summary", "critical_path", "critical_path_seconds"
]
POLICIES: tuple[Policy, ...] = (
    "sequential",
    "level_sync",
    "fifo",
    "paper_summary",
    "critical_path",
    "critical_path_seconds",
)
ServerLayout = Literal["shared", "per_agent"]


def engine_config(policy: Policy, roles: Mapping[str, str]) -> EngineConfig:
    """Return the engine settings of ``policy``; everything else stays at the defaults."""
    if policy == "level_sync":
        return EngineConfig(roles=roles, level_sync=True)
    if policy in ("fifo", "paper_summary"):
        return EngineConfig(roles=roles, priority=policy)
    if policy == "critical_path_seconds":
        return EngineConfig(roles=roles, weighting="seconds")
    return EngineConfig(roles=roles)


def agents_for(policy: Policy, agents: int) -> int:
    """Return the agent count a policy runs with: one for ``sequential``."""
    return 1 if policy == "sequential" else agents


@dataclass(frozen=True)
class RunSettings:
    """The agents and the simulated server of a run."""

    agents: int
    slots: int = 32
    layout: ServerLayout = "shared"
    latency: LatencyModel = DEFAULT_LATENCY

    def __post_init__(self) -> None:
        if self.agents < 1:
            raise ValueError(f"agents must be >= 1, got {self.agents}")
        if self.slots < 1:
            raise ValueError(f"slots must be >= 1, got {self.slots}")


@dataclass(frozen=True)
class Measurement:
    """What one run measured. Times are virtual seconds unless named ``wall`` or ``cpu``.

    ``utilisation`` is the shared server's busy-slot fraction over the run
    (0 for the ``per_agent`` layout). ``saturated_utilisation`` is the same
    fraction over only the time when at least ``slots`` tasks were ready or
    running, and 1.0 when that never happened. ``saturated_share`` is that
    time's share of the makespan.
    """

    workload: str
    policy: Policy
    agents: int
    slots: int
    tasks: int
    makespan_s: float
    utilisation: float
    saturated_utilisation: float
    saturated_share: float
    wall_s: float
    cpu_s: float


class TaskCostModel:
    """The model of one agent: each call spends the cost of the agent's current task.

    Set :attr:`agent` before the run. ``busy`` collects ``(start, end)`` of
    every server request in event-loop seconds, for utilisation.
    """

    def __init__(
        self,
        tasks: Mapping[str, BenchTask],
        server: SimulatedServer | None,
        busy: list[tuple[float, float]],
    ) -> None:
        self.tasks = tasks
        self.server = server
        self.busy = busy
        self.agent: Agent | None = None

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        assert self.agent is not None and self.agent.current_task is not None, (
            "the pool assigns the task before the agent calls its model"
        )
        task = self.tasks[self.agent.current_task]
        loop = asyncio.get_running_loop()
        started = loop.time()
        if task.duration_s is not None or self.server is None:
            await asyncio.sleep(task.duration_s or 0.0)
        else:
            finished = await self.server.generate(task.prompt_tokens, task.output_tokens)
            # Model time runs from the server's first request; this maps it to loop time.
            offset = started - finished.arrived_at
            self.busy.append((finished.admitted_at + offset, finished.finished_at + offset))
        return Completion(
            text=f"done {task.id}",
            usage=Usage(task.prompt_tokens, task.output_tokens),
            model="bench",
            finish_reason="stop",
            latency_s=loop.time() - started,
        )


def run_workload(workload: Workload, policy: Policy, settings: RunSettings) -> Measurement:
    """Run ``workload`` under ``policy`` on a fresh virtual-time loop and measure it."""
    agent_count = agents_for(policy, settings.agents)
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    outcome: list[tuple[RunResult, float, list[tuple[float, float]]]] = []

    async def main() -> None:
        # The result is handed over in a list, not returned, because
        # asyncio's runner on Python 3.11 formats the main task's result with
        # repr() twice when it restores the SIGINT handler on exit. For a
        # large graph that costs a few microseconds per task.
        outcome.append(await _run(workload, policy, settings, agent_count))

    run_virtual(main())
    result, utilisation, busy = outcome[0]
    cpu_s = time.process_time() - cpu_start
    wall_s = time.perf_counter() - wall_start

    saturated_s, busy_saturated_s = busy_time_when_saturated(
        result.tasks, busy, settings.slots, result.makespan_s
    )
    if settings.layout == "per_agent":
        saturated_utilisation = 0.0
    elif saturated_s > 0:
        saturated_utilisation = busy_saturated_s / (settings.slots * saturated_s)
    else:
        saturated_utilisation = 1.0
    return Measurement(
        workload=workload.name,
        policy=policy,
        agents=agent_count,
        slots=settings.slots,
        tasks=len(workload.tasks),
        makespan_s=result.makespan_s,
        utilisation=utilisation,
        saturated_utilisation=saturated_utilisation,
        saturated_share=saturated_s / result.makespan_s if result.makespan_s > 0 else 0.0,
        wall_s=wall_s,
        cpu_s=cpu_s,
    )


async def _run(
    workload: Workload, policy: Policy, settings: RunSettings, agent_count: int
) -> tuple[RunResult, float, list[tuple[float, float]]]:
    tasks = {task.id: task for task in workload.tasks}
    busy: list[tuple[float, float]] = []
    server_config = ServerConfig(slots=settings.slots, latency=settings.latency)
    shared = SimulatedServer(server_config) if settings.layout == "shared" else None
    roles = frozenset(workload.roles)
    agents = []
    for index in range(agent_count):
        server = shared or SimulatedServer(ServerConfig(slots=1, latency=settings.latency))
        model = TaskCostModel(tasks, server, busy)
        agent = Agent(name=f"agent-{index + 1}", roles=roles, model=model)
        model.agent = agent
        agents.append(agent)

    engine = Engine(
        AgentPool(agents),
        config=engine_config(policy, workload.roles),
        clock=EventLoopClock(),
    )
    result = await engine.run_graph(to_specs(workload, settings.latency))
    if result.status != "succeeded":
        raise RuntimeError(
            f"benchmark run of {workload.name} under {policy} failed: {result.notes}"
        )
    utilisation = shared.stats().utilisation if shared is not None else 0.0
    if shared is not None:
        shared.close()
    return result, utilisation, busy
