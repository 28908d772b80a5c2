"""Tasks: what a graph node is, and the states it moves through.

A :class:`TaskSpec` is the immutable description of a unit of work, as a
planner or a delta proposes it. A :class:`Task` is the graph's live record of
that spec: its state, the agent that ran it, its timing and its output.

States move forward only, with one exception: a delta that gives a ready
task a new unfinished dependency sends it back to pending::

    pending -> ready -> running -> done
                  \\          \\-> failed
                   \\-> cancelled        (pending or ready only)

This module contains plain data; :mod:`dyntaskmas.graph.dag` owns the rules
for moving between states.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

TaskState = Literal["pending", "ready", "running", "done", "failed", "cancelled"]

#: ``work`` calls an agent's model; ``plan`` asks the planner to decompose
#: its description into new tasks; ``join`` collects the outputs of the
#: subtasks a plan produced, without a model call; ``synthesize`` writes the
#: final answer from the outputs it depends on.
TaskKind = Literal["work", "plan", "join", "synthesize"]

FINISHED_STATES: frozenset[TaskState] = frozenset({"done", "failed", "cancelled"})
# A delta may change only these: work that has started cannot be rewired.
MUTABLE_STATES: frozenset[TaskState] = frozenset({"pending", "ready"})

DEFAULT_ROLE = "worker"


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """An immutable description of one unit of work.

    ``cost_s`` is the estimated execution time C(v) in seconds and
    ``output_tokens`` the estimated size of the output, from which the cost of
    moving it into a successor's prompt is derived. Both are estimates: the
    planner's hints first, measured latencies later.
    """

    id: str
    description: str
    role: str = DEFAULT_ROLE
    # The dependencies as proposed; after a delta rewires the task,
    # TaskGraph.predecessors() returns the current ones.
    depends_on: tuple[str, ...] = ()
    kind: TaskKind = "work"
    cost_s: float = 1.0
    output_tokens: int = 256
    tags: frozenset[str] = frozenset()
    # Depth of decomposition that produced this task: 0 for the request itself.
    depth: int = 0
    # Id of the plan task whose output created this task, if any.
    parent: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # NaN fails every comparison, so `cost_s < 0` alone would let it through.
        if not (math.isfinite(self.cost_s) and self.cost_s >= 0):
            raise ValueError(
                f"task {self.id!r}: cost_s must be a finite number >= 0, got {self.cost_s}"
            )
        if self.output_tokens < 0:
            raise ValueError(
                f"task {self.id!r}: output_tokens must be >= 0, got {self.output_tokens}"
            )


@dataclass(slots=True)
class Task:
    """The graph's live record of a task: spec, state, and what happened.

    Times are seconds on the run's clock. ``error`` is set for failed and
    cancelled tasks and says why, naming the task that caused it.
    """

    spec: TaskSpec
    state: TaskState = "pending"
    output: str | None = None
    error: str | None = None
    agent: str | None = None
    ready_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES
