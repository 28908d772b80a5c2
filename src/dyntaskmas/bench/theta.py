"""The θ ablation: what each relevance threshold delivers, costs and misses.

The workload has parallel branches of three tasks, ``fact.i -> work.i ->
use.i``. Each ``fact.i`` outputs one fact about a trip, and each ``use.i``
needs the fact of the *next* branch, ``fact.(i+1)``, which is no
predecessor of it, so only the θ filter can bring it. The ``work.i`` tasks
output notes that no task needs, which θ should keep out of prompts. A scripted
model returns these texts; the real analyser tags them, and the real
:class:`~dyntaskmas.engine.executor.Engine` runs the graph with the real
:class:`~dyntaskmas.context.manager.ContextManager` on a virtual clock.

Durations (1 s, 2 s, 1 s of virtual time, one agent per branch) make every
``fact`` finish before any ``use`` starts, so a miss is θ's doing, not
the schedule's. This module owns the workload and the measurement, not the
table's report.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dyntaskmas.context.entries import JSONValue
from dyntaskmas.context.manager import ContextManager, PublishResult
from dyntaskmas.context.retrieval import ContextSelection
from dyntaskmas.engine.agent_pool import Agent, AgentPool
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage, Completion, Usage
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

#: θ values of the ablation; 0.05 is the current default.
THETAS: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.5, 0.8, 1.0)

ROLE = "worker"

# (fact a producer outputs, description of the consumer that needs it).
# Each consumer's description is what a planner would write for it: it names
# the subject of the fact in its own words, not the fact's wording.
TOPICS: tuple[tuple[str, str], ...] = (
    (
        "The Louvre Museum in Paris opens at 9:00 and an adult ticket costs 22 euros.",
        "Schedule a morning visit to the Louvre Museum and budget the ticket.",
    ),
    (
        "Trains from Paris to Lyon take 2 hours and a second-class ticket costs 45 euros.",
        "Book the train from Paris to Lyon and fit the ticket into the travel budget.",
    ),
    (
        "Hotel Lutetia in Paris charges 180 euros per night with breakfast included.",
        "Choose a hotel in Paris for three nights within the nightly budget.",
    ),
    (
        "Rain is forecast in Lyon on Saturday, and Sunday will be sunny and warm.",
        "Decide which day in Lyon suits an outdoor walk, given the forecast.",
    ),
    (
        "Le Comptoir restaurant in Lyon takes dinner reservations two days ahead only.",
        "Reserve dinner at a restaurant in Lyon for the last evening.",
    ),
    (
        "The Paris Museum Pass costs 70 euros for two days and covers the Orsay museum.",
        "Work out whether a museum pass saves money on the Orsay visit.",
    ),
)

# (description, output) of the middle task of each branch: notes no other task needs.
NOTES: tuple[tuple[str, str], ...] = (
    ("Check the packing list", "Packed passport, power adapter, umbrella and walking shoes."),
    ("Compare phone plans", "An eSIM with 10 GB of data for Europe costs 15 dollars."),
    ("Sort the travel insurance", "The insurance policy covers delays over six hours."),
    ("Note the currency exchange", "Card payments work almost everywhere; carry some coins."),
    ("List the emergency numbers", "Dial 112 for emergencies from any phone in the EU."),
    ("Plan the airport transfer", "The RER B line reaches Charles de Gaulle in 35 minutes."),
)

FACT_S = 1.0
WORK_S = 2.0
USE_S = 1.0


@dataclass(frozen=True)
class ThetaWorkload:
    """The graph, each task's scripted output and duration, and each consumer's needed sources."""

    specs: tuple[TaskSpec, ...]
    outputs: Mapping[str, str]
    durations_s: Mapping[str, float]
    #: Consumer task id -> ids of the tasks whose outputs it needs.
    needed: Mapping[str, frozenset[str]]


def theta_workload(branches: int = len(TOPICS)) -> ThetaWorkload:
    """Build ``branches`` branches of fact -> work -> use; 2 <= branches <= len(TOPICS)."""
    if not 2 <= branches <= len(TOPICS):
        raise ValueError(f"branches must be from 2 to {len(TOPICS)}, got {branches}")
    specs: list[TaskSpec] = []
    outputs: dict[str, str] = {}
    durations: dict[str, float] = {}
    needed: dict[str, frozenset[str]] = {}
    for i in range(branches):
        fact_id, work_id, use_id = f"fact.{i}", f"work.{i}", f"use.{i}"
        source = (i + 1) % branches
        fact_text, _ = TOPICS[i]
        _, use_description = TOPICS[source]
        note_description, note_text = NOTES[i]
        specs += [
            TaskSpec(id=fact_id, description=f"Look up: {fact_text}", role=ROLE, cost_s=FACT_S),
            TaskSpec(
                id=work_id,
                description=note_description,
                role=ROLE,
                depends_on=(fact_id,),
                cost_s=WORK_S,
            ),
            TaskSpec(
                id=use_id,
                description=use_description,
                role=ROLE,
                depends_on=(work_id,),
                cost_s=USE_S,
            ),
        ]
        outputs |= {fact_id: fact_text, work_id: note_text, use_id: f"Done: {use_description}"}
        durations |= {fact_id: FACT_S, work_id: WORK_S, use_id: USE_S}
        needed[use_id] = frozenset({f"fact.{source}"})
    return ThetaWorkload(tuple(specs), outputs, durations, needed)


class ScriptedModel:
    """The model of one agent: returns its current task's scripted output after its duration."""

    def __init__(self, workload: ThetaWorkload) -> None:
        self.workload = workload
        self.agent: Agent | None = None

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, object] | None = None,
    ) -> Completion:
        assert self.agent is not None and self.agent.current_task is not None, (
            "the pool assigns the task before the agent calls its model"
        )
        task_id = self.agent.current_task
        await asyncio.sleep(self.workload.durations_s[task_id])
        text = self.workload.outputs[task_id]
        return Completion(
            text=text,
            usage=Usage(sum(len(m.content) // 4 for m in messages), len(text) // 4),
            model="scripted",
            finish_reason="stop",
            latency_s=self.workload.durations_s[task_id],
        )


class TimedContextManager(ContextManager):
    """A ContextManager that adds the real time spent in publish and context_for.

    NOTE: the timer runs across awaits, so time another coroutine spends
    while one of these calls is suspended would count too. With the memory
    store and the hashing embedder nothing suspends, so it is the calls' own time.
    """

    coordination_s: float = 0.0

    async def publish(
        self,
        task_id: str,
        output: str,
        *,
        description: str = "",
        tags: Iterable[str] | None = None,
        writes: Mapping[str, JSONValue] | None = None,
        priority: int = 0,
    ) -> PublishResult:
        started = time.perf_counter()
        try:
            return await super().publish(
                task_id,
                output,
                description=description,
                tags=tags,
                writes=writes,
                priority=priority,
            )
        finally:
            self.coordination_s += time.perf_counter() - started

    async def context_for(
        self, task: TaskSpec, predecessors: Sequence[str], budget_tokens: int
    ) -> ContextSelection:
        started = time.perf_counter()
        try:
            return await super().context_for(task, predecessors, budget_tokens)
        finally:
            self.coordination_s += time.perf_counter() - started


@dataclass(frozen=True)
class ThetaPoint:
    """Measurements of one θ: ``coordination_s`` in real seconds, the rest counts."""

    theta: float
    context_tokens: int
    updates_delivered: int
    coordination_s: float
    task_success: float


def run_theta_once(workload: ThetaWorkload, theta: float) -> ThetaPoint:
    """Run ``workload`` once with θ = ``theta`` on a virtual clock and measure it."""
    managers: list[TimedContextManager] = []

    def make_manager(run_id: str) -> ContextManager:
        manager = TimedContextManager(run_id, theta=theta)
        managers.append(manager)
        return manager

    async def main() -> None:
        agents = []
        for index in range(len(workload.needed)):
            model = ScriptedModel(workload)
            agent = Agent(name=f"agent-{index + 1}", roles=frozenset({ROLE}), model=model)
            model.agent = agent
            agents.append(agent)
        engine = Engine(
            AgentPool(agents),
            config=EngineConfig(roles={ROLE: "answers travel questions"}),
            clock=EventLoopClock(),
            context=make_manager,
        )
        result = await engine.run_graph(workload.specs, request="Plan a week in Paris and Lyon")
        if result.status != "succeeded":
            raise RuntimeError(f"theta run at {theta} failed: {result.notes}")

    run_virtual(main())
    [manager] = managers
    satisfied = sum(
        manager.record_needed(consumer, sources) == 0
        for consumer, sources in workload.needed.items()
    )
    return ThetaPoint(
        theta=theta,
        context_tokens=manager.stats.tokens_moved,
        updates_delivered=manager.stats.deliveries,
        coordination_s=manager.coordination_s,
        task_success=satisfied / len(workload.needed),
    )


def run_theta(workload: ThetaWorkload, theta: float, *, repeats: int) -> ThetaPoint:
    """Run ``workload`` ``repeats`` times; counts come from the first run, time is the median.

    The runs are deterministic, so only ``coordination_s`` varies between them.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    points = [run_theta_once(workload, theta) for _ in range(repeats)]
    first = points[0]
    return ThetaPoint(
        theta=theta,
        context_tokens=first.context_tokens,
        updates_delivered=first.updates_delivered,
        coordination_s=statistics.median(point.coordination_s for point in points),
        task_success=first.task_success,
    )
