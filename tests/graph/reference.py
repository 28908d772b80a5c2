"""Reference computations that graph tests compare :class:`TaskGraph` against.

They are written for clarity, not speed: priorities come from enumerating
every path, and the scale from plain means over the graph's tasks and edges.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Any

from dyntaskmas.graph import Scale, Task, TaskGraph

INACTIVE = frozenset({"failed", "cancelled"})
MUTABLE = frozenset({"pending", "ready"})


def is_active(graph: TaskGraph, task_id: str) -> bool:
    return graph.task(task_id).state not in INACTIVE


def active_successors(graph: TaskGraph, task_id: str) -> list[str]:
    return sorted(s for s in graph.successors(task_id) if is_active(graph, s))


def transfer_s(graph: TaskGraph, dependency: str) -> float:
    """Compute I(u, v) from the transfer model's fields, not its method."""
    tokens = graph.task(dependency).spec.output_tokens
    return tokens * graph.transfer.prefill_s_per_token + graph.transfer.network_s


def edge_weight(graph: TaskGraph, scale: Scale, dependency: str, dependent: str) -> float:
    cost_s = graph.task(dependent).spec.cost_s
    return scale.alpha * cost_s + scale.beta * transfer_s(graph, dependency)


def paths_from(graph: TaskGraph, task_id: str) -> Iterator[list[str]]:
    """Yield every maximal path of active tasks that starts at ``task_id``."""
    successors = active_successors(graph, task_id)
    if not successors:
        yield [task_id]
        return
    for successor in successors:
        for rest in paths_from(graph, successor):
            yield [task_id, *rest]


def path_weight(graph: TaskGraph, scale: Scale, path: list[str]) -> float:
    return sum(edge_weight(graph, scale, u, v) for u, v in itertools.pairwise(path))


def brute_force_downstream(graph: TaskGraph, task_id: str) -> float:
    """Compute D(v) as the heaviest path from ``task_id``, under the graph's scale."""
    return max(path_weight(graph, graph.scale, path) for path in paths_from(graph, task_id))


def brute_force_priority(graph: TaskGraph, task_id: str) -> float:
    cost_s = graph.task(task_id).spec.cost_s
    return graph.scale.alpha * cost_s + brute_force_downstream(graph, task_id)


def exact_scale(graph: TaskGraph) -> Scale:
    """Compute alpha and beta from the current means, as a full recompute would."""
    if graph.weighting == "seconds":
        return Scale(alpha=1.0, beta=1.0)
    active = [t.id for t in graph if t.state not in INACTIVE]
    costs = [graph.task(t).spec.cost_s for t in active]
    transfers = [transfer_s(graph, u) for u in active for _ in active_successors(graph, u)]
    mean_cost = sum(costs) / len(costs) if costs else 0.0
    mean_transfer = sum(transfers) / len(transfers) if transfers else 0.0
    return Scale(
        alpha=1.0 / mean_cost if mean_cost > 0 else 1.0,
        beta=1.0 / mean_transfer if mean_transfer > 0 else 1.0,
    )


def reaches(successors: Mapping[str, Set[str]], start: str, target: str) -> bool:
    """Tell whether a path leads from ``start`` to ``target`` (a task reaches itself)."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        current = stack.pop()
        if current == target:
            return True
        if current not in seen:
            seen.add(current)
            stack.extend(successors.get(current, ()))
    return False


def successor_map(graph: TaskGraph) -> dict[str, set[str]]:
    return {task.id: set(graph.successors(task.id)) for task in graph}


def is_acyclic(successors: Mapping[str, Set[str]]) -> bool:
    """Check with Kahn's algorithm that every task can be put in an order."""
    indegree = dict.fromkeys(successors, 0)
    for targets in successors.values():
        for target in targets:
            indegree[target] += 1
    queue = [task_id for task_id, count in indegree.items() if count == 0]
    visited = 0
    while queue:
        current = queue.pop()
        visited += 1
        for target in successors[current]:
            indegree[target] -= 1
            if indegree[target] == 0:
                queue.append(target)
    return visited == len(successors)


def ancestors(graph: TaskGraph, task_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph.predecessors(task_id))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(graph.predecessors(current))
    return seen


@dataclass(frozen=True)
class Snapshot:
    """Everything a delta could change, copied so later changes cannot alter it."""

    order: tuple[str, ...]
    tasks: Mapping[str, Task]
    predecessors: Mapping[str, frozenset[str]]
    successors: Mapping[str, frozenset[str]]
    downstream: Mapping[str, float]
    scale: Scale

    @classmethod
    def of(cls, graph: TaskGraph) -> Snapshot:
        ids = tuple(task.id for task in graph)
        return cls(
            order=ids,
            tasks={t: dataclasses.replace(graph.task(t)) for t in ids},
            predecessors={t: graph.predecessors(t) for t in ids},
            successors={t: graph.successors(t) for t in ids},
            downstream={t: graph.downstream(t) for t in ids},
            scale=graph.scale,
        )

    def differences(self, other: Snapshot) -> dict[str, Any]:
        """Return the fields that differ, to make a failed comparison readable."""
        return {
            field.name: (getattr(self, field.name), getattr(other, field.name))
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(other, field.name)
        }
