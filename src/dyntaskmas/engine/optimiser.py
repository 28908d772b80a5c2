"""The workflow optimiser: decomposition granularity and merges of tiny siblings.

Pure functions over plain numbers and a read-only graph; the executor calls
them and applies what they return. Nothing here awaits, logs or reads a
clock.

Granularity. Splitting work of estimated cost C seconds into n subtasks
costs a plan call of P seconds, then ceil(n / A) waves of C / n + h on A
idle agents. h is the measured overhead of one task: the time a call takes
whatever its length. The n outputs then move into the dependents' prompts,
t seconds each::

    T(n) = P + ceil(n / A) * (C / n + h) + n * t        T(1) = C + h

:func:`choose_granularity` picks the n in 2..max_subtasks with the least
T(n), and splits only when T(n) < T(1). With C = 30 s, h = 1 s, P = 2 s,
t = 0.1 s and 4 idle agents it picks n = 4 (T = 10.9 s against 31 s);
with C = 2 s it runs the work as one task.

Merges. Pending sibling work tasks with the same role, the same
dependencies and the same dependents are "tiny" when their estimated work
C(v) is at most ``tiny_ratio`` times what running them apart costs,
h + I(v). Merging k tiny siblings of work w into g tasks on A idle agents
is predicted to take ceil(g / A) * (h + ceil(k / g) * w), against
ceil(k / A) * (h + w) apart. :func:`merge_count` picks the g with the least
predicted time, so siblings merge only when they outnumber the idle
agents: with as many agents as siblings, merging only makes each task
longer. Each merged task replaces its originals in one delta: it takes
their dependencies and dependents, and the originals lose their outgoing
edges and are cancelled. The graph stays acyclic because the merged task
has exactly the neighbours its originals had.

Overhead. :class:`OverheadEstimate` measures h from finished tasks as the
intercept of a least-squares line of duration against completion tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.graph.delta import Edge, GraphDelta
from dyntaskmas.graph.task import TaskSpec

#: meta key of a merged task: the ids of the tasks it replaced.
MERGED_FROM = "merged_from"

MERGE_REASON = "optimiser: merged tiny sibling tasks"


@dataclass(frozen=True)
class OptimiserConfig:
    """Settings of the workflow optimiser.

    ``task_overhead_s`` is h until enough tasks are measured; ``max_merge``
    bounds how many tasks one merge joins, so a merged prompt stays short.
    ``tiny_ratio``: a task whose estimated cost is at most this many times
    h + I(v) may be merged. The default 4 makes the planner's "small" (2 s)
    tiny under the default h of 0.5 s, and keeps "medium" (8 s) and
    "large" (30 s) apart until a run measures an h of 2 s or more.
    """

    task_overhead_s: float = 0.5
    max_merge: int = 4
    tiny_ratio: float = 4.0
    # Fewest measured tasks before the measured overhead replaces the default.
    min_samples: int = 3

    def __post_init__(self) -> None:
        if not (math.isfinite(self.task_overhead_s) and self.task_overhead_s >= 0):
            raise ValueError(f"task_overhead_s must be >= 0, got {self.task_overhead_s}")
        if self.max_merge < 2:
            raise ValueError(f"max_merge must be >= 2, got {self.max_merge}")
        if self.min_samples < 2:
            raise ValueError(f"min_samples must be >= 2, got {self.min_samples}")
        if not (math.isfinite(self.tiny_ratio) and self.tiny_ratio >= 0):
            raise ValueError(f"tiny_ratio must be >= 0, got {self.tiny_ratio}")


@dataclass(frozen=True)
class Granularity:
    """How to plan a piece of work: split or not, into how many subtasks, and why."""

    decompose: bool
    max_subtasks: int
    predicted_s: float
    unsplit_s: float


def predicted_makespan(
    n: int, *, cost_s: float, overhead_s: float, plan_s: float, transfer_s: float, agents: int
) -> float:
    """Return T(n), the predicted time of ``cost_s`` of work split into ``n`` subtasks."""
    if n <= 1:
        return cost_s + overhead_s
    waves = math.ceil(n / max(1, agents))
    return plan_s + waves * (cost_s / n + overhead_s) + n * transfer_s


def choose_granularity(
    *,
    cost_s: float,
    overhead_s: float,
    plan_s: float,
    transfer_s: float,
    idle_agents: int,
    max_subtasks: int,
) -> Granularity:
    """Return the split with the least predicted time; ties go to fewer subtasks."""
    if max_subtasks < 2:
        raise ValueError(f"max_subtasks must be >= 2, got {max_subtasks}")
    unsplit = predicted_makespan(
        1,
        cost_s=cost_s,
        overhead_s=overhead_s,
        plan_s=plan_s,
        transfer_s=transfer_s,
        agents=idle_agents,
    )
    best_n, best = 2, math.inf
    for n in range(2, max_subtasks + 1):
        value = predicted_makespan(
            n,
            cost_s=cost_s,
            overhead_s=overhead_s,
            plan_s=plan_s,
            transfer_s=transfer_s,
            agents=idle_agents,
        )
        if value < best:
            best_n, best = n, value
    return Granularity(splits_gain(best, unsplit), best_n, best, unsplit)


def splits_gain(split_s: float, unsplit_s: float) -> bool:
    """Tell whether a split's predicted time beats running the work as one task.

    The margin keeps rounding (n * (C / n) can come out below C) from
    counting as a gain.
    """
    return split_s < unsplit_s - 1e-9 * max(1.0, unsplit_s)


@dataclass
class OverheadEstimate:
    """Measures the per-task overhead h from finished tasks.

    Each sample is a task's duration and its completion tokens. h is the
    intercept of the least-squares line through them, clamped to the
    shortest duration seen, or ``default_s`` while fewer than
    ``min_samples`` samples (or a single token count) are known.
    """

    default_s: float
    min_samples: int = 3
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, duration_s: float, completion_tokens: int) -> None:
        if math.isfinite(duration_s) and duration_s >= 0:
            self.samples.append((duration_s, completion_tokens))

    @property
    def overhead_s(self) -> float:
        if len(self.samples) < self.min_samples:
            return self.default_s
        n = len(self.samples)
        mean_x = sum(x for _, x in self.samples) / n
        mean_y = sum(y for y, _ in self.samples) / n
        spread = sum((x - mean_x) ** 2 for _, x in self.samples)
        shortest = min(y for y, _ in self.samples)
        if spread == 0:
            return shortest
        slope = sum((x - mean_x) * (y - mean_y) for y, x in self.samples) / spread
        return min(max(0.0, mean_y - slope * mean_x), shortest)


def merged_makespan(
    count: int, tasks: int, *, work_s: float, overhead_s: float, agents: int
) -> float:
    """Return the predicted time of ``count`` siblings of ``work_s`` each run as ``tasks`` tasks.

    The siblings are spread as evenly as possible, so the longest task
    does ceil(count / tasks) of them, and the tasks run in waves of
    ``agents``.
    """
    waves = math.ceil(tasks / max(1, agents))
    return waves * (overhead_s + math.ceil(count / tasks) * work_s)


def merge_count(
    count: int, *, work_s: float, overhead_s: float, agents: int, max_merge: int
) -> int:
    """Return how many tasks ``count`` tiny siblings should run as; ``count`` keeps them apart.

    Picks the number of tasks, from ceil(count / max_merge) to ``count``,
    with the least :func:`merged_makespan`. A merge must beat running the
    siblings apart; among merges, ties go to fewer tasks, which make fewer
    calls.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if max_merge < 2:
        raise ValueError(f"max_merge must be >= 2, got {max_merge}")
    apart = merged_makespan(count, count, work_s=work_s, overhead_s=overhead_s, agents=agents)
    best, best_s = count, apart
    for tasks in range(math.ceil(count / max_merge), count):
        predicted = merged_makespan(
            count, tasks, work_s=work_s, overhead_s=overhead_s, agents=agents
        )
        if predicted < best_s and splits_gain(predicted, apart):
            best, best_s = tasks, predicted
    return best


def merge_tiny_siblings(
    graph: TaskGraph,
    *,
    overhead_s: float,
    max_merge: int,
    agents: int = 1,
    tiny_ratio: float = 1.0,
) -> GraphDelta:
    """Return one delta that merges groups of tiny sibling tasks; empty when none.

    Only pending or ready ``work`` tasks that came from a decomposition and
    carry no loop, follow-up or merge marks are merged. ``agents`` is the
    number of idle agents that would run the siblings; :func:`merge_count`
    decides how many tasks each group of siblings becomes.
    """
    groups: dict[tuple[object, ...], list[str]] = {}
    for task in graph:
        spec = task.spec
        if task.state not in ("pending", "ready") or not _mergeable(spec):
            continue
        if spec.cost_s > tiny_ratio * (overhead_s + graph.transfer_s(spec.id)):
            continue
        neighbours = graph.predecessors(spec.id) | graph.successors(spec.id)
        if any(graph.task(n).state in ("failed", "cancelled") for n in neighbours):
            continue
        key = (
            spec.parent,
            spec.role,
            spec.depth,
            frozenset(graph.predecessors(spec.id)),
            frozenset(graph.successors(spec.id)),
        )
        groups.setdefault(key, []).append(spec.id)

    added: list[TaskSpec] = []
    add_edges: list[Edge] = []
    remove_edges: list[Edge] = []
    cancel: list[str] = []
    merged_members: set[str] = set()
    merged_neighbours: set[str] = set()
    for members in groups.values():
        work_s = max(graph.task(m).spec.cost_s for m in members)
        tasks = merge_count(
            len(members), work_s=work_s, overhead_s=overhead_s, agents=agents, max_merge=max_merge
        )
        for chunk in _even_chunks(members, tasks):
            if len(chunk) < 2:
                continue
            # A group that neighbours another merged group would keep an
            # edge to a cancelled task, so only the first of the two merges.
            neighbours = graph.predecessors(chunk[0]) | graph.successors(chunk[0])
            if neighbours & merged_members or merged_neighbours & set(chunk):
                continue
            merged_members.update(chunk)
            merged_neighbours.update(neighbours)
            merged = _merged_spec(graph, chunk)
            successors = sorted(graph.successors(chunk[0]))
            added.append(merged)
            add_edges.extend((merged.id, s) for s in successors)
            remove_edges.extend((m, s) for m in chunk for s in successors)
            cancel.extend(chunk)
    if not added:
        return GraphDelta()
    return GraphDelta(
        add=tuple(added),
        add_edges=tuple(add_edges),
        remove_edges=tuple(remove_edges),
        cancel=tuple(cancel),
        reason=MERGE_REASON,
    )


def merged_away(graph_specs: Iterable[TaskSpec]) -> set[str]:
    """Return the ids of tasks that merged tasks replaced."""
    ids: set[str] = set()
    for spec in graph_specs:
        ids.update(spec.meta.get(MERGED_FROM, ()))
    return ids


def _even_chunks(members: list[str], count: int) -> list[list[str]]:
    """Split ``members`` into ``count`` runs whose sizes differ by at most one."""
    size, extra = divmod(len(members), count)
    chunks, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        chunks.append(members[start:end])
        start = end
    return chunks


def _mergeable(spec: TaskSpec) -> bool:
    if spec.kind != "work" or spec.parent is None:
        return False
    marks = ("loop", "follow_up_depth", MERGED_FROM, "source_task")
    return not any(mark in spec.meta for mark in marks)


def _merged_spec(graph: TaskGraph, ids: list[str]) -> TaskSpec:
    specs = [graph.task(task_id).spec for task_id in ids]
    first = specs[0]
    parts = " ".join(f"({k}) {spec.description}" for k, spec in enumerate(specs, start=1))
    return TaskSpec(
        id=f"{first.id}.m",
        description=f"Do these small tasks together and label each result: {parts}",
        role=first.role,
        depends_on=tuple(sorted(graph.predecessors(first.id))),
        cost_s=sum(spec.cost_s for spec in specs),
        output_tokens=sum(spec.output_tokens for spec in specs),
        tags=frozenset().union(*(spec.tags for spec in specs)),
        depth=first.depth,
        parent=first.parent,
        meta={MERGED_FROM: tuple(ids)},
    )
