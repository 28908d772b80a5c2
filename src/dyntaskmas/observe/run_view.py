"""A run's state folded from its events: tasks, agents, model calls and times.

Pure: no I/O, no clock. :class:`RunViewBuilder` takes events one at a time,
as an :class:`~dyntaskmas.observe.events.EventBus` subscriber during a run
or from the journal afterwards, and :meth:`RunViewBuilder.view` returns
the :class:`RunView` that the progress display, the accounting, the Chrome
trace and the HTML report read.

Times are seconds from the run's first start. A resumed run starts its
clock at 0 again, so each later ``RunStarted`` of the same run shifts the
times of what follows by the last time seen before it. A task that ran
again after a resume keeps its latest attempt.

    builder = RunViewBuilder()
    bus.subscribe(builder.add)
    ...
    view = builder.view()
    print(view.done_count, "of", len(view.tasks))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from dyntaskmas.engine.executor import decomposition_reason
from dyntaskmas.observe.events import (
    AllocatorDecision,
    ContextDelivered,
    Event,
    GraphChanged,
    LLMCallFinished,
    LLMCallRetried,
    MonitorSample,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)

TaskViewState = Literal["pending", "ready", "running", "done", "failed", "cancelled"]


@dataclass(frozen=True)
class CallView:
    """One model call; times in seconds from the run's start."""

    task_id: str
    agent: str | None
    endpoint: str | None
    model: str
    started_at: float
    finished_at: float
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    messages: tuple[tuple[str, str], ...]


@dataclass
class TaskView:
    """One task as the events describe it so far."""

    id: str
    description: str
    role: str
    kind: str
    depends_on: list[str]
    state: TaskViewState = "pending"
    agent: str | None = None
    endpoint: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    output: str | None = None
    error: str | None = None
    calls: list[CallView] = field(default_factory=list)
    context_sources: tuple[str, ...] = ()
    context_left_out: tuple[str, ...] = ()
    context_tokens: int | None = None
    # The plan task whose decomposition added this task, if any: the task
    # could not start before that plan finished.
    added_by: str | None = None

    @property
    def prompt_tokens(self) -> int:
        return sum(call.prompt_tokens for call in self.calls)

    @property
    def completion_tokens(self) -> int:
        return sum(call.completion_tokens for call in self.calls)

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass
class RunView:
    """A run's request, tasks in the order they were added, and its figures."""

    run_id: str = ""
    request: str = ""
    agents: int = 0
    status: str | None = None
    # Seconds from the first start to the last event seen.
    last_at: float = 0.0
    tasks: dict[str, TaskView] = field(default_factory=dict)
    retries: int = 0
    #: Each endpoint's concurrency limit over time, from the allocator's
    #: samples and decisions: (seconds, limit from then on), one step per change.
    limits: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    @property
    def calls(self) -> list[CallView]:
        return [call for task in self.tasks.values() for call in task.calls]

    @property
    def done_count(self) -> int:
        return sum(1 for task in self.tasks.values() if task.state == "done")

    @property
    def running(self) -> list[TaskView]:
        return [task for task in self.tasks.values() if task.state == "running"]

    @property
    def prompt_tokens(self) -> int:
        return sum(task.prompt_tokens for task in self.tasks.values())

    @property
    def completion_tokens(self) -> int:
        return sum(task.completion_tokens for task in self.tasks.values())

    def current_limits(self) -> dict[str, int]:
        """Return the latest concurrency limit of every endpoint the allocator reported."""
        return {endpoint: steps[-1][1] for endpoint, steps in self.limits.items() if steps}

    @property
    def agent_names(self) -> list[str]:
        """Names of the agents that ran a task, in the order they first started one."""
        names: dict[str, None] = {}
        for task in sorted(self.tasks.values(), key=lambda t: t.started_at or 0.0):
            if task.agent is not None and task.started_at is not None:
                names.setdefault(task.agent)
        return list(names)


class RunViewBuilder:
    """Folds the events of one run into a :class:`RunView`.

    Events of another run id start a new view, unless they come from a
    resume of the same run (a ``RunStarted`` with the same id).
    """

    def __init__(self) -> None:
        self._view = RunView()
        # Added to every at_s of the current session, so that a resumed
        # run's times follow those of its earlier sessions.
        self._offset = 0.0
        self._started = False
        # Reason of each plan task's decomposition delta -> the plan task's id.
        self._plan_reasons: dict[str, str] = {}

    def view(self) -> RunView:
        return self._view

    def add(self, event: Event) -> None:
        """Fold ``event`` into the view."""
        view = self._view
        if isinstance(event, RunStarted):
            if self._started and event.run_id == view.run_id:
                self._offset = view.last_at
            else:
                self._view = view = RunView(run_id=event.run_id)
                self._offset = 0.0
            self._started = True
            view.request = view.request or event.request
            view.agents = max(view.agents, event.agents)
            view.status = None
            return
        if self._started and event.run_id != view.run_id:
            # An event of another run without its RunStarted: start afresh.
            self._view = view = RunView(run_id=event.run_id)
            self._offset = 0.0
        at = event.at_s + self._offset
        view.last_at = max(view.last_at, at)
        self._apply(view, event, at)

    def _apply(self, view: RunView, event: Event, at: float) -> None:
        tasks = view.tasks
        if isinstance(event, GraphChanged):
            added_by = self._plan_reasons.get(event.reason)
            for spec in event.added:
                if spec.id not in tasks:
                    tasks[spec.id] = TaskView(
                        spec.id, spec.description, spec.role, spec.kind, list(spec.depends_on)
                    )
                    tasks[spec.id].added_by = added_by
                if spec.kind == "plan":
                    self._plan_reasons[decomposition_reason(spec.id)] = spec.id
            for source, target in event.edges_added:
                task = tasks.get(target)
                if task is not None and source not in task.depends_on:
                    task.depends_on.append(source)
            for cancelled in event.cancelled:
                self._cancel(view, cancelled, event.reason)
            return
        if isinstance(event, RunFinished):
            view.status = event.status
            return
        if isinstance(event, MonitorSample):
            self._record_limit(view, event.endpoint, at, event.limit)
            return
        if isinstance(event, AllocatorDecision):
            self._record_limit(view, event.endpoint, at, event.new_limit, previous=event.old_limit)
            return

        found = getattr(event, "task_id", None)
        if not isinstance(found, str):
            return
        task_id = found
        task = tasks.get(task_id)
        if task is None:
            # Tolerate a journal that lacks the task's delta.
            task = tasks[task_id] = TaskView(task_id, "", "", "work", [])

        if isinstance(event, TaskReady):
            task.state = "ready"
        elif isinstance(event, TaskStarted):
            task.state = "running"
            task.agent = event.agent
            task.endpoint = event.endpoint
            task.started_at = at
            task.finished_at = None
            task.output = task.error = None
            # Calls of earlier attempts stay: their tokens were spent too.
        elif isinstance(event, TaskFinished):
            task.state = "done"
            task.output = event.output
            task.finished_at = at
            if task.started_at is None:
                # A task finished without a recorded start (a resume's
                # recovered plan task): it took no time.
                task.started_at = at
            if task.agent is None:
                task.agent = event.agent
        elif isinstance(event, TaskFailed):
            task.state = "failed"
            task.error = event.error
            task.finished_at = at
        elif isinstance(event, TaskCancelled):
            self._cancel(view, task_id, event.reason)
        elif isinstance(event, ContextDelivered):
            task.context_sources = event.sources
            task.context_left_out = event.left_out
            task.context_tokens = event.tokens
        elif isinstance(event, LLMCallFinished):
            started = event.started_at_s + self._offset
            task.calls.append(
                CallView(
                    task_id=task_id,
                    agent=event.agent,
                    endpoint=event.endpoint,
                    model=event.model,
                    started_at=started,
                    finished_at=started + event.duration_s,
                    prompt_tokens=event.prompt_tokens,
                    completion_tokens=event.completion_tokens,
                    attempts=event.attempts,
                    messages=event.messages,
                )
            )
        elif isinstance(event, LLMCallRetried):
            view.retries += event.retries

    def _record_limit(
        self, view: RunView, endpoint: str, at: float, limit: int, *, previous: int | None = None
    ) -> None:
        steps = view.limits.setdefault(endpoint, [])
        # The first decision of a session also carries the limit that the
        # session started with, as its old limit.
        if previous is not None and (not steps or steps[0][0] >= at):
            if steps and steps[0][1] == previous:
                steps[0] = (self._offset, previous)
            else:
                steps.insert(0, (self._offset, previous))
        if not steps or steps[-1][1] != limit:
            steps.append((at, limit))

    @staticmethod
    def _cancel(view: RunView, task_id: str, reason: str) -> None:
        task = view.tasks.get(task_id)
        if task is not None and task.state not in ("done", "failed"):
            task.state = "cancelled"
            task.error = reason


def build_run_view(events: Iterable[Event]) -> RunView:
    """Return the view of the run that ``events`` (in emission order) describe."""
    builder = RunViewBuilder()
    for event in events:
        builder.add(event)
    return builder.view()


def critical_path(view: RunView) -> list[str]:
    """Return the chain of tasks that set the run's end, first task first.

    Starts at the task that finished last and steps back, each time to the
    dependency that finished last: the dependencies that held each task
    back. The plan task that added a task counts as one of its dependencies.
    Tasks that never finished are ignored.
    """
    finished = {task.id: task for task in view.tasks.values() if task.finished_at is not None}
    if not finished:
        return []
    current = max(finished.values(), key=lambda task: task.finished_at or 0.0)
    path = [current.id]
    seen = {current.id}
    while True:
        candidates = [*current.depends_on, *([current.added_by] if current.added_by else [])]
        preds = [finished[d] for d in candidates if d in finished and d not in seen]
        if not preds:
            break
        current = max(preds, key=lambda task: task.finished_at or 0.0)
        path.append(current.id)
        seen.add(current.id)
    path.reverse()
    return path
