"""Observability: the run event stream."""

from dyntaskmas.observe.events import (
    ContextDelivered,
    Event,
    EventBus,
    GraphChanged,
    LLMCallFinished,
    LLMCallRetried,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)

__all__ = [
    "ContextDelivered",
    "Event",
    "EventBus",
    "GraphChanged",
    "LLMCallFinished",
    "LLMCallRetried",
    "RunFinished",
    "RunStarted",
    "TaskCancelled",
    "TaskFailed",
    "TaskFinished",
    "TaskReady",
    "TaskStarted",
]
