"""Property tests of TaskGraph on random DAGs: priorities, atomic deltas, runs."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dyntaskmas.graph import TaskGraph

from .reference import (
    INACTIVE,
    MUTABLE,
    Snapshot,
    ancestors,
    brute_force_downstream,
    brute_force_priority,
    exact_scale,
)
from .strategies import (
    FreshIds,
    GraphSetup,
    apply_random_step,
    draw_invalid_delta,
    graph_setups,
)

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def assert_priorities_match_brute_force(graph: TaskGraph, history: list[str]) -> None:
    for task in graph:
        if task.state in INACTIVE:
            continue
        expected_down = brute_force_downstream(graph, task.id)
        expected_priority = brute_force_priority(graph, task.id)
        assert graph.downstream(task.id) == pytest.approx(expected_down, rel=1e-9, abs=1e-9), (
            task.id,
            history,
        )
        assert graph.priority(task.id) == pytest.approx(expected_priority, rel=1e-9, abs=1e-9), (
            task.id,
            history,
        )


@PROPERTY_SETTINGS
@given(setup=graph_setups())
def test_priorities_match_longest_path_after_build(setup: GraphSetup) -> None:
    graph = setup.build()

    assert_priorities_match_brute_force(graph, [])


@PROPERTY_SETTINGS
@given(setup=graph_setups(), data=st.data())
def test_priorities_match_longest_path_after_updates(
    setup: GraphSetup, data: st.DataObject
) -> None:
    graph = setup.build()
    fresh = FreshIds()
    history: list[str] = []

    for step in range(data.draw(st.integers(min_value=1, max_value=8), label="steps")):
        history.append(apply_random_step(data, graph, fresh, now=float(step)))
        assert_priorities_match_brute_force(graph, history)


@PROPERTY_SETTINGS
@given(setup=graph_setups(), data=st.data())
def test_scale_stays_within_tolerance(setup: GraphSetup, data: st.DataObject) -> None:
    graph = setup.build()
    fresh = FreshIds()

    for step in range(data.draw(st.integers(min_value=0, max_value=8), label="steps")):
        apply_random_step(data, graph, fresh, now=float(step))
        exact = exact_scale(graph)
        # The graph renormalizes whenever the exact scale drifts past the
        # tolerance, so after any update the drift is at most the tolerance.
        alpha_drift = abs(exact.alpha - graph.scale.alpha) / graph.scale.alpha
        beta_drift = abs(exact.beta - graph.scale.beta) / graph.scale.beta
        assert alpha_drift <= setup.tolerance + 1e-12
        assert beta_drift <= setup.tolerance + 1e-12


@PROPERTY_SETTINGS
@given(setup=graph_setups(), data=st.data())
def test_rejected_delta_changes_nothing(setup: GraphSetup, data: st.DataObject) -> None:
    graph = setup.build()
    fresh = FreshIds()
    for step in range(data.draw(st.integers(min_value=0, max_value=5), label="steps")):
        apply_random_step(data, graph, fresh, now=float(step))
    invalid = draw_invalid_delta(data, graph, fresh)
    before = Snapshot.of(graph)

    with pytest.raises(invalid.error) as caught:
        graph.apply(invalid.delta, now=100.0)

    after = Snapshot.of(graph)
    assert before.differences(after) == {}
    for task_id in invalid.named:
        assert re.search(rf"\b{re.escape(task_id)}\b", str(caught.value)), task_id


@PROPERTY_SETTINGS
@given(setup=graph_setups(), data=st.data())
def test_simulated_run_runs_each_task_once(setup: GraphSetup, data: st.DataObject) -> None:
    """Drive a run through the graph's API alone, as the engine does.

    Up to ``workers`` tasks run at once. Each step either starts the ready
    task of highest priority or ends a running one, which fails now and then.
    """
    graph = setup.build()
    workers = data.draw(st.integers(min_value=1, max_value=3), label="workers")
    starts: Counter[str] = Counter()
    running: list[str] = []
    now = 0.0

    while not graph.finished:
        now += 1.0
        ready = graph.ids_in_state("ready")
        may_start = bool(ready) and len(running) < workers
        if may_start and (not running or data.draw(st.booleans(), label="start")):
            best = max(ready, key=graph.priority)
            for dependency in graph.predecessors(best):
                assert graph.task(dependency).state == "done", (best, dependency)
            graph.mark_running(best, agent="agent", now=now)
            starts[best] += 1
            running.append(best)
            continue

        assert running, f"stuck: nothing is ready or running but {graph.ids_in_state('pending')}"
        task_id = data.draw(st.sampled_from(running), label="ends")
        running.remove(task_id)
        if data.draw(st.integers(min_value=0, max_value=9), label="fault") == 0:
            graph.mark_failed(task_id, "simulated failure", now=now)
        else:
            graph.mark_done(task_id, f"output of {task_id}", now=now)

    for task in graph:
        if task.state == "cancelled":
            assert starts[task.id] == 0, task.id
            failed = [a for a in ancestors(graph, task.id) if graph.task(a).state == "failed"]
            assert failed, f"{task.id} was cancelled without a failed dependency"
        else:
            assert task.state in {"done", "failed"}, task.id
            assert starts[task.id] == 1, task.id
    assert not any(task.state in MUTABLE for task in graph)
    assert graph.finished
