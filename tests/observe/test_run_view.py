"""Folding events into a RunView: states, resumed sessions, earlier attempts."""

from __future__ import annotations

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.observe.events import (
    AllocatorDecision,
    Event,
    GraphChanged,
    LLMCallFinished,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskStarted,
)
from dyntaskmas.observe.run_view import build_run_view
from observe.runs import allocator_run


def _call(at: float, task_id: str, tokens: int) -> LLMCallFinished:
    return LLMCallFinished("r", at, task_id, "agent-1", "e", "m", at - 1.0, 1.0, tokens, 1, 1, ())


def _resumed_run() -> list[Event]:
    """a runs and fails, b is cancelled; a resume runs a and b again.

    a -> b
    """
    specs = (
        TaskSpec(id="a", description="first", role="w"),
        TaskSpec(id="b", description="second", role="w", depends_on=("a",)),
    )
    return [
        RunStarted("r", 0.0, "request", 1),
        GraphChanged("r", 0.0, specs, (("a", "b"),), (), "initial graph"),
        TaskStarted("r", 0.0, "a", "agent-1", "e"),
        _call(2.0, "a", 10),
        TaskFailed("r", 3.0, "a", "bad output", ("b",)),
        TaskCancelled("r", 3.0, "b", "dependency 'a' failed"),
        RunFinished("r", 3.0, "failed", 3.0, 1),
        # The resume's clock starts at 0 again.
        RunStarted("r", 0.0, "request", 1),
        TaskStarted("r", 0.0, "a", "agent-1", "e"),
        _call(1.0, "a", 20),
        TaskFinished("r", 1.0, "a", "agent-1", "good", 1.0, 20, 1),
        TaskStarted("r", 1.0, "b", "agent-1", "e"),
        _call(2.0, "b", 30),
        TaskFinished("r", 2.0, "b", "agent-1", "done", 1.0, 30, 1),
        RunFinished("r", 2.0, "succeeded", 2.0, 2),
    ]


def test_resume_times_follow_first_session() -> None:
    view = build_run_view(_resumed_run())

    a, b = view.tasks["a"], view.tasks["b"]
    assert a.started_at == 3.0
    assert a.finished_at == 4.0
    assert b.started_at == 4.0
    assert view.last_at == 5.0
    assert view.status == "succeeded"


def test_retried_task_keeps_latest_attempt() -> None:
    view = build_run_view(_resumed_run())

    a = view.tasks["a"]
    assert a.state == "done"
    assert a.output == "good"
    assert a.error is None
    assert [call.prompt_tokens for call in a.calls] == [10, 20]
    assert view.prompt_tokens == 60


def test_cancelled_then_run_again() -> None:
    events = _resumed_run()
    first_session = events[:7]

    before = build_run_view(first_session)
    after = build_run_view(events)

    assert before.tasks["b"].state == "cancelled"
    assert before.tasks["b"].error == "dependency 'a' failed"
    assert after.tasks["b"].state == "done"


def test_other_run_starts_new_view() -> None:
    events = [*_resumed_run(), RunStarted("other", 0.0, "another request", 2)]

    view = build_run_view(events)

    assert view.run_id == "other"
    assert view.tasks == {}
    assert view.request == "another request"


def test_trace_shows_latest_attempt_calls() -> None:
    from dyntaskmas.observe.chrome_trace import chrome_trace

    trace = chrome_trace(build_run_view(_resumed_run()))["traceEvents"]

    calls = [event for event in trace if event.get("cat") == "llm"]
    tasks = {event["name"]: event for event in trace if event.get("cat") == "task"}
    assert [call["args"]["prompt_tokens"] for call in calls] == [20, 30]
    assert tasks["a"]["ts"] == 3_000_000
    assert tasks["a"]["dur"] == 1_000_000


def test_limit_steps_follow_allocator_decisions() -> None:
    events = allocator_run()
    decisions = [event for event in events if isinstance(event, AllocatorDecision)]
    changes = [d for d in decisions if d.new_limit != d.old_limit]

    steps = build_run_view(events).limits["e"]

    assert len(changes) >= 2
    assert steps[0] == (0.0, 2)
    assert steps[1:] == [(d.at_s, d.new_limit) for d in changes]
    assert build_run_view(events).current_limits() == {"e": decisions[-1].new_limit}
