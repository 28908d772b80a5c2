"""Benchmark workloads: task graphs whose costs are token counts or durations.

A :class:`Workload` is a list of :class:`BenchTask`. Each task costs either
token counts on the simulated LLM server (``prompt_tokens`` and
``output_tokens``, so its time comes from the server's latency model and
from batching with other requests) or a fixed ``duration_s`` (AsyncHow
steps). A task's prompt contains its own instructions plus the outputs of its
direct predecessors, as the engine's work prompts do, so
:attr:`BenchTask.prompt_tokens` already includes those transfers.

Three families:

- :func:`travel_request`: a TravelPlanner-style trip request of the
  ``simple``, ``medium`` or ``complex`` kind (3, 5 or 7 days over 1, 2 or 3
  cities, the three trip lengths of TravelPlanner's queries);
- :func:`layered_dag` and :func:`independent_tasks`: seeded random graphs
  with prompt and output sizes drawn from the Azure LLM trace's summary;
- :func:`noop_graph`: tasks that cost nothing, for the engine's own overhead.

:func:`describe` measures a workload's shape. Everything here is pure: no
clock, no I/O, and randomness only from a seed the caller passes.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.sim.latency import DEFAULT_LATENCY, LatencyModel
from dyntaskmas.sim.workload_sizes import DEFAULT_SIZES

Complexity = Literal["simple", "medium", "complex"]
COMPLEXITIES: tuple[Complexity, ...] = ("simple", "medium", "complex")

#: The roles of the travel workloads, as the engine's role descriptions.
TRAVEL_ROLES: Mapping[str, str] = {
    "researcher": "looks up transport, lodging, sights and restaurants with the travel tools",
    "analyst": "plans days, picks lodging and checks the budget from facts it is given",
    "writer": "writes the final day-by-day travel plan",
}
#: The single role of the random and no-op graphs.
WORKER_ROLES: Mapping[str, str] = {"worker": "does the step it is given"}


@dataclass(frozen=True)
class BenchTask:
    """One task of a workload.

    ``prompt_tokens`` counts the whole prompt, the predecessors' outputs
    included. ``duration_s``, when set, replaces the server: the task's
    model call takes exactly that many (virtual) seconds.
    """

    id: str
    description: str
    role: str
    depends_on: tuple[str, ...] = ()
    prompt_tokens: int = 0
    output_tokens: int = 1
    duration_s: float | None = None


@dataclass(frozen=True)
class Workload:
    """A named task graph, tasks in a topological order."""

    name: str
    tasks: tuple[BenchTask, ...]
    roles: Mapping[str, str] = field(default_factory=lambda: dict(WORKER_ROLES))


@dataclass(frozen=True)
class WorkloadShape:
    """Size and shape of a workload.

    ``width`` is the largest number of tasks on one level (a task's level is
    1 + its deepest dependency's); ``depth`` the number of levels. Costs are
    each task's estimated seconds alone on the server (or its duration).
    """

    tasks: int
    edges: int
    width: int
    depth: int
    min_cost_s: float
    median_cost_s: float
    max_cost_s: float
    total_work_s: float
    critical_path_s: float


# --- task costs ---------------------------------------------------------------


def estimate_cost_s(task: BenchTask, latency: LatencyModel = DEFAULT_LATENCY) -> float:
    """Return the task's time alone on an idle server: one prefill, then batch-1 decodes."""
    if task.duration_s is not None:
        return task.duration_s
    decode_steps = max(task.output_tokens, 1) - 1
    return latency.prefill_s(task.prompt_tokens) + decode_steps * latency.decode_step_s(1)


def to_specs(workload: Workload, latency: LatencyModel = DEFAULT_LATENCY) -> list[TaskSpec]:
    """Return the engine's task specs, with ``cost_s`` estimated as :func:`estimate_cost_s`.

    ``output_tokens`` is 0 for duration tasks, whose outputs cost nothing
    to pass on; the transfer term of the edge weights is then zero.
    """
    specs = []
    for task in workload.tasks:
        specs.append(
            TaskSpec(
                id=task.id,
                description=task.description,
                role=task.role,
                depends_on=task.depends_on,
                cost_s=estimate_cost_s(task, latency),
                output_tokens=0 if task.duration_s is not None else task.output_tokens,
            )
        )
    return specs


# --- shape ----------------------------------------------------------------------


def levels(tasks: Sequence[BenchTask]) -> dict[str, int]:
    """Return each task's level: 0 without dependencies, else 1 + the deepest one."""
    level: dict[str, int] = {}
    for task in tasks:
        level[task.id] = 1 + max((level[d] for d in task.depends_on), default=-1)
    return level


def critical_path_s(tasks: Sequence[BenchTask], costs: Mapping[str, float]) -> float:
    """Return the longest path through the graph, summing ``costs`` of its tasks."""
    finish: dict[str, float] = {}
    for task in tasks:
        start = max((finish[d] for d in task.depends_on), default=0.0)
        finish[task.id] = start + costs[task.id]
    return max(finish.values(), default=0.0)


def describe(workload: Workload, latency: LatencyModel = DEFAULT_LATENCY) -> WorkloadShape:
    """Measure ``workload``'s size, width, depth and the spread of its task costs."""
    tasks = workload.tasks
    if not tasks:
        return WorkloadShape(0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    costs = {task.id: estimate_cost_s(task, latency) for task in tasks}
    per_level: dict[int, int] = {}
    for value in levels(tasks).values():
        per_level[value] = per_level.get(value, 0) + 1
    values = list(costs.values())
    return WorkloadShape(
        tasks=len(tasks),
        edges=sum(len(task.depends_on) for task in tasks),
        width=max(per_level.values()),
        depth=len(per_level),
        min_cost_s=min(values),
        median_cost_s=statistics.median(values),
        max_cost_s=max(values),
        total_work_s=sum(values),
        critical_path_s=critical_path_s(tasks, costs),
    )


# --- travel requests --------------------------------------------------------------

# Token counts from TravelPlanner's 45 training queries (the reference
# information of database/train_ref_info.jsonl and the gold plans of
# finetuning_data/std_travelplanner.jsonl), at 4 characters per token, as
# the simulator counts. Tool results become prompt tokens of the research
# tasks: attractions 1,178 / 1,217 / 1,247 (quartiles of 90 city lists),
# restaurants 960 / 1,037 / 1,147, accommodations 554 / 648 / 822; one
# transport leg (flight, self-driving and taxi results together) 60 / 64 / 165.
# Gold plans are 241-307 tokens for 3-day trips, 482-633 for 5-day and
# 668-879 for 7-day trips, about 100 per day.
_ATTRACTIONS_TOKENS = (1178, 1217, 1247)
_RESTAURANTS_TOKENS = (960, 1037, 1147)
_ACCOMMODATIONS_TOKENS = (554, 648, 822)
_TRANSPORT_TOKENS = (60, 64, 165)
_PLAN_TOKENS_PER_DAY = 100
# Instructions and the request itself, in every prompt.
_INSTRUCTION_TOKENS = 150
# Outputs of the intermediate tasks: a shortlist, a day plan, a choice.
_SHORTLIST_TOKENS = 150
_TRANSPORT_OUTPUT_TOKENS = 60
_DAY_PLAN_TOKENS = 120
_LODGING_TOKENS = 80
_BUDGET_TOKENS = 160

#: Days and cities of each complexity, as in TravelPlanner's queries.
TRIP_SIZES: Mapping[Complexity, tuple[int, int]] = {
    "simple": (3, 1),
    "medium": (5, 2),
    "complex": (7, 3),
}


class _GraphBuilder:
    """Collects tasks, adding predecessor outputs to each prompt."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tasks: list[BenchTask] = []
        self._output: dict[str, int] = {}

    def add(
        self,
        name: str,
        description: str,
        role: str,
        *,
        depends_on: Iterable[str] = (),
        own_prompt_tokens: int = _INSTRUCTION_TOKENS,
        output_tokens: int,
    ) -> str:
        task_id = f"{self.prefix}{name}"
        deps = tuple(depends_on)
        prompt = own_prompt_tokens + sum(self._output[d] for d in deps)
        self.tasks.append(
            BenchTask(
                id=task_id,
                description=description,
                role=role,
                depends_on=deps,
                prompt_tokens=prompt,
                output_tokens=output_tokens,
            )
        )
        self._output[task_id] = output_tokens
        return task_id


def travel_request(complexity: Complexity, *, seed: int = 0, prefix: str = "") -> Workload:
    """Return the task graph of one trip request of the given complexity.

    The graph, for D days over C cities with C + 1 transport legs::

        transport per leg ---------------------------\\
        lodging list per city ---> lodging choice ---+--> budget check --> plan
        sights, food per city ---> day plan per day -/                   /
                                          \\------------------------------/

    A day plan depends on its city's sights and food lists and, on a travel
    day, on that leg's transport. Tool results vary by city: their token
    counts are drawn (with ``seed``) from the quartiles above.
    """
    if complexity not in TRIP_SIZES:
        raise ValueError(f"complexity must be one of {list(COMPLEXITIES)}, got {complexity!r}")
    days, cities = TRIP_SIZES[complexity]
    rng = random.Random(f"{complexity}-{seed}")
    graph = _GraphBuilder(prefix)

    def tool(sizes: tuple[int, int, int]) -> int:
        return _INSTRUCTION_TOKENS + rng.choice(sizes)

    # Research: one lookup per transport leg and three per city. Legs come
    # first, as a person would book travel before sights.
    legs = [
        graph.add(
            f"leg{leg}.transport",
            f"Find flights, driving and taxi options for leg {leg}",
            "researcher",
            own_prompt_tokens=tool(_TRANSPORT_TOKENS),
            output_tokens=_TRANSPORT_OUTPUT_TOKENS,
        )
        for leg in range(1, cities + 2)
    ]
    stays, sights, food = [], [], []
    for city in range(1, cities + 1):
        stays.append(
            graph.add(
                f"city{city}.stays",
                f"List accommodations in city {city} that fit the group",
                "researcher",
                own_prompt_tokens=tool(_ACCOMMODATIONS_TOKENS),
                output_tokens=_SHORTLIST_TOKENS,
            )
        )
        sights.append(
            graph.add(
                f"city{city}.sights",
                f"Shortlist attractions in city {city}",
                "researcher",
                own_prompt_tokens=tool(_ATTRACTIONS_TOKENS),
                output_tokens=_SHORTLIST_TOKENS,
            )
        )
        food.append(
            graph.add(
                f"city{city}.food",
                f"Shortlist restaurants in city {city} for every meal",
                "researcher",
                own_prompt_tokens=tool(_RESTAURANTS_TOKENS),
                output_tokens=_SHORTLIST_TOKENS,
            )
        )

    # Analysis: lodging per city, a plan per day, then the budget.
    lodgings = [
        graph.add(
            f"city{city}.lodging",
            f"Choose where to stay in city {city}",
            "analyst",
            depends_on=[stays[city - 1]],
            output_tokens=_LODGING_TOKENS,
        )
        for city in range(1, cities + 1)
    ]
    day_plans = []
    for day, (city, day_legs) in enumerate(_day_schedule(days, cities), start=1):
        day_plans.append(
            graph.add(
                f"day{day}",
                f"Plan day {day}: transport, meals and sights",
                "analyst",
                depends_on=[sights[city], food[city], *(legs[leg] for leg in day_legs)],
                output_tokens=_DAY_PLAN_TOKENS,
            )
        )
    budget = graph.add(
        "budget",
        "Add up the costs and check them against the budget",
        "analyst",
        depends_on=[*day_plans, *lodgings, *legs],
        output_tokens=_BUDGET_TOKENS,
    )
    graph.add(
        "plan",
        "Write the final day-by-day plan",
        "writer",
        depends_on=[budget, *day_plans],
        output_tokens=_PLAN_TOKENS_PER_DAY * days,
    )
    return Workload(name=f"travel-{complexity}", tasks=tuple(graph.tasks), roles=TRAVEL_ROLES)


def _day_schedule(days: int, cities: int) -> list[tuple[int, tuple[int, ...]]]:
    """Return (city index, legs travelled) per day; earlier cities get the extra days.

    Day 1 takes leg 0 to the first city, the first day in each later city
    takes the leg into it, and the last day also takes the leg home.
    """
    base, extra = divmod(days, cities)
    schedule: list[tuple[int, tuple[int, ...]]] = []
    for city in range(cities):
        stay = base + (1 if city < extra else 0)
        for offset in range(stay):
            schedule.append((city, (city,) if offset == 0 else ()))
    last_city, last_legs = schedule[-1]
    schedule[-1] = (last_city, (*last_legs, cities))
    return schedule


def travel_batch(
    requests: int, *, complexities: Sequence[Complexity] = COMPLEXITIES, seed: int = 0
) -> Workload:
    """Return ``requests`` independent trip requests in one graph, cycling complexities."""
    tasks: list[BenchTask] = []
    for index in range(requests):
        complexity = complexities[index % len(complexities)]
        one = travel_request(complexity, seed=seed + index, prefix=f"r{index}.")
        tasks.extend(one.tasks)
    return Workload(name=f"travel-batch-{requests}", tasks=tuple(tasks), roles=TRAVEL_ROLES)


# --- random graphs ----------------------------------------------------------------


def layered_dag(
    *,
    layers: int,
    width: int,
    seed: int,
    max_parents: int = 3,
    prompt_tokens: Sequence[int] = DEFAULT_SIZES["conv"].prompt.values,
    output_tokens: Sequence[int] = DEFAULT_SIZES["conv"].output.values,
) -> Workload:
    """Return a seeded random DAG of ``layers`` levels of ``width`` tasks each.

    Every task after the first level depends on 1 to ``max_parents`` tasks
    of the level before. Token counts are drawn from ``prompt_tokens`` and
    ``output_tokens`` (by default the Azure trace's conversation service),
    and the parents' outputs are added to the prompt.
    """
    if layers < 1 or width < 1:
        raise ValueError(f"layers and width must be >= 1, got {layers} and {width}")
    rng = random.Random(seed)
    graph = _GraphBuilder("")
    previous: list[str] = []
    for layer in range(layers):
        current = []
        for index in range(width):
            parents = rng.sample(previous, k=min(len(previous), rng.randint(1, max_parents)))
            current.append(
                graph.add(
                    f"l{layer}.{index}",
                    f"Step {index} of level {layer}",
                    "worker",
                    depends_on=parents,
                    own_prompt_tokens=rng.choice(prompt_tokens),
                    output_tokens=max(1, rng.choice(output_tokens)),
                )
            )
        previous = current
    return Workload(name=f"layered-{layers}x{width}-s{seed}", tasks=tuple(graph.tasks))


def independent_tasks(count: int, *, seed: int) -> Workload:
    """Return ``count`` tasks without dependencies, sizes from the Azure trace summary."""
    return layered_dag(layers=1, width=count, seed=seed)


def noop_graph(count: int, *, seed: int = 0, width: int = 100) -> Workload:
    """Return ``count`` zero-cost tasks in levels of ``width``.

    Each task after the first level depends on 1 to 3 tasks of the level before.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rng = random.Random(seed)
    tasks: list[BenchTask] = []
    previous: list[str] = []
    current: list[str] = []
    for index in range(count):
        if len(current) == width:
            previous, current = current, []
        parents = tuple(rng.sample(previous, k=min(len(previous), rng.randint(1, 3))))
        task_id = f"n{index}"
        tasks.append(BenchTask(task_id, f"No-op {index}", "worker", parents, duration_s=0.0))
        current.append(task_id)
    return Workload(name=f"noop-{count}", tasks=tuple(tasks))


def scaled_durations(workload: Workload, mean_s: float) -> Workload:
    """Return ``workload`` with durations scaled so that their mean is ``mean_s``.

    Tasks without a duration are kept as they are; a workload whose
    durations are all zero is returned unchanged.
    """
    durations = [t.duration_s for t in workload.tasks if t.duration_s is not None]
    mean = sum(durations) / len(durations) if durations else 0.0
    if mean <= 0:
        return workload
    factor = mean_s / mean
    tasks = tuple(
        BenchTask(
            t.id,
            t.description,
            t.role,
            t.depends_on,
            t.prompt_tokens,
            t.output_tokens,
            t.duration_s * factor if t.duration_s is not None else None,
        )
        for t in workload.tasks
    )
    return Workload(name=workload.name, tasks=tasks, roles=workload.roles)
