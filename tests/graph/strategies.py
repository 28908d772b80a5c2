"""Hypothesis strategies for task graphs, valid and invalid deltas, and run steps.

Random graphs only have edges from a lower to a higher task index, so they
are acyclic by construction. Valid deltas are drawn from the graph's current
state and kept acyclic with :func:`reference.reaches`, which does not use the
graph's own cycle check.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

from hypothesis import strategies as st

from dyntaskmas.errors import (
    CycleError,
    DuplicateTaskError,
    EmptyDescriptionError,
    GraphError,
    ImmutableTaskError,
    UnknownDependencyError,
    UnknownTaskError,
)
from dyntaskmas.graph import GraphDelta, TaskGraph, TaskSpec, TransferModel, Weighting

from .reference import INACTIVE, MUTABLE, reaches, successor_map

# Zero is allowed: a join task costs nothing. The smallest nonzero cost is a
# millisecond because the normalized weighting divides by the mean cost.
COSTS_S = st.one_of(st.just(0.0), st.floats(min_value=0.001, max_value=100.0))
OUTPUT_TOKENS = st.integers(min_value=0, max_value=4000)
WEIGHTINGS: tuple[Weighting, ...] = ("normalized", "seconds")
# 0 renormalizes on every change and 10 almost never, which leaves D to
# the incremental update under a stale scale.
TOLERANCES = st.sampled_from([0.0, 0.1, 0.25, 10.0])
TRANSFERS = st.builds(
    TransferModel,
    prefill_s_per_token=st.sampled_from([0.0, 0.0005, 0.002]),
    network_s=st.sampled_from([0.0, 0.05]),
)


@dataclass(frozen=True)
class GraphSetup:
    """The arguments of a random graph, drawn before it is built."""

    specs: tuple[TaskSpec, ...]
    weighting: Weighting
    tolerance: float
    transfer: TransferModel

    def build(self) -> TaskGraph:
        graph = TaskGraph(
            weighting=self.weighting,
            transfer=self.transfer,
            renormalize_tolerance=self.tolerance,
        )
        graph.apply(GraphDelta(add=self.specs))
        return graph


@dataclass
class FreshIds:
    """Task ids that no drawn graph uses yet."""

    counter: Iterator[int] = field(default_factory=itertools.count)

    def next(self) -> str:
        return f"new{next(self.counter)}"


def make_spec(task_id: str, depends_on: tuple[str, ...], cost_s: float, tokens: int) -> TaskSpec:
    return TaskSpec(
        id=task_id,
        description=f"do {task_id}",
        depends_on=depends_on,
        cost_s=cost_s,
        output_tokens=tokens,
    )


@st.composite
def graph_setups(draw: st.DrawFn, max_tasks: int = 7) -> GraphSetup:
    """Draw a DAG of 1 to ``max_tasks`` tasks t0, t1, ..., listed in a shuffled order."""
    count = draw(st.integers(min_value=1, max_value=max_tasks))
    specs: list[TaskSpec] = []
    for index in range(count):
        earlier = [f"t{i}" for i in range(index)]
        depends_on = (
            draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        )
        specs.append(make_spec(f"t{index}", tuple(depends_on), draw(COSTS_S), draw(OUTPUT_TOKENS)))
    return GraphSetup(
        specs=tuple(draw(st.permutations(specs))),
        weighting=draw(st.sampled_from(WEIGHTINGS)),
        tolerance=draw(TOLERANCES),
        transfer=draw(TRANSFERS),
    )


def ids_where(graph: TaskGraph, states: frozenset[str]) -> list[str]:
    return [task.id for task in graph if task.state in states]


def active_ids(graph: TaskGraph) -> list[str]:
    return [task.id for task in graph if task.state not in INACTIVE]


def draw_valid_delta(data: st.DataObject, graph: TaskGraph, fresh: FreshIds) -> GraphDelta:
    """Draw a delta that ``graph`` must accept: any mix of the four kinds of change."""
    active = active_ids(graph)
    mutable = ids_where(graph, MUTABLE)
    # The edges as they will be after the delta, to keep the added ones acyclic.
    successors = successor_map(graph)

    removable = sorted((u, v) for v in mutable for u in graph.predecessors(v))
    removed: list[tuple[str, str]] = []
    if removable:
        removed = data.draw(st.lists(st.sampled_from(removable), unique=True, max_size=2))
    for dependency, dependent in removed:
        successors[dependency].discard(dependent)

    added: list[TaskSpec] = []
    for _ in range(data.draw(st.integers(min_value=0, max_value=2))):
        candidates = active + [spec.id for spec in added]
        depends_on: list[str] = []
        if candidates:
            depends_on = data.draw(st.lists(st.sampled_from(candidates), unique=True, max_size=3))
        spec = make_spec(
            fresh.next(), tuple(depends_on), data.draw(COSTS_S), data.draw(OUTPUT_TOKENS)
        )
        added.append(spec)
        successors[spec.id] = set()
        for dependency in depends_on:
            successors[dependency].add(spec.id)

    new_ids = [spec.id for spec in added]
    dependencies = active + new_ids
    dependents = mutable + new_ids
    added_edges: list[tuple[str, str]] = []
    for _ in range(data.draw(st.integers(min_value=0, max_value=2))):
        if not dependencies or not dependents:
            break
        dependency = data.draw(st.sampled_from(dependencies))
        dependent = data.draw(st.sampled_from(dependents))
        if reaches(successors, dependent, dependency):
            continue  # the edge would close a cycle
        successors[dependency].add(dependent)
        added_edges.append((dependency, dependent))

    cancel: list[str] = []
    if mutable:
        cancel = data.draw(st.lists(st.sampled_from(mutable), unique=True, max_size=2))

    return GraphDelta(
        add=tuple(added),
        add_edges=tuple(added_edges),
        remove_edges=tuple(removed),
        cancel=tuple(cancel),
        reason="random update",
    )


def apply_random_step(data: st.DataObject, graph: TaskGraph, fresh: FreshIds, now: float) -> str:
    """Apply one valid delta, state transition or estimate change; return what it was."""
    ready = ids_where(graph, frozenset({"ready"}))
    running = ids_where(graph, frozenset({"running"}))
    kinds = ["delta", "estimate"]
    if ready:
        kinds.append("start")
    if running:
        kinds.append("finish")
    if ready or running:
        kinds.append("fail")
    kind = data.draw(st.sampled_from(kinds))

    if kind == "delta":
        delta = draw_valid_delta(data, graph, fresh)
        graph.apply(delta, now=now)
        return f"apply {delta}"
    if kind == "estimate":
        task_id = data.draw(st.sampled_from([task.id for task in graph]))
        cost_s = data.draw(st.none() | COSTS_S)
        tokens = data.draw(st.none() | OUTPUT_TOKENS)
        graph.update_estimate(task_id, cost_s=cost_s, output_tokens=tokens)
        return f"update_estimate({task_id!r}, cost_s={cost_s}, output_tokens={tokens})"
    if kind == "start":
        task_id = data.draw(st.sampled_from(ready))
        graph.mark_running(task_id, agent="agent", now=now)
        return f"mark_running({task_id!r})"
    if kind == "finish":
        task_id = data.draw(st.sampled_from(running))
        graph.mark_done(task_id, f"output of {task_id}", now=now)
        return f"mark_done({task_id!r})"
    task_id = data.draw(st.sampled_from(ready + running))
    graph.mark_failed(task_id, "simulated failure", now=now)
    return f"mark_failed({task_id!r})"


@dataclass(frozen=True)
class InvalidDelta:
    """A delta the graph must reject, and the error class it must raise."""

    kind: str
    delta: GraphDelta
    error: type[GraphError]
    # Ids the error message must name.
    named: tuple[str, ...]


def draw_invalid_delta(data: st.DataObject, graph: TaskGraph, fresh: FreshIds) -> InvalidDelta:
    """Draw one invalid change and bundle it with valid changes of every kind.

    The valid part shows that a rejection undoes nothing because nothing was
    done yet: a delta is checked as a whole before any of it is applied.
    """
    existing = [task.id for task in graph]
    mutable = ids_where(graph, MUTABLE)
    started = ids_where(graph, frozenset({"running", "done"}))
    inactive = ids_where(graph, INACTIVE)
    kinds = [
        "self_dependency",
        "cycle_between_new_tasks",
        "unknown_dependency",
        "duplicate_in_delta",
        "empty_description",
        "empty_id",
        "unknown_cancel",
    ]
    if existing:
        kinds += ["duplicate_of_existing", "missing_edge"]
    if mutable:
        kinds.append("cycle_through_graph")
    if started:
        kinds.append("touches_started_task")
    if inactive:
        kinds.append("depends_on_inactive_task")
    kind = data.draw(st.sampled_from(kinds))
    valid = draw_valid_delta(data, graph, fresh)

    first, second = fresh.next(), fresh.next()
    add: tuple[TaskSpec, ...] = ()
    add_edges: tuple[tuple[str, str], ...] = ()
    remove_edges: tuple[tuple[str, str], ...] = ()
    cancel: tuple[str, ...] = ()
    error: type[GraphError]
    named: tuple[str, ...]

    if kind == "self_dependency":
        add = (make_spec(first, (first,), 1.0, 10),)
        error, named = CycleError, (first,)
    elif kind == "cycle_between_new_tasks":
        add = (make_spec(first, (second,), 1.0, 10), make_spec(second, (first,), 1.0, 10))
        error, named = CycleError, (first, second)
    elif kind == "unknown_dependency":
        add = (make_spec(first, ("missing",), 1.0, 10),)
        error, named = UnknownDependencyError, (first, "missing")
    elif kind == "duplicate_in_delta":
        add = (make_spec(first, (), 1.0, 10), make_spec(first, (), 2.0, 20))
        error, named = DuplicateTaskError, (first,)
    elif kind == "empty_description":
        add = (TaskSpec(id=first, description=" \n"),)
        error, named = EmptyDescriptionError, (first,)
    elif kind == "empty_id":
        add = (TaskSpec(id="", description="work without an id"),)
        error, named = GraphError, ()
    elif kind == "unknown_cancel":
        cancel = ("missing",)
        error, named = UnknownTaskError, ("missing",)
    elif kind == "duplicate_of_existing":
        existing_id = data.draw(st.sampled_from(existing))
        add = (make_spec(existing_id, (), 1.0, 10),)
        error, named = DuplicateTaskError, (existing_id,)
    elif kind == "missing_edge":
        # A task never depends on itself, so this edge cannot exist.
        task_id = data.draw(st.sampled_from(existing))
        remove_edges = ((task_id, task_id),)
        error, named = GraphError, (task_id,)
    elif kind == "cycle_through_graph":
        dependent = data.draw(st.sampled_from(mutable))
        # Active descendants of an unstarted task are pending, so the edge is
        # allowed in every respect but the cycle it closes.
        downstream = [dependent, *sorted(graph.descendants(dependent))]
        dependency = data.draw(st.sampled_from([t for t in downstream if t in mutable]))
        add_edges = ((dependency, dependent),)
        # Valid removals could break the path that closes the cycle.
        valid = GraphDelta(add=valid.add, add_edges=valid.add_edges, cancel=valid.cancel)
        error, named = CycleError, (dependency, dependent)
    elif kind == "touches_started_task":
        target = data.draw(st.sampled_from(started))
        change = data.draw(st.sampled_from(["cancel", "add_edge", "remove_edge"]))
        if change == "remove_edge" and graph.predecessors(target):
            dependency = data.draw(st.sampled_from(sorted(graph.predecessors(target))))
            remove_edges = ((dependency, target),)
        elif change == "add_edge":
            add = (make_spec(first, (), 1.0, 10),)
            add_edges = ((first, target),)
        else:
            cancel = (target,)
        error, named = ImmutableTaskError, (target,)
    else:
        dependency = data.draw(st.sampled_from(inactive))
        add = (make_spec(first, (dependency,), 1.0, 10),)
        error, named = GraphError, (first, dependency)

    delta = GraphDelta(
        add=valid.add + add,
        add_edges=valid.add_edges + add_edges,
        remove_edges=valid.remove_edges + remove_edges,
        cancel=valid.cancel + cancel,
        reason="random invalid update",
    )
    return InvalidDelta(kind=kind, delta=delta, error=error, named=named)
