"""The branch-and-bound optimum against hand-computed cases and every list schedule."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.bench.optimum import optimal_makespan


def list_schedule(
    order: Sequence[int],
    durations: Sequence[float],
    dependencies: Sequence[Sequence[int]],
    agents: int,
) -> float:
    """Return the makespan when free agents always start the first ready task in ``order``."""
    position = {task: index for index, task in enumerate(order)}
    finished: dict[int, float] = {}
    started: set[int] = set()
    running: list[tuple[float, int]] = []
    now = 0.0
    while len(finished) < len(durations):
        ready = sorted(
            (
                task
                for task in range(len(durations))
                if task not in started and all(d in finished for d in dependencies[task])
            ),
            key=position.__getitem__,
        )
        while ready and len(running) < agents:
            task = ready.pop(0)
            started.add(task)
            running.append((now + durations[task], task))
        running.sort()
        now = running[0][0]
        while running and running[0][0] <= now:
            end, task = running.pop(0)
            finished[task] = end
    return max(finished.values())


def test_equal_tasks_fill_agents() -> None:
    result = optimal_makespan([1.0, 1.0, 1.0], [[], [], []], 2, upper_bound=10.0)

    assert result.makespan == 2.0
    assert result.proven


def test_chain_takes_its_sum() -> None:
    result = optimal_makespan([1.0, 2.0, 3.0], [[], [0], [1]], 4, upper_bound=10.0)

    assert result.makespan == 6.0


def test_optimum_may_leave_agent_idle() -> None:
    """Two agents; 3 (5 s) is independent, 4 needs 0, 1 and 2::

        0 (1 s) --> 1 (4 s) --> 4 (3 s)
               \\--> 2 (3 s) --/          3 (5 s)

    Starting 3 at once, as every list schedule does, ends at 11 s. Holding
    it back: 0, 1, 4 on one agent and idle, 2, 3 on the other end at 9 s.
    """
    durations = [1.0, 4.0, 3.0, 5.0, 3.0]
    dependencies = [[], [0], [0], [], [0, 1, 2]]

    result = optimal_makespan(durations, dependencies, 2, upper_bound=11.0)

    assert result.makespan == 9.0
    assert list_schedule([0, 1, 2, 3, 4], durations, dependencies, 2) == 11.0


def test_upper_bound_kept_when_nothing_shorter() -> None:
    result = optimal_makespan([2.0, 2.0], [[], []], 1, upper_bound=4.0)

    assert result.makespan == 4.0
    assert result.proven


def test_node_limit_marks_result_unproven() -> None:
    result = optimal_makespan([1.0] * 6, [[]] * 6, 4, upper_bound=100.0, node_limit=1)

    assert not result.proven


def test_zero_agents_rejected() -> None:
    with pytest.raises(ValueError, match="agents must be >= 1"):
        optimal_makespan([1.0], [[]], 0, upper_bound=1.0)


@st.composite
def small_graphs(draw: st.DrawFn) -> tuple[list[float], list[list[int]], int]:
    count = draw(st.integers(min_value=1, max_value=5))
    durations = [float(draw(st.integers(min_value=1, max_value=6))) for _ in range(count)]
    dependencies = [
        sorted(draw(st.sets(st.integers(min_value=0, max_value=task - 1)))) if task else []
        for task in range(count)
    ]
    return durations, dependencies, draw(st.integers(min_value=1, max_value=3))


@settings(max_examples=60, deadline=None)
@given(small_graphs())
def test_optimum_beats_every_list_schedule(graph: tuple[list[float], list[list[int]], int]) -> None:
    durations, dependencies, agents = graph
    best_list = min(
        list_schedule(order, durations, dependencies, agents)
        for order in itertools.permutations(range(len(durations)))
    )

    result = optimal_makespan(durations, dependencies, agents, upper_bound=best_list)

    assert result.proven
    assert result.makespan <= best_list
    assert result.makespan >= sum(durations) / agents - 1e-9
