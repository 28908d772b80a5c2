"""Priority policies other than the critical path, for comparison.

The graph itself maintains the critical-path priority P(v) = alpha*C(v) + D(v)
incrementally (see :mod:`dyntaskmas.graph.dag`). This module computes the
alternatives the benchmarks compare it with, from scratch, as plain functions:

``paper_summary``
    P(v) = C(v) / max over successors s of (W(v, s) + P(s)), the formula as
    printed in the DynTaskMAS paper's summary, with P(v) = C(v) at a sink
    (an empty max is taken as 1). It favours cheap tasks with short futures,
    the opposite of its stated aim, which is why it is only an ablation.
``fifo``
    no priority at all: every task gets 0, so the ready queue's tie-break,
    the order in which tasks became ready, decides.

Levels, for level-synchronous execution: a task with no dependencies is at
level 0, any other at one more than its deepest dependency.
"""

from __future__ import annotations

from typing import Literal

from dyntaskmas.graph.dag import TaskGraph

PriorityPolicy = Literal["critical_path", "fifo", "paper_summary"]
PRIORITY_POLICIES: tuple[PriorityPolicy, ...] = ("critical_path", "fifo", "paper_summary")


def paper_summary_priorities(graph: TaskGraph) -> dict[str, float]:
    """Return P(v) = C(v) / max(W(v, s) + P(s)) for every task of ``graph``.

    Failed and cancelled successors are ignored, as in the critical path.
    """
    priorities: dict[str, float] = {}
    for task_id in reversed(graph.topological_order()):
        cost = graph.task(task_id).spec.cost_s
        live = [
            s
            for s in graph.successors(task_id)
            if graph.task(s).state not in ("failed", "cancelled")
        ]
        if not live:
            priorities[task_id] = cost
            continue
        denominator = max(graph.edge_weight(task_id, s) + priorities[s] for s in live)
        # A zero denominator needs zero costs everywhere below; the task then
        # ranks by its own cost alone.
        priorities[task_id] = cost / denominator if denominator > 0 else cost
    return priorities


def levels(graph: TaskGraph) -> dict[str, int]:
    """Return each task's level: 0 without dependencies, else 1 + the deepest one."""
    result: dict[str, int] = {}
    for task_id in graph.topological_order():
        predecessors = graph.predecessors(task_id)
        result[task_id] = 1 + max(result[p] for p in predecessors) if predecessors else 0
    return result
