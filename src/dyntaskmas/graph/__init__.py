"""Task graph model: tasks, validation, weights, priorities and deltas (pure code)."""

from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.graph.delta import DeltaResult, Edge, GraphDelta
from dyntaskmas.graph.task import (
    DEFAULT_ROLE,
    FINISHED_STATES,
    Task,
    TaskKind,
    TaskSpec,
    TaskState,
)
from dyntaskmas.graph.weights import Scale, TransferModel, Weighting

__all__ = [
    "DEFAULT_ROLE",
    "FINISHED_STATES",
    "DeltaResult",
    "Edge",
    "GraphDelta",
    "Scale",
    "Task",
    "TaskGraph",
    "TaskKind",
    "TaskSpec",
    "TaskState",
    "TransferModel",
    "Weighting",
]
