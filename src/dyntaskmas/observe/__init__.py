"""Observability: the run event stream."""

from dyntaskmas.observe.events import (
    AllocatorDecision,
    Event,
    EventBus,
    GraphChanged,
    MonitorSample,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)

__all__ = [
    "AllocatorDecision",
    "Event",
    "EventBus",
    "GraphChanged",
    "MonitorSample",
    "RunFinished",
    "RunStarted",
    "TaskFailed",
    "TaskFinished",
    "TaskReady",
    "TaskStarted",
]
