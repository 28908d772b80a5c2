"""The result of a run: the answer, every task's record, and the run's figures.

Times are seconds from the run's start. ``sequential_s`` is the sum of the
durations of the tasks that ran: what the same work would have taken one
task at a time with the same latencies, the baseline the makespan is compared
with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from dyntaskmas.engine.budget import StopReason
from dyntaskmas.graph.task import TaskKind, TaskState
from dyntaskmas.llm.types import Usage

#: ``stopped``: a budget limit was reached before every task ran.
RunStatus = Literal["succeeded", "failed", "stopped"]


@dataclass(frozen=True)
class TaskRecord:
    """The record of one task of a run: its spec, state, agent, times and output."""

    id: str
    description: str
    role: str
    kind: TaskKind
    depends_on: tuple[str, ...]
    state: TaskState
    agent: str | None
    started_at: float | None
    finished_at: float | None
    output: str | None
    error: str | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced.

    ``status`` is ``succeeded`` when the final task is done, even if some
    branch failed on the way, and ``stopped`` when a budget limit kept some
    tasks from running (``stop`` says which). ``notes`` explains fallbacks,
    planner fixes and failures in plain sentences.
    """

    request: str
    status: RunStatus
    answer: str | None
    tasks: tuple[TaskRecord, ...]
    makespan_s: float
    sequential_s: float
    llm_calls: int
    usage: Usage
    notes: tuple[str, ...] = ()
    # Counters of the run's context manager (updates delivered, tokens moved,
    # entries left out...), or None for a run without one.
    context: Mapping[str, int] | None = None
    # Set when a budget limit stopped the run early: the limit, and the
    # tasks that did not run.
    stop: StopReason | None = None
    #: The run's id in the journal, for ``resume`` and ``report``; None for
    #: results built by hand.
    run_id: str | None = None

    @property
    def max_concurrency(self) -> int:
        """Return the most model-calling tasks that were running at one instant."""
        events: list[tuple[float, int]] = []
        for task in self.tasks:
            if task.agent is not None and task.started_at is not None:
                end = task.finished_at if task.finished_at is not None else self.makespan_s
                events.append((task.started_at, 1))
                events.append((end, -1))
        # Ends sort before starts at the same instant: touching is not overlapping.
        events.sort(key=lambda event: (event[0], event[1]))
        running = best = 0
        for _, change in events:
            running += change
            best = max(best, running)
        return best

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready dict; every time is rounded to the millisecond."""
        tasks = []
        for task in self.tasks:
            item = asdict(task)
            item["depends_on"] = list(task.depends_on)
            for key in ("started_at", "finished_at"):
                if item[key] is not None:
                    item[key] = round(item[key], 3)
            tasks.append(item)
        return {
            "run_id": self.run_id,
            "request": self.request,
            "status": self.status,
            "answer": self.answer,
            "tasks": tasks,
            "makespan_s": round(self.makespan_s, 3),
            "sequential_s": round(self.sequential_s, 3),
            "max_concurrency": self.max_concurrency,
            "llm_calls": self.llm_calls,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
            },
            "notes": list(self.notes),
            "context": dict(self.context) if self.context is not None else None,
            "stop": _stop_json(self.stop),
        }


def _stop_json(stop: StopReason | None) -> dict[str, Any] | None:
    if stop is None:
        return None
    return {
        "limit": stop.limit,
        "allowed": stop.allowed,
        "used": stop.used,
        "not_run": list(stop.not_run),
        "message": stop.message,
    }
