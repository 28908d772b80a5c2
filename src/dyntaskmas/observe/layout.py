"""A layered drawing layout for a task graph: which column and row each task takes.

Pure. A task's layer (column) is the length of the longest dependency
chain that leads to it, so every edge points to a later column. Within a
layer, tasks are ordered by the mean row of their dependencies (the
barycentre heuristic of Sugiyama-style layouts), which keeps most edges
short, with ties kept in input order. Edges that would close a cycle
cannot occur in a valid task graph; if given, their targets go to one
extra column after the others.

    >>> layered_layout(["a", "b", "c"], [("a", "c"), ("b", "c")])
    {'a': Placement(layer=0, row=0), 'b': Placement(layer=0, row=1), 'c': Placement(layer=1, row=0)}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    layer: int
    row: int


def layered_layout(nodes: Sequence[str], edges: Iterable[tuple[str, str]]) -> dict[str, Placement]:
    """Return a placement for every node; edges between unknown nodes are ignored."""
    known = dict.fromkeys(nodes)
    preds: dict[str, list[str]] = {node: [] for node in known}
    succs: dict[str, list[str]] = {node: [] for node in known}
    for source, target in edges:
        known_edge = source in known and target in known and source != target
        if known_edge and source not in preds[target]:
            preds[target].append(source)
            succs[source].append(target)

    # Longest path from a source, in topological (Kahn) order.
    layer: dict[str, int] = {}
    waiting = {node: len(preds[node]) for node in known}
    frontier = [node for node in known if waiting[node] == 0]
    while frontier:
        node = frontier.pop(0)
        layer[node] = max((layer[p] + 1 for p in preds[node]), default=0)
        for succ in succs[node]:
            waiting[succ] -= 1
            if waiting[succ] == 0:
                frontier.append(succ)
    extra = max(layer.values(), default=-1) + 1
    for node in known:
        layer.setdefault(node, extra)

    # Rows: layer by layer, ordered by the barycentre of the rows of the
    # dependencies placed in earlier layers.
    by_layer: dict[int, list[str]] = {}
    for node in known:
        by_layer.setdefault(layer[node], []).append(node)
    row: dict[str, int] = {}
    for index in sorted(by_layer):
        members = by_layer[index]
        position = {node: i for i, node in enumerate(members)}

        def barycentre(node: str, position: dict[str, int] = position) -> tuple[float, int]:
            placed = [row[p] for p in preds[node] if p in row]
            mean = sum(placed) / len(placed) if placed else float(position[node])
            return (mean, position[node])

        for i, node in enumerate(sorted(members, key=barycentre)):
            row[node] = i
    return {node: Placement(layer[node], row[node]) for node in known}
