"""Folding a run's events into the state a resume starts from."""

from __future__ import annotations

from dyntaskmas.engine.executor import decomposition_reason, plan_output
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.journal.replay import fold_events
from dyntaskmas.observe.events import (
    Event,
    GraphChanged,
    RunStarted,
    TaskFailed,
    TaskFinished,
)

PLAN = TaskSpec(id="t.plan", description="do it", role="planner", kind="plan")
ANSWER = TaskSpec(id="answer", description="answer", kind="synthesize", depends_on=("t.plan",))
SUB_1 = TaskSpec(id="t.1", description="first")
SUB_2 = TaskSpec(id="t.2", description="second", depends_on=("t.1",))
INITIAL = GraphChanged("r", 0.0, (PLAN, ANSWER), (("t.plan", "answer"),), (), "initial graph")
DECOMPOSITION = GraphChanged(
    "r",
    1.0,
    (SUB_1, SUB_2),
    (("t.1", "t.2"), ("t.2", "answer")),
    (),
    decomposition_reason("t.plan"),
)


def finished(task_id: str, output: str) -> TaskFinished:
    return TaskFinished("r", 1.0, task_id, "worker-1", output, 0.1, 1, 1)


def test_fold_keeps_request_and_deltas_in_order() -> None:
    events: list[Event] = [RunStarted("r", 0.0, "the request", 2), INITIAL, DECOMPOSITION]
    state = fold_events("r", events)
    assert state.request == "the request"
    assert [delta.reason for delta in state.deltas] == ["initial graph", "decomposition by t.plan"]


def test_fold_keeps_only_edges_not_implied_by_specs() -> None:
    state = fold_events("r", [INITIAL, DECOMPOSITION])
    assert state.deltas[0].add_edges == ()
    assert state.deltas[1].add_edges == (("t.2", "answer"),)


def test_plan_with_recorded_delta_counts_as_finished() -> None:
    state = fold_events("r", [INITIAL, DECOMPOSITION])
    assert [task.task_id for task in state.finished] == ["t.plan"]
    assert state.finished[0].recovered
    assert state.finished[0].output == plan_output(["t.1", "t.2"])


def test_recorded_plan_finish_replaces_recovered_one() -> None:
    state = fold_events("r", [INITIAL, DECOMPOSITION, finished("t.plan", "planned 2")])
    assert len(state.finished) == 1
    assert not state.finished[0].recovered
    assert state.finished[0].output == "planned 2"


def test_finished_tasks_keep_finishing_order() -> None:
    events: list[Event] = [
        INITIAL,
        DECOMPOSITION,
        finished("t.plan", "p"),
        finished("t.1", "one"),
        finished("t.2", "two"),
    ]
    state = fold_events("r", events)
    assert [task.task_id for task in state.finished] == ["t.plan", "t.1", "t.2"]
    assert [task.output for task in state.finished] == ["p", "one", "two"]


def test_failed_task_is_listed_until_it_finishes() -> None:
    failed = TaskFailed("r", 1.0, "t.1", "boom", ("t.2",))
    before = fold_events("r", [INITIAL, DECOMPOSITION, failed])
    after = fold_events("r", [INITIAL, DECOMPOSITION, failed, finished("t.1", "one")])
    assert before.failed == ("t.1",)
    assert after.failed == ()
    assert "t.1" not in [task.task_id for task in before.finished]


def test_second_run_started_keeps_first_request() -> None:
    events: list[Event] = [
        RunStarted("r", 0.0, "first", 2),
        INITIAL,
        RunStarted("r", 0.0, "first", 2),
    ]
    assert fold_events("r", events).request == "first"
