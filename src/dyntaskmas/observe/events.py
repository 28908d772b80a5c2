"""Run events: the public way to watch a run while it goes on.

The engine emits one event per state change: the run started, the graph
changed, a task became ready, started, finished, failed or was cancelled,
a task's context was chosen, a model call finished (and whether it was
retried), the run ended. While a run goes on, the adaptive allocator adds
a :class:`MonitorSample` and an :class:`AllocatorDecision` per endpoint
every control interval, and an :class:`AgentsMoved` when it moves agents
between roles.
Every event carries the run's id and ``at_s``, seconds since the run
started on the engine's clock.

An :class:`EventBus` delivers each event to its subscribers synchronously,
in the order they subscribed, before the engine goes on; a subscriber that
raises stops the run, which is what a journal that must record a change
before it counts needs. :meth:`EventBus.stream` offers the same events as
an async iterator for code that prefers to ``async for`` over them.

    bus = EventBus()
    bus.subscribe(lambda event: print(type(event).__name__, event.at_s))
    engine = Engine(pool, events=bus)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from dyntaskmas.graph.delta import DeltaResult, Edge, GraphDelta
from dyntaskmas.graph.task import TaskSpec


@dataclass(frozen=True)
class Event:
    run_id: str
    at_s: float

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        EVENT_TYPES[cls.__name__] = cls


#: Every event class by name, filled as each class is defined; the journal
#: stores an event's class name and reads it back through this mapping.
EVENT_TYPES: dict[str, type[Event]] = {}


@dataclass(frozen=True)
class RunStarted(Event):
    request: str
    agents: int


@dataclass(frozen=True)
class GraphChanged(Event):
    """Tasks and edges added, edges removed and tasks cancelled by one atomic delta.

    ``cancelled`` lists every task cancelled, the cascade included;
    ``cancel_requested`` lists only those the delta named, which is what a
    replay applies again.
    """

    added: tuple[TaskSpec, ...]
    edges_added: tuple[Edge, ...]
    cancelled: tuple[str, ...]
    reason: str
    edges_removed: tuple[Edge, ...] = ()
    cancel_requested: tuple[str, ...] = ()


def graph_changed(run_id: str, at_s: float, delta: GraphDelta, result: DeltaResult) -> GraphChanged:
    """Return the event of ``delta``, applied with ``result``: every part a replay needs."""
    implied = tuple((dependency, spec.id) for spec in delta.add for dependency in spec.depends_on)
    return GraphChanged(
        run_id,
        at_s,
        delta.add,
        (*implied, *delta.add_edges),
        result.cancelled,
        delta.reason,
        edges_removed=delta.remove_edges,
        cancel_requested=delta.cancel,
    )


@dataclass(frozen=True)
class TaskReady(Event):
    task_id: str
    priority: float


@dataclass(frozen=True)
class TaskStarted(Event):
    task_id: str
    agent: str | None
    endpoint: str | None


@dataclass(frozen=True)
class TaskFinished(Event):
    task_id: str
    agent: str | None
    output: str
    duration_s: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class TaskFailed(Event):
    """A task failed; ``cancelled`` lists the descendants that will not run."""

    task_id: str
    error: str
    cancelled: tuple[str, ...]


@dataclass(frozen=True)
class TaskCancelled(Event):
    """A task will not run; ``reason`` names the failure or delta that cancelled it."""

    task_id: str
    reason: str


@dataclass(frozen=True)
class ContextDelivered(Event):
    """The context manager chose the inputs of a task's prompt.

    ``sources`` are the ids of the tasks whose outputs went in, ``left_out``
    those that did not fit; token counts are the context manager's estimate.
    """

    task_id: str
    sources: tuple[str, ...]
    left_out: tuple[str, ...]
    tokens: int
    budget_tokens: int


@dataclass(frozen=True)
class LLMCallFinished(Event):
    """One model call of a task returned; ``at_s`` is when it returned.

    ``messages`` are the prompt as (role, content) pairs. Token counts are the
    server's usage fields. ``attempts`` counts HTTP attempts, retries included.
    """

    task_id: str
    agent: str | None
    endpoint: str | None
    model: str
    started_at_s: float
    duration_s: float
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    messages: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LLMCallRetried(Event):
    """A model call of a task needed ``retries`` retries of transient errors before it returned."""

    task_id: str
    agent: str | None
    endpoint: str | None
    retries: int


@dataclass(frozen=True)
class RunFinished(Event):
    status: str
    makespan_s: float
    llm_calls: int


@dataclass(frozen=True)
class MonitorSample(Event):
    """One endpoint's statistics over the monitor's window, once per control interval.

    Latencies are of successful calls, in seconds; None when none finished.
    ``ready_tasks`` counts ready tasks of every role that wait for an agent.
    The time-to-first-token percentiles cover streamed calls only, so they
    are None on an endpoint that does not stream.
    """

    endpoint: str
    limit: int
    in_flight: int
    waiting: int
    requests: int
    throughput_per_s: float
    tokens_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    rate_429: float
    error_rate: float
    ready_tasks: int
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None


@dataclass(frozen=True)
class AllocatorDecision(Event):
    """The allocator's decision on one endpoint's concurrency limit for the next interval.

    ``reason`` names the rule that applied (see
    :mod:`dyntaskmas.adapt.controller`); ``latency_s`` and ``baseline_s``
    are the measured and baseline seconds per completion token.
    """

    endpoint: str
    old_limit: int
    new_limit: int
    reason: str
    latency_s: float | None
    baseline_s: float | None


@dataclass(frozen=True)
class AgentsMoved(Event):
    """The role allocator moved idle agents from one group of roles to another.

    A group is the agents that serve the same roles through the same
    endpoint. ``source_agents`` and ``target_agents`` are the groups' agent
    counts after the move. ``ready_tasks`` counts the target's ready tasks that waited for an
    agent, and ``source_utilisation`` is the source's busy fraction over the
    monitor's window. See :mod:`dyntaskmas.adapt.roles` for the rule.
    """

    agents: tuple[str, ...]
    source_roles: tuple[str, ...]
    source_endpoint: str
    target_roles: tuple[str, ...]
    target_endpoint: str
    source_agents: int
    target_agents: int
    ready_tasks: int
    source_utilisation: float


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers run events to subscribers, in subscription order."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with every later event; return a function that unsubscribes."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber; an exception from one propagates."""
        for subscriber in list(self._subscribers):
            subscriber(event)

    async def stream(self) -> AsyncIterator[Event]:
        """Yield every event from now on, up to and including the next RunFinished.

        Subscribe by starting to iterate before the run starts, e.g. from a
        task created first in the same task group as the run.
        """
        queue: asyncio.Queue[Event] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                event = await queue.get()
                yield event
                if isinstance(event, RunFinished):
                    return
        finally:
            unsubscribe()
