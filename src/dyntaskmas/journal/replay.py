"""Fold a run's journalled events into the state a resume starts from.

Pure: no I/O, no clock. :func:`fold_events` reads events in journal order
and returns a :class:`ResumeState`: the graph deltas to apply again, in
their order, and the tasks that finished with their outputs, in the order
they finished. :meth:`dyntaskmas.engine.executor.Engine.resume` rebuilds the
run from it.

The one subtle case is a plan task. The engine applies a plan's delta (its
subtasks) and then records the plan task as finished, two events in a row.
A crash between them leaves the subtasks in the journal but the plan task
unfinished. Running that plan again would add its subtasks a second time,
so a plan task whose delta is recorded counts as finished, with the output
the engine would have recorded, placed where its delta was.

Other deltas that a task's result makes (follow-ups it asked for, the next
round of a reflection loop, the replacement of a failed task) carry their
source task and its output or error on their first task (see
:mod:`dyntaskmas.engine.provenance`). The same rule applies: a source whose
delta is recorded counts as finished with that output, or as failed and
replaced, so the delta is never made twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dyntaskmas.engine.executor import decomposition_reason, plan_output
from dyntaskmas.engine.provenance import source_of
from dyntaskmas.graph.delta import Edge, GraphDelta
from dyntaskmas.observe.events import (
    Event,
    GraphChanged,
    RunStarted,
    TaskFailed,
    TaskFinished,
)


@dataclass(frozen=True)
class FinishedTask:
    """A task the journal records as done, with its output.

    ``recovered`` is true for a plan task whose finish was not recorded but
    whose delta was; the resume records its finish.
    """

    task_id: str
    output: str
    agent: str | None
    recovered: bool = False


@dataclass(frozen=True)
class ResumeState:
    """What a resume needs: the request, the graph's deltas and the finished tasks."""

    run_id: str
    request: str
    deltas: tuple[GraphDelta, ...]
    finished: tuple[FinishedTask, ...]
    # Tasks whose last recorded outcome is a failure; they run again.
    failed: tuple[str, ...]
    # Failed tasks that a recorded delta replaced, with their errors; they
    # never run again.
    replaced: tuple[tuple[str, str], ...] = ()

    @property
    def task_ids(self) -> list[str]:
        return [spec.id for delta in self.deltas for spec in delta.add]


def fold_events(run_id: str, events: Iterable[Event]) -> ResumeState:
    """Return the state to resume ``run_id`` from, given its events in journal order."""
    request = ""
    deltas: list[GraphDelta] = []
    # The reason of each plan task's decomposition delta -> the plan task's id.
    plan_by_reason: dict[str, str] = {}
    # Insertion order is finishing order; a recovered plan task's entry is
    # replaced in place when its recorded finish follows.
    finished: dict[str, FinishedTask] = {}
    failed: dict[str, None] = {}
    replaced: dict[str, str] = {}

    for event in events:
        if isinstance(event, RunStarted):
            # A resume writes RunStarted again; the first one has the request.
            if not deltas and not request:
                request = event.request
        elif isinstance(event, GraphChanged):
            deltas.append(_delta_of(event))
            for spec in event.added:
                if spec.kind == "plan":
                    plan_by_reason[decomposition_reason(spec.id)] = spec.id
            source = plan_by_reason.get(event.reason)
            if source is not None and source not in finished:
                subtasks = [spec.id for spec in event.added if spec.kind != "plan"]
                finished[source] = FinishedTask(
                    source, plan_output(subtasks), agent=None, recovered=True
                )
            for spec in event.added:
                marks = source_of(spec)
                if marks is None:
                    continue
                task_id, outcome, text = marks
                if outcome == "replaced":
                    replaced[task_id] = text
                    failed.pop(task_id, None)
                elif task_id not in finished:
                    finished[task_id] = FinishedTask(task_id, text, agent=None, recovered=True)
        elif isinstance(event, TaskFinished):
            finished[event.task_id] = FinishedTask(event.task_id, event.output, event.agent)
            failed.pop(event.task_id, None)
        elif isinstance(event, TaskFailed) and event.task_id not in replaced:
            failed[event.task_id] = None

    return ResumeState(
        run_id=run_id,
        request=request,
        deltas=tuple(deltas),
        finished=tuple(finished.values()),
        failed=tuple(failed),
        replaced=tuple(replaced.items()),
    )


def _delta_of(event: GraphChanged) -> GraphDelta:
    """Rebuild the delta behind ``event``.

    The event lists every edge it added, those implied by the new tasks'
    ``depends_on`` included; only the others go to ``add_edges``.
    """
    implied = {(dependency, spec.id) for spec in event.added for dependency in spec.depends_on}
    extra: tuple[Edge, ...] = tuple(edge for edge in event.edges_added if edge not in implied)
    return GraphDelta(
        add=event.added,
        add_edges=extra,
        remove_edges=event.edges_removed,
        cancel=event.cancel_requested,
        reason=event.reason,
    )
