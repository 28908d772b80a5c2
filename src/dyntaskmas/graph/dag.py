"""The task graph: tasks, dependencies, states and critical-path priorities.

:class:`TaskGraph` owns the rules of a run's graph and nothing else: no I/O,
no clock (callers pass times in), no randomness. The engine calls it.

State fields:

``tasks``
    every task ever added, by id, in insertion order.
``_preds`` / ``_succs``
    dependency edges in both directions; ``_succs[u]`` contains ``v`` exactly
    when ``_preds[v]`` contains ``u``.
``_down``
    D(v), the weighted longest path from v to the end of the graph over
    active tasks (not failed, not cancelled): D(v) = max over successors s of
    W(v, s) + D(s), and 0 at a sink. Priority P(v) = alpha * C(v) + D(v).
``_scale``
    the alpha and beta in force. With ``normalized`` weighting they follow the
    graph's mean costs, but are only re-derived (with a full recompute of D)
    when they drift by more than ``renormalize_tolerance``; otherwise deltas
    update D incrementally, for the changed tasks and their ancestors only.

A small example::

    a --> b --> d        C = 1 s each, no transfer cost, seconds weighting:
     \\--> c --/          D(d) = 0, D(b) = D(c) = 1, D(a) = 2, P(a) = 3

Readiness: a pending task becomes ready once every dependency is done. A
failed task cancels its pending descendants, naming itself as the reason.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace

from dyntaskmas.errors import (
    CycleError,
    DuplicateTaskError,
    EmptyDescriptionError,
    GraphError,
    ImmutableTaskError,
    UnknownDependencyError,
    UnknownTaskError,
)
from dyntaskmas.graph.delta import DeltaResult, Edge, GraphDelta
from dyntaskmas.graph.task import MUTABLE_STATES, Task, TaskSpec, TaskState
from dyntaskmas.graph.weights import (
    UNIT_SCALE,
    Scale,
    TransferModel,
    Weighting,
    compute_scale,
    drifted,
)

_INACTIVE: frozenset[TaskState] = frozenset({"failed", "cancelled"})


class TaskGraph:
    """A directed acyclic graph of tasks whose dependencies gate execution."""

    def __init__(
        self,
        *,
        weighting: Weighting = "normalized",
        transfer: TransferModel | None = None,
        renormalize_tolerance: float = 0.25,
    ) -> None:
        if not renormalize_tolerance >= 0:  # also rejects NaN
            raise ValueError(f"renormalize_tolerance must be >= 0, got {renormalize_tolerance}")
        self.weighting: Weighting = weighting
        self.transfer = transfer or TransferModel()
        self.renormalize_tolerance = renormalize_tolerance
        self.tasks: dict[str, Task] = {}
        self._preds: dict[str, set[str]] = {}
        self._succs: dict[str, set[str]] = {}
        self._down: dict[str, float] = {}
        self._scale = UNIT_SCALE
        self._index: dict[str, int] = {}

    @classmethod
    def from_specs(
        cls,
        specs: Iterable[TaskSpec],
        *,
        weighting: Weighting = "normalized",
        transfer: TransferModel | None = None,
        renormalize_tolerance: float = 0.25,
    ) -> TaskGraph:
        """Build a graph from specs, validating them as one delta."""
        graph = cls(
            weighting=weighting,
            transfer=transfer,
            renormalize_tolerance=renormalize_tolerance,
        )
        graph.apply(GraphDelta(add=tuple(specs)))
        return graph

    # --- queries --------------------------------------------------------------

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.tasks

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def task(self, task_id: str) -> Task:
        """Return the task with this id; raise UnknownTaskError if there is none."""
        try:
            return self.tasks[task_id]
        except KeyError:
            raise UnknownTaskError(task_id) from None

    def predecessors(self, task_id: str) -> frozenset[str]:
        self.task(task_id)
        return frozenset(self._preds[task_id])

    def successors(self, task_id: str) -> frozenset[str]:
        self.task(task_id)
        return frozenset(self._succs[task_id])

    @property
    def scale(self) -> Scale:
        return self._scale

    def transfer_s(self, dependency: str) -> float:
        """Return I(u, v): the estimated seconds to move ``dependency``'s output."""
        return self.transfer.transfer_s(self.task(dependency).spec.output_tokens)

    def edge_weight(self, dependency: str, dependent: str) -> float:
        """Return W(u, v) = alpha * C(v) + beta * I(u, v) under the current scale."""
        return self._scale.edge_weight(
            self.task(dependent).spec.cost_s, self.transfer_s(dependency)
        )

    def downstream(self, task_id: str) -> float:
        """Return D(v): the weighted longest path from the task to the graph's end.

        Failed and cancelled tasks keep a stale value, because no priority is
        read for them.
        """
        self.task(task_id)
        return self._down.get(task_id, 0.0)

    def priority(self, task_id: str) -> float:
        """Return P(v) = alpha * C(v) + D(v); higher runs first."""
        task = self.task(task_id)
        return self._scale.alpha * task.spec.cost_s + self._down.get(task_id, 0.0)

    def ids_in_state(self, *states: TaskState) -> list[str]:
        """Return the ids of the tasks in any of ``states``, in insertion order."""
        return [t.id for t in self.tasks.values() if t.state in states]

    def descendants(self, task_id: str) -> set[str]:
        """Return every task that depends on ``task_id``, directly or not."""
        self.task(task_id)
        seen: set[str] = set()
        stack = list(self._succs[task_id])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self._succs[current])
        return seen

    def topological_order(self) -> list[str]:
        """Return all task ids, dependencies before dependents, ties by insertion."""
        indegree = {tid: len(self._preds[tid]) for tid in self.tasks}
        queue = deque(tid for tid, n in indegree.items() if n == 0)
        order: list[str] = []
        while queue:
            current = queue.popleft()
            order.append(current)
            for succ in sorted(self._succs[current], key=self._position):
                indegree[succ] -= 1
                if indegree[succ] == 0:
                    queue.append(succ)
        assert len(order) == len(self.tasks), "graph invariant broken: it has a cycle"
        return order

    def sinks(self) -> list[str]:
        """Return the active tasks that no active task depends on."""
        return [
            tid
            for tid, task in self.tasks.items()
            if task.state not in _INACTIVE
            and not any(self.tasks[s].state not in _INACTIVE for s in self._succs[tid])
        ]

    @property
    def finished(self) -> bool:
        return all(task.finished for task in self.tasks.values())

    # --- state transitions ---------------------------------------------------

    def mark_running(self, task_id: str, *, agent: str | None, now: float) -> None:
        """Start a ready task; ``agent`` is None for tasks that need no agent."""
        task = self._expect(task_id, "ready")
        task.state = "running"
        task.agent = agent
        task.started_at = now

    def mark_done(self, task_id: str, output: str, *, now: float) -> list[str]:
        """Record the output of a running task; return the tasks that became ready."""
        task = self._expect(task_id, "running")
        task.state = "done"
        task.output = output
        task.finished_at = now
        newly_ready, _ = self._refresh_readiness(
            sorted(self._succs[task_id], key=self._position), now
        )
        return newly_ready

    def mark_failed(self, task_id: str, reason: str, *, now: float) -> list[str]:
        """Record a failure; cancel and return the pending descendants it strands."""
        task = self._expect(task_id, "running", "ready")
        task.state = "failed"
        task.error = reason
        task.finished_at = now
        cancelled = self._cancel_cascade(
            self._succs[task_id], f"not run: depends on {task_id!r}, which failed", now
        )
        dirty = set(self._preds[task_id])
        for tid in cancelled:
            dirty.update(self._preds[tid])
        self._update_priorities(dirty)
        return cancelled

    def _expect(self, task_id: str, *states: TaskState) -> Task:
        task = self.task(task_id)
        if task.state not in states:
            expected = " or ".join(states)
            raise GraphError(f"task {task_id!r} is {task.state}, expected {expected}")
        return task

    def _cancel_cascade(self, roots: Iterable[str], reason: str, now: float) -> list[str]:
        cancelled: list[str] = []
        stack = sorted(roots, key=self._position, reverse=True)
        while stack:
            current = stack.pop()
            task = self.tasks[current]
            if task.state not in MUTABLE_STATES:
                continue
            task.state = "cancelled"
            task.error = reason
            task.finished_at = now
            cancelled.append(current)
            stack.extend(sorted(self._succs[current], key=self._position, reverse=True))
        return cancelled

    # --- deltas --------------------------------------------------------------

    def apply(self, delta: GraphDelta, *, now: float = 0.0) -> DeltaResult:
        """Apply ``delta`` atomically.

        Raises :class:`~dyntaskmas.errors.GraphError` or a subclass, and leaves
        the graph unchanged, when the delta

        - adds a task with an empty or duplicate id or an empty description,
        - names an unknown task or removes an edge that does not exist,
        - touches a task that is running or finished,
        - depends on a failed or cancelled task, or
        - would create a cycle.
        """
        new_specs = self._check_new_tasks(delta.add)
        new_edges = self._check_edges(delta, new_specs)
        removed = self._check_removed_edges(delta.remove_edges)
        self._check_cancellable(delta.cancel)
        if not _edges_follow_order(new_edges, new_specs):
            self._check_acyclic(new_edges, removed)

        # Everything is valid: commit. Removals go first, as the cycle check
        # assumed, so an edge both removed and added stays.
        for dependency, dependent in removed:
            self._preds[dependent].discard(dependency)
            self._succs[dependency].discard(dependent)
        for spec in delta.add:
            self.tasks[spec.id] = Task(spec=spec)
            self._index[spec.id] = len(self._index)
            self._preds[spec.id] = set()
            self._succs[spec.id] = set()
        for dependency, dependent in new_edges:
            self._preds[dependent].add(dependency)
            self._succs[dependency].add(dependent)

        cancelled = self._cancel_cascade(
            delta.cancel, f"cancelled: {delta.reason or 'by a graph update'}", now
        )
        ready, unready = self._refresh_readiness(
            [*new_specs, *(v for _, v in new_edges), *(v for _, v in removed)], now
        )
        dirty = set(new_specs)
        dirty.update(u for u, _ in new_edges)
        dirty.update(u for u, _ in removed)
        for tid in cancelled:
            dirty.update(self._preds[tid])
        self._update_priorities(dirty)
        return DeltaResult(
            added=tuple(new_specs),
            ready=tuple(ready),
            unready=tuple(unready),
            cancelled=tuple(cancelled),
        )

    def _check_new_tasks(self, specs: tuple[TaskSpec, ...]) -> dict[str, TaskSpec]:
        new: dict[str, TaskSpec] = {}
        for spec in specs:
            if not spec.id:
                raise GraphError(
                    f"a task has an empty id (description {spec.description[:60]!r}); "
                    f"give every task a unique, non-empty id"
                )
            if spec.id in self.tasks or spec.id in new:
                raise DuplicateTaskError(spec.id)
            if not spec.description.strip():
                raise EmptyDescriptionError(spec.id)
            new[spec.id] = spec
        return new

    def _check_edges(self, delta: GraphDelta, new: Mapping[str, TaskSpec]) -> list[Edge]:
        edges: list[Edge] = []
        for spec in delta.add:
            edges.extend((dependency, spec.id) for dependency in dict.fromkeys(spec.depends_on))
        for dependency, dependent in delta.add_edges:
            if dependent not in new:
                if dependent not in self.tasks:
                    raise UnknownTaskError(dependent)
                state = self.tasks[dependent].state
                if state not in MUTABLE_STATES:
                    raise ImmutableTaskError(dependent, state)
            edges.append((dependency, dependent))
        for dependency, dependent in edges:
            if dependency not in new and dependency not in self.tasks:
                raise UnknownDependencyError(dependent, dependency)
            if dependency in self.tasks and self.tasks[dependency].state in _INACTIVE:
                state = self.tasks[dependency].state
                raise GraphError(
                    f"task {dependent!r} cannot depend on {dependency!r}, which is "
                    f"{state}; depend on a task that can still finish"
                )
        return edges

    def _check_removed_edges(self, edges: tuple[Edge, ...]) -> list[Edge]:
        for dependency, dependent in edges:
            if dependent not in self.tasks:
                raise UnknownTaskError(dependent)
            if dependency not in self._preds[dependent]:
                raise GraphError(
                    f"task {dependent!r} does not depend on {dependency!r}; "
                    f"there is no such edge to remove"
                )
            state = self.tasks[dependent].state
            if state not in MUTABLE_STATES:
                raise ImmutableTaskError(dependent, state)
        return list(edges)

    def _check_cancellable(self, task_ids: tuple[str, ...]) -> None:
        for task_id in task_ids:
            state = self.task(task_id).state
            if state not in MUTABLE_STATES:
                raise ImmutableTaskError(task_id, state)

    def _check_acyclic(self, edges: list[Edge], removed: list[Edge]) -> None:
        """Raise CycleError if the new edges would close a cycle.

        Any new cycle runs through a new edge, so a depth-first search from the
        dependents of the new edges, over the graph as it would be, finds it.
        """
        if not edges:
            return
        extra: dict[str, set[str]] = {}
        for dependency, dependent in edges:
            extra.setdefault(dependency, set()).add(dependent)
        removed_edges = set(removed)

        def successors(node: str) -> list[str]:
            existing = self._succs.get(node, set())
            out = [s for s in existing if (node, s) not in removed_edges]
            out.extend(extra.get(node, ()))
            return out

        white, grey, black = 0, 1, 2
        colour: dict[str, int] = {}
        for start in dict.fromkeys(v for _, v in edges):
            if colour.get(start, white) != white:
                continue
            # Iterative DFS; the path stack lets us name the cycle's tasks.
            path: list[str] = [start]
            iters = [iter(successors(start))]
            colour[start] = grey
            while iters:
                child = next(iters[-1], None)
                if child is None:
                    colour[path.pop()] = black
                    iters.pop()
                    continue
                state = colour.get(child, white)
                if state == grey:
                    raise CycleError(path[path.index(child) :])
                if state == white:
                    colour[child] = grey
                    path.append(child)
                    iters.append(iter(successors(child)))

    def _refresh_readiness(self, touched: Iterable[str], now: float) -> tuple[list[str], list[str]]:
        ready: list[str] = []
        unready: list[str] = []
        for task_id in dict.fromkeys(touched):
            task = self.tasks[task_id]
            all_done = all(self.tasks[p].state == "done" for p in self._preds[task_id])
            if task.state == "pending" and all_done:
                task.state = "ready"
                task.ready_at = now
                ready.append(task_id)
            elif task.state == "ready" and not all_done:
                task.state = "pending"
                task.ready_at = None
                unready.append(task_id)
        return ready, unready

    # --- priorities -----------------------------------------------------------

    def update_estimate(
        self, task_id: str, *, cost_s: float | None = None, output_tokens: int | None = None
    ) -> None:
        """Replace a task's cost or output-size estimate and refresh priorities."""
        task = self.task(task_id)
        spec = task.spec
        if cost_s is not None:
            spec = replace(spec, cost_s=cost_s)
        if output_tokens is not None:
            spec = replace(spec, output_tokens=output_tokens)
        task.spec = spec
        # A new C(v) changes W(u, v) for every dependency u; a new output size
        # changes W(v, s), which only D(v) reads.
        self._update_priorities(self._preds[task_id] | {task_id})

    def update_costs(self, costs_s: Mapping[str, float]) -> None:
        """Replace the cost estimates C(v) of many tasks and refresh priorities once."""
        dirty: set[str] = set()
        for task_id, cost_s in costs_s.items():
            task = self.task(task_id)
            task.spec = replace(task.spec, cost_s=cost_s)
            dirty.add(task_id)
            dirty.update(self._preds[task_id])
        if dirty:
            self._update_priorities(dirty)

    def set_transfer(self, transfer: TransferModel) -> None:
        """Replace the transfer model behind I(u, v) and recompute every priority."""
        self.transfer = transfer
        self._scale = self._current_scale()
        self._recompute_all()

    def _active(self, task_id: str) -> bool:
        return self.tasks[task_id].state not in _INACTIVE

    def _compute_down(self, task_id: str) -> float:
        transfer_s = self.transfer.transfer_s(self.tasks[task_id].spec.output_tokens)
        best = 0.0
        for succ in self._succs[task_id]:
            successor = self.tasks[succ]
            if successor.state not in _INACTIVE:
                weight = self._scale.edge_weight(successor.spec.cost_s, transfer_s)
                best = max(best, weight + self._down[succ])
        return best

    def _current_scale(self) -> Scale:
        """Return the scale that the current means of active tasks and edges give.

        NOTE: in normalized mode this scans every task and edge on each update,
        so the scale check is O(V + E) even when D is updated incrementally.
        Running sums would avoid the scan, but their rounding error would have
        to be kept from turning a zero mean into a tiny nonzero one.
        """
        if self.weighting == "seconds":
            return compute_scale(self.weighting, (), ())
        costs: list[float] = []
        transfers: list[float] = []
        for task_id, task in self.tasks.items():
            if task.state in _INACTIVE:
                continue
            costs.append(task.spec.cost_s)
            edges = sum(1 for succ in self._succs[task_id] if self._active(succ))
            transfers.extend([self.transfer.transfer_s(task.spec.output_tokens)] * edges)
        return compute_scale(self.weighting, costs, transfers)

    def _update_priorities(self, dirty: Iterable[str]) -> None:
        """Bring D up to date after the outgoing weights of ``dirty`` tasks changed.

        A new scale changes every weight and so needs a full recompute. That is
        why the scale is renormalized only once it drifts past the tolerance.
        """
        scale = self._current_scale()
        dirty = set(dirty)
        if drifted(self._scale, scale, self.renormalize_tolerance):
            self._scale = scale
            self._recompute_all()
        elif len(dirty) >= len(self.tasks):
            # Everything is dirty, as after the initial delta: a plain pass
            # gives the same D as propagating, without tracking what changed.
            self._recompute_all()
        else:
            self._propagate(dirty)

    def _recompute_all(self) -> None:
        # Dependents first. Every such order gives the same D, so this skips
        # the sorted tie-breaks of topological_order().
        remaining = {task_id: len(succs) for task_id, succs in self._succs.items()}
        stack = [task_id for task_id, count in remaining.items() if count == 0]
        computed = 0
        while stack:
            current = stack.pop()
            self._down[current] = self._compute_down(current)
            computed += 1
            for pred in self._preds[current]:
                remaining[pred] -= 1
                if remaining[pred] == 0:
                    stack.append(pred)
        assert computed == len(self.tasks), "graph invariant broken: it has a cycle"

    def _propagate(self, dirty: set[str]) -> None:
        """Recompute D for ``dirty`` tasks and, where D changed, their ancestors.

        Tasks are visited dependents-first over the ancestors of ``dirty``, so
        each D is recomputed at most once and only when its inputs changed.
        """
        dirty = {tid for tid in dirty if tid in self.tasks}
        if not dirty:
            return
        affected: set[str] = set()
        stack = list(dirty)
        while stack:
            current = stack.pop()
            if current not in affected:
                affected.add(current)
                stack.extend(self._preds[current])
        # Kahn's algorithm on the affected subgraph, dependents first.
        remaining = {tid: sum(1 for s in self._succs[tid] if s in affected) for tid in affected}
        queue = deque(tid for tid, n in remaining.items() if n == 0)
        changed: set[str] = set()
        while queue:
            current = queue.popleft()
            if current in dirty or any(s in changed for s in self._succs[current]):
                value = self._compute_down(current)
                if self._down.get(current) != value:
                    self._down[current] = value
                    changed.add(current)
            for pred in self._preds[current]:
                remaining[pred] -= 1
                if remaining[pred] == 0:
                    queue.append(pred)

    def _position(self, task_id: str) -> int:
        # Insertion order gives deterministic tie-breaks between tasks.
        return self._index[task_id]


def _edges_follow_order(edges: Iterable[Edge], new: Mapping[str, TaskSpec]) -> bool:
    """Tell whether every edge ends at a new task that comes after its dependency.

    Existing tasks count as coming before every new one. When this is true
    the edges cannot close a cycle, because the graph was acyclic, no new edge
    leads back to an existing task, and among new tasks every edge points
    forward in the delta's order. It is true for graphs that list dependencies
    first, so their cycle check costs one pass over the edges.
    """
    position = {task_id: index for index, task_id in enumerate(new)}
    for dependency, dependent in edges:
        after = position.get(dependent)
        if after is None or position.get(dependency, -1) >= after:
            return False
    return True
