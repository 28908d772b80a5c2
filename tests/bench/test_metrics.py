"""Lower bounds, efficiency and utilisation while work is waiting."""

from __future__ import annotations

import pytest

from dyntaskmas.bench.metrics import (
    busy_time_when_saturated,
    makespan_lower_bound,
    ratio_summary,
    scaling_efficiency,
)
from dyntaskmas.engine.result import TaskRecord


def record(task_id: str, start: float, end: float, *depends_on: str) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        description=task_id,
        role="worker",
        kind="work",
        depends_on=depends_on,
        state="done",
        agent="agent-1",
        started_at=start,
        finished_at=end,
        output="",
        error=None,
    )


def test_lower_bound_takes_larger_term() -> None:
    assert makespan_lower_bound(10.0, 40.0, 2) == 20.0
    assert makespan_lower_bound(10.0, 40.0, 8) == 10.0


def test_lower_bound_rejects_zero_agents() -> None:
    with pytest.raises(ValueError, match="agents must be >= 1"):
        makespan_lower_bound(1.0, 1.0, 0)


def test_efficiency_is_per_agent_share() -> None:
    assert scaling_efficiency(30.0, 4, 10.0) == 0.75


def test_ratio_summary_gives_mean_and_max() -> None:
    assert ratio_summary([1.0, 1.5, 1.25]) == (1.25, 1.5)


def test_saturation_counts_waiting_work() -> None:
    """Two slots; a, b ready at 0, c after a::

        a [0, 2)   b [0, 1)   c [2, 3)   waiting: 2 tasks over [0, 1), then 1

    Only [0, 1) has two tasks waiting; both slots are busy then.
    """
    records = [record("a", 0.0, 2.0), record("b", 0.0, 1.0), record("c", 2.0, 3.0, "a")]
    busy = [(0.0, 2.0), (0.0, 1.0), (2.0, 3.0)]

    saturated_s, busy_slot_s = busy_time_when_saturated(records, busy, 2, 3.0)

    assert saturated_s == 1.0
    assert busy_slot_s == 2.0


def test_saturation_sees_idle_slot_while_work_waits() -> None:
    """One slot; a and b ready at 0, but b starts only at 2 (one agent, a gap)."""
    records = [record("a", 0.0, 1.0), record("b", 2.0, 3.0)]
    busy = [(0.0, 1.0), (2.0, 3.0)]

    saturated_s, busy_slot_s = busy_time_when_saturated(records, busy, 1, 3.0)

    assert saturated_s == 3.0
    assert busy_slot_s == 2.0
