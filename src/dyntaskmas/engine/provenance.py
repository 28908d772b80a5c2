"""Marks on tasks that a graph change added, saying which task's result caused it.

A task's output can change the graph: follow-up subtasks it asks for, the
next round of a reflection loop its critique asks for, the replacement of a
task that failed. The engine applies such a delta *before* it records the
task's own finish, so its dependents never start early. A crash between
the two leaves the delta in the journal but not the finish, and running the
task again would add the same tasks a second time. So the first task of
such a delta carries the source task's id and its result in its ``meta``,
and the journal's fold (:mod:`dyntaskmas.journal.replay`) counts the source
as finished, or as failed and replaced, from the delta alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

from dyntaskmas.graph.task import TaskSpec

#: meta key: id of the task whose result made the delta.
SOURCE_TASK = "source_task"
#: meta key: what the delta means for its source task.
SOURCE_OUTCOME = "source_outcome"
#: meta key: the source task's output (finished) or error (replaced).
SOURCE_TEXT = "source_text"

#: ``finished``: the source task finished with ``SOURCE_TEXT`` as output.
#: ``replaced``: the source task failed with ``SOURCE_TEXT`` as its error and
#: the delta's tasks replace it.
SourceOutcome = Literal["finished", "replaced"]


def stamp_source(
    specs: Sequence[TaskSpec], source: str, outcome: SourceOutcome, text: str
) -> tuple[TaskSpec, ...]:
    """Return ``specs`` with the source marks on the first one."""
    if not specs:
        return ()
    first = specs[0]
    meta = {**first.meta, SOURCE_TASK: source, SOURCE_OUTCOME: outcome, SOURCE_TEXT: text}
    return (replace(first, meta=meta), *specs[1:])


def source_of(spec: TaskSpec) -> tuple[str, SourceOutcome, str] | None:
    """Return the ``(source task, outcome, text)`` marks of ``spec``, or None."""
    meta: Mapping[str, Any] = spec.meta
    source = meta.get(SOURCE_TASK)
    outcome = meta.get(SOURCE_OUTCOME)
    text = meta.get(SOURCE_TEXT)
    if not isinstance(source, str) or not isinstance(text, str):
        return None
    if outcome == "finished":
        return source, "finished", text
    if outcome == "replaced":
        return source, "replaced", text
    return None
