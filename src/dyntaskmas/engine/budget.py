"""Run budgets: limits on tasks, model calls and tokens, and the stop they cause.

:class:`Budget` contains the limits a run may use; :class:`BudgetTracker`
counts what the run has used and decides whether the executor may start
another task. It is plain bookkeeping: no clock, no I/O.

Policy: a task that calls a model is started only while every limit leaves
room for it. For model calls the room counts the calls of running tasks as
used already (one each), so a run of one-call tasks stops at exactly
``max_llm_calls``; a plan task whose first output needs the repair call
makes two calls and can go one over. Tokens are known only once a call
returns, so the calls in flight when the limit is reached finish, and a
run can end above ``max_tokens`` by what they used. Once a limit is
reached nothing new starts, running tasks finish, and the run ends with a
:class:`StopReason` that names the limit and the tasks that did not run.

    tracker = BudgetTracker(Budget(max_llm_calls=25))
    tracker.may_start(running=3)       # True while 25 > used + 3
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from dyntaskmas.llm.types import Completion

BudgetLimit = Literal["max_tasks", "max_llm_calls", "max_tokens"]

_NOUNS: dict[BudgetLimit, str] = {
    "max_tasks": "tasks",
    "max_llm_calls": "model calls",
    "max_tokens": "tokens",
}


@dataclass(frozen=True)
class Budget:
    """Limits of one run; ``None`` means no limit.

    ``max_tasks`` counts tasks that call a model (work, plan and synthesis
    tasks; joins are free). ``max_tokens`` counts prompt plus completion
    tokens as the server reports them.
    """

    max_tasks: int | None = None
    max_llm_calls: int | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_tasks", "max_llm_calls", "max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None for no limit, got {value}")

    @property
    def unlimited(self) -> bool:
        return self.max_tasks is None and self.max_llm_calls is None and self.max_tokens is None


@dataclass(frozen=True)
class StopReason:
    """The limit that stopped a run before its graph finished, and what did not run.

    ``not_run`` lists the tasks that were pending or ready when the last
    running task finished, in graph order.
    """

    limit: BudgetLimit
    allowed: int
    used: int
    not_run: tuple[str, ...]

    @property
    def message(self) -> str:
        noun = _NOUNS[self.limit]
        return (
            f"the run's budget of {self.allowed} {noun} was used up ({self.used} used); "
            f"{len(self.not_run)} tasks did not run; raise the limit or resume the run"
        )


class BudgetTracker:
    """Counts a run's tasks, model calls and tokens against its :class:`Budget`."""

    def __init__(self, budget: Budget | None = None) -> None:
        self.budget = budget or Budget()
        self.tasks = 0
        self.llm_calls = 0
        self.tokens = 0
        # The first limit found reached; it stays set, so a run never
        # restarts dispatching after stopping.
        self.reached: BudgetLimit | None = None

    def may_start(self, *, running: int) -> bool:
        """Tell whether one more model-calling task may start.

        ``running`` is the number of model-calling tasks in flight, each
        counted as one model call that is not yet charged.
        """
        if self.reached is not None:
            return False
        budget = self.budget
        if budget.max_tasks is not None and self.tasks >= budget.max_tasks:
            self.reached = "max_tasks"
        elif budget.max_llm_calls is not None and self.llm_calls + running >= budget.max_llm_calls:
            # Calls in flight still finish; only when none are left does the
            # limit count as reached, so their results are kept.
            if running == 0:
                self.reached = "max_llm_calls"
            return False
        elif budget.max_tokens is not None and self.tokens >= budget.max_tokens:
            self.reached = "max_tokens"
        return self.reached is None

    def started(self) -> None:
        """Count a model-calling task that starts."""
        self.tasks += 1

    def charge(self, completions: Iterable[Completion]) -> None:
        """Count the model calls of a finished task and their tokens."""
        for completion in completions:
            self.llm_calls += 1
            self.tokens += completion.usage.total_tokens

    def stop_reason(self, not_run: Iterable[str]) -> StopReason | None:
        """Return why the run stopped, or None when no limit was reached."""
        limit = self.reached
        if limit is None:
            return None
        allowed = getattr(self.budget, limit)
        assert allowed is not None, "only a set limit can be reached"
        used = {"max_tasks": self.tasks, "max_llm_calls": self.llm_calls, "max_tokens": self.tokens}
        return StopReason(limit, allowed, used[limit], tuple(not_run))
