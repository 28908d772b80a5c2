"""The engine's own cost: CPU time per task on graphs of no-op tasks.

A no-op model answers at once, so a run's CPU time is the engine's alone:
building the graph, the ready queue, dispatch, prompt building, the asyncio
task per call and the result. Runs use an ordinary event loop and the
engine's default (monotonic) clock. The spec list is built before the timer
starts; :meth:`~dyntaskmas.engine.executor.Engine.run_graph` builds the
graph from it inside the timed span.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyntaskmas.bench.workloads import WORKER_ROLES, noop_graph, to_specs
from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.llm.types import ChatMessage, Completion, Usage

#: Agents of the overhead runs: enough to overlap calls, as a small real run would.
OVERHEAD_AGENTS = 8


class NoOpModel:
    """A model that returns every call at once with an empty completion."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        return Completion(
            text="", usage=Usage(0, 0), model="noop", finish_reason="stop", latency_s=0.0
        )


@dataclass(frozen=True)
class OverheadSample:
    """One size's medians over repeated runs."""

    tasks: int
    agents: int
    repeats: int
    cpu_us_per_task: float
    wall_s: float


def measure_once(
    tasks: int, *, agents: int = OVERHEAD_AGENTS, seed: int = 0
) -> tuple[float, float]:
    """Run ``tasks`` no-op tasks once; return (CPU seconds, wall seconds) of the run."""
    specs = to_specs(noop_graph(tasks, seed=seed))
    model = NoOpModel()
    engine = Engine(
        AgentPool(build_agents(agents, WORKER_ROLES, {"noop": model})),
        config=EngineConfig(roles=WORKER_ROLES),
    )
    results: list[RunResult] = []

    async def main() -> None:
        # Handed over in a list, not returned: see harness.run_workload.
        results.append(await engine.run_graph(specs))

    cpu_start = time.process_time()
    wall_start = time.perf_counter()
    asyncio.run(main())
    wall_s = time.perf_counter() - wall_start
    cpu_s = time.process_time() - cpu_start
    if results[0].status != "succeeded":
        raise RuntimeError(f"the no-op run of {tasks} tasks failed: {results[0].notes}")
    return cpu_s, wall_s


def measure(tasks: int, *, repeats: int, agents: int = OVERHEAD_AGENTS) -> OverheadSample:
    """Return the medians of ``repeats`` runs of ``tasks`` no-op tasks."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    runs = [measure_once(tasks, agents=agents) for _ in range(repeats)]
    return OverheadSample(
        tasks=tasks,
        agents=agents,
        repeats=repeats,
        cpu_us_per_task=statistics.median(cpu for cpu, _ in runs) / tasks * 1e6,
        wall_s=statistics.median(wall for _, wall in runs),
    )
