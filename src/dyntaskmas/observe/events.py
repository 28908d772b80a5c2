"""Run events: the public way to watch a run while it goes on.

The engine emits one event per state change: the run started, the graph
changed, a task became ready, started, finished or failed, the run ended.
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

from dyntaskmas.graph.delta import Edge
from dyntaskmas.graph.task import TaskSpec


@dataclass(frozen=True)
class Event:
    run_id: str
    at_s: float


@dataclass(frozen=True)
class RunStarted(Event):
    request: str
    agents: int


@dataclass(frozen=True)
class GraphChanged(Event):
    """Tasks and edges added, edges removed, and tasks cancelled, by one atomic delta."""

    added: tuple[TaskSpec, ...]
    edges_added: tuple[Edge, ...]
    cancelled: tuple[str, ...]
    reason: str
    edges_removed: tuple[Edge, ...] = ()


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
class RunFinished(Event):
    status: str
    makespan_s: float
    llm_calls: int


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
