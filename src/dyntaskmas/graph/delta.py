"""Graph deltas: the only way a task graph changes after it is built.

A :class:`GraphDelta` adds tasks and edges, removes edges and cancels pending
work. :meth:`dyntaskmas.graph.dag.TaskGraph.apply` checks the whole delta
first and changes nothing if any part is invalid, so a delta is atomic.
"""

from __future__ import annotations

from dataclasses import dataclass

from dyntaskmas.graph.task import TaskSpec

#: An edge ``(dependency, dependent)``: the dependent needs the dependency's output.
Edge = tuple[str, str]


@dataclass(frozen=True)
class GraphDelta:
    """A set of changes applied to a graph all at once or not at all.

    ``add`` brings new tasks, whose ``depends_on`` may name existing tasks or
    other tasks of the same delta. ``add_edges`` and ``remove_edges`` rewire
    existing tasks that have not started. Removals apply before additions, so
    an edge listed in both stays. ``cancel`` cancels pending or ready tasks
    together with everything that depends on them.
    """

    add: tuple[TaskSpec, ...] = ()
    add_edges: tuple[Edge, ...] = ()
    remove_edges: tuple[Edge, ...] = ()
    cancel: tuple[str, ...] = ()
    # Why the change was made, for events and the journal.
    reason: str = ""

    @property
    def empty(self) -> bool:
        return not (self.add or self.add_edges or self.remove_edges or self.cancel)


@dataclass(frozen=True)
class DeltaResult:
    """What applying a delta did.

    ``ready`` lists tasks that became ready; ``unready`` lists ready tasks that
    went back to pending because they gained an unfinished dependency;
    ``cancelled`` lists every task cancelled, the cascade included.
    """

    added: tuple[str, ...] = ()
    ready: tuple[str, ...] = ()
    unready: tuple[str, ...] = ()
    cancelled: tuple[str, ...] = ()
