"""Planned runs with and without the workflow optimiser, on the simulated server.

Each run plans a request with the real :class:`~dyntaskmas.planning.planner.Planner`
and runs it on the real engine, on a virtual clock. The model is a
:class:`~dyntaskmas.sim.chat_model.SimulatedChatModel` on one shared server
whose text comes from a :class:`PlannedWorkload`, so the plans are fixed
and every run is repeatable:

- a plan call gets the workload's plan for the task being planned, cut to
  as many subtasks as the schema allows (the optimiser can lower that);
- a work call returns as many tokens as its description is worth, and a
  merged task, whose description lists several parts, returns their sum;
- every call first waits ``call_overhead_s``, a fixed latency per call
  such as a remote API's network time and queueing, which is what makes
  tiny tasks expensive.

Workloads (:func:`planned_workloads`): ``tiny_siblings`` (many short
subtasks), ``large_subtasks`` (a few long ones) and ``nested`` (subtasks
that the planner decomposes again).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyntaskmas.adapt.calibration import CostCalibrator
from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import PLANNER_ROLE, Engine, EngineConfig
from dyntaskmas.engine.optimiser import MERGE_REASON, OptimiserConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.llm.types import ChatMessage, Completion
from dyntaskmas.observe.events import Event, GraphChanged
from dyntaskmas.planning.planner import PlanLimits, Planner
from dyntaskmas.sim.chat_model import SimulatedCall, SimulatedChatModel
from dyntaskmas.sim.content import filler_text
from dyntaskmas.sim.plans import max_subtasks
from dyntaskmas.sim.server import SimulatedServer
from dyntaskmas.sim.server_model import ServerConfig
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

ROLES: Mapping[str, str] = {"worker": "does the step it is given"}
#: Output tokens of the final answer.
ANSWER_TOKENS = 120
#: Output cap of work calls: above every answer of these workloads.
WORK_MAX_TOKENS = 4096
SKIP_NOTE = "skipped by the optimiser"


@dataclass(frozen=True)
class Part:
    """One subtask a scripted plan proposes.

    ``output_tokens`` is what its work call answers with. A part with
    ``nested`` set is not atomic: planning it again yields the ``nested``
    parts, and running it undecomposed answers with their total.
    """

    description: str
    output_tokens: int
    cost: str = "small"
    output_size: str = "short"
    nested: tuple[Part, ...] = ()


@dataclass(frozen=True)
class PlannedWorkload:
    """A request, the plan the scripted planner gives for it, and the per-call latency."""

    name: str
    request: str
    parts: tuple[Part, ...]
    call_overhead_s: float

    def output_tokens(self, description: str) -> int:
        """Return the tokens a work call for ``description`` answers with."""
        sizes = {p.description: _total_tokens(p) for p in _all_parts(self.parts)}
        if description in sizes:
            return sizes[description]
        # A merged task or a subtask of a shortened plan lists several parts.
        # The request itself, run whole when its plan failed, is worth all parts.
        listed = [size for text, size in sizes.items() if text in description]
        if listed:
            return sum(listed)
        return sum(_total_tokens(p) for p in self.parts)


@dataclass(frozen=True)
class PlannedRun:
    """The measurements of one planned run, with times in virtual seconds."""

    workload: str
    agents: int
    optimise: bool
    makespan_s: float
    tasks_run: int
    llm_calls: int
    tokens: int
    merged: int
    skipped_decompositions: int


def planned_workloads() -> tuple[PlannedWorkload, ...]:
    """Return the three workloads: tiny siblings, large subtasks, nested plans."""
    tiny = tuple(Part(f"Find item {k} of 12", 16) for k in range(1, 13))
    large = tuple(
        Part(f"Write section {k} of 3", 600, cost="large", output_size="long") for k in range(1, 4)
    )
    topics = tuple(
        Part(
            f"Research topic {k} of 4",
            0,
            cost="large",
            output_size="long",
            nested=tuple(
                Part(f"Find part {j} of topic {k}", 200, cost="medium", output_size="medium")
                for j in range(1, 5)
            ),
        )
        for k in range(1, 5)
    )
    return (
        PlannedWorkload("tiny_siblings", "List twelve short facts about rivers", tiny, 1.5),
        PlannedWorkload("large_subtasks", "Write a three-section report on rivers", large, 1.5),
        PlannedWorkload("nested", "Research four topics about rivers in depth", topics, 1.5),
    )


def run_planned(workload: PlannedWorkload, *, agents: int, optimise: bool) -> PlannedRun:
    """Plan and run ``workload`` on a fresh virtual-time loop and measure it."""
    outcome: list[PlannedRun] = []

    async def main() -> None:
        outcome.append(await _run(workload, agents, optimise))

    run_virtual(main())
    return outcome[0]


class _OverheadModel:
    """A chat model that waits a fixed latency before each call of ``inner``."""

    def __init__(self, inner: SimulatedChatModel, overhead_s: float) -> None:
        self.inner = inner
        self.overhead_s = overhead_s

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        await asyncio.sleep(self.overhead_s)
        completion = await self.inner.complete(
            messages, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema
        )
        return Completion(
            text=completion.text,
            usage=completion.usage,
            model=completion.model,
            finish_reason=completion.finish_reason,
            latency_s=completion.latency_s + self.overhead_s,
        )


async def _run(workload: PlannedWorkload, agents: int, optimise: bool) -> PlannedRun:
    server = SimulatedServer(ServerConfig())
    simulated = SimulatedChatModel(server, text=lambda call: _reply(workload, call))
    model = _OverheadModel(simulated, workload.call_overhead_s)
    pool = AgentPool(build_agents(agents, [*ROLES, PLANNER_ROLE], {"sim": model}))
    planner = Planner(model, roles=ROLES, limits=PlanLimits(max_subtasks=12))
    config = EngineConfig(
        roles=ROLES,
        # Room for the longest answer, so that no work is cut short.
        work_max_tokens=WORK_MAX_TOKENS,
        optimiser=OptimiserConfig() if optimise else None,
    )
    calibrator = CostCalibrator()
    engine = Engine(
        pool, planner=planner, config=config, clock=EventLoopClock(), calibrator=calibrator
    )
    calibrator.attach(engine.events)
    merged: list[int] = []

    def count_merges(event: Event) -> None:
        if isinstance(event, GraphChanged) and event.reason == MERGE_REASON:
            merged.append(len(event.cancel_requested))

    engine.events.subscribe(count_merges)
    result = await engine.run(workload.request)
    server.close()
    if result.status != "succeeded":
        raise RuntimeError(f"planned run of {workload.name} failed: {result.notes}")
    return _measure(workload, agents, optimise, result, sum(merged))


def _measure(
    workload: PlannedWorkload, agents: int, optimise: bool, result: RunResult, merged: int
) -> PlannedRun:
    return PlannedRun(
        workload=workload.name,
        agents=agents,
        optimise=optimise,
        makespan_s=result.makespan_s,
        tasks_run=sum(1 for task in result.tasks if task.agent is not None),
        llm_calls=result.llm_calls,
        tokens=result.usage.prompt_tokens + result.usage.completion_tokens,
        merged=merged,
        skipped_decompositions=sum(SKIP_NOTE in note for note in result.notes),
    )


# --- the scripted model ---------------------------------------------------------------

_TASK_LINE = re.compile(r"^(?:Your task|Task): (.*)$", re.MULTILINE)


def _reply(workload: PlannedWorkload, call: SimulatedCall) -> str:
    text = call.messages[-1].content
    task = _TASK_LINE.search(text)
    description = task.group(1).strip() if task is not None else None
    schema = call.json_schema
    if schema is not None and "subtasks" in schema.get("properties", {}):
        return _plan(workload, description, max_subtasks(schema))
    if text.rstrip().endswith("Final answer:"):
        return filler_text(ANSWER_TOKENS, offset=call.index)
    tokens = workload.output_tokens(description or workload.request)
    return filler_text(tokens, offset=call.index)


def _plan(workload: PlannedWorkload, description: str | None, limit: int) -> str:
    """Return the plan of the request or of the nested part ``description``."""
    parts = workload.parts
    if description is not None and description != workload.request:
        parts = next(p.nested for p in _all_parts(workload.parts) if p.description == description)
    # A plan cut to fewer subtasks does the same work in bigger pieces:
    # subtask k takes parts k, k + limit, k + 2 * limit and so on.
    groups = [parts[k::limit] for k in range(min(limit, len(parts)))]
    subtasks = [
        {
            "id": f"s{k}",
            "description": "; ".join(part.description for part in group),
            "role": next(iter(ROLES)),
            "depends_on": [],
            "atomic": not any(part.nested for part in group),
            "cost": group[0].cost,
            "output_size": group[0].output_size,
        }
        for k, group in enumerate(groups, start=1)
    ]
    return json.dumps({"subtasks": subtasks})


def _all_parts(parts: Sequence[Part]) -> list[Part]:
    found = []
    for part in parts:
        found.append(part)
        found.extend(_all_parts(part.nested))
    return found


def _total_tokens(part: Part) -> int:
    if part.nested:
        return sum(_total_tokens(p) for p in part.nested)
    return part.output_tokens
