"""Observability: the run event stream."""

from dyntaskmas.observe.events import (
    Event,
    EventBus,
    GraphChanged,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)

__all__ = [
    "Event",
    "EventBus",
    "GraphChanged",
    "RunFinished",
    "RunStarted",
    "TaskFailed",
    "TaskFinished",
    "TaskReady",
    "TaskStarted",
]
