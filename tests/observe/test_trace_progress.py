"""The Chrome trace, the live progress display and the OpenTelemetry spans of a run."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.observe.chrome_trace import agent_tracks, chrome_trace
from dyntaskmas.observe.events import (
    AllocatorDecision,
    Event,
    GraphChanged,
    LLMCallFinished,
    MonitorSample,
    RunStarted,
    TaskFinished,
    TaskStarted,
)
from dyntaskmas.observe.progress import LiveProgress, should_draw_progress
from dyntaskmas.observe.run_view import build_run_view
from engine.harness import output_of, step, task_id_of
from observe.runs import allocator_run, observed_run, twenty_steps


def _reply(request: ScriptedRequest) -> ScriptedReply:
    task_id = str(task_id_of(request))
    return ScriptedReply(text=output_of(task_id), delay_s=0.01)


async def test_chrome_trace_has_one_event_per_task() -> None:
    result, events = await observed_run(twenty_steps(), _reply, agents=3)
    view = build_run_view(events)

    trace = chrome_trace(view)

    tracks = agent_tracks(view)
    names = {
        e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"
    }
    task_events = [e for e in trace["traceEvents"] if e.get("cat") == "task"]
    assert len(task_events) == len(result.tasks) == 20
    for record in result.tasks:
        matching = [e for e in task_events if e["name"] == record.id]
        assert len(matching) == 1
        event = matching[0]
        assert event["ph"] == "X"
        assert names[event["tid"]] == record.agent
        assert event["tid"] == tracks[str(record.agent)]
        assert record.started_at is not None
        assert record.duration_s is not None
        assert event["ts"] == pytest.approx(record.started_at * 1e6, abs=0.01)
        assert event["dur"] == pytest.approx(record.duration_s * 1e6, abs=0.01)


async def test_chrome_trace_nests_calls_in_tasks() -> None:
    _, events = await observed_run(twenty_steps(), _reply, agents=3)

    trace = chrome_trace(build_run_view(events))["traceEvents"]

    tasks = {e["args"]["description"]: e for e in trace if e.get("cat") == "task"}
    calls = [e for e in trace if e.get("cat") == "llm"]
    assert len(calls) == 20
    for call in calls:
        task = tasks[f"Step {call['args']['task']}"]
        assert call["tid"] == task["tid"]
        assert task["ts"] <= call["ts"]
        assert call["ts"] + call["dur"] <= task["ts"] + task["dur"] + 0.01


def test_progress_drawn_only_on_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert should_draw_progress(quiet=False, streams=(Terminal(), Terminal()))
    assert not should_draw_progress(quiet=True, streams=(Terminal(), Terminal()))
    assert not should_draw_progress(quiet=False, streams=(io.StringIO(), Terminal()))
    assert not should_draw_progress(quiet=False, streams=(Terminal(), io.StringIO()))


def test_progress_shows_tasks_agents_tokens() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    now = [100.0]
    progress = LiveProgress(console, clock=lambda: now[0])
    _, events = _two_task_events()

    for event in events[:4]:
        progress.handle(event)
    now[0] = 102.5
    console.print(progress)
    first = out.getvalue()
    for event in events[3:]:
        progress.handle(event)
    console.print(progress)
    second = out.getvalue()[len(first) :]

    assert "0/2 tasks done" in first
    assert "2 running" in first
    assert "agent-1" in first
    assert "[bold]x" in first  # a description is shown as text, never as markup
    assert "2.5 s" in first
    assert "1/2 tasks done" in second
    assert "150 tokens" in second
    assert "agent-2" in second
    assert "agent-1" not in second


def test_live_progress_draws_on_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    _, events = _two_task_events()

    with LiveProgress(console, refresh_per_second=50) as progress:
        for event in events:
            progress.handle(event)

    assert "1/2 tasks done" in out.getvalue()


def test_progress_shows_current_limit() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=160, color_system=None)
    progress = LiveProgress(console, clock=lambda: 0.0)
    events = allocator_run()
    first_raise = next(
        index
        for index, event in enumerate(events)
        if isinstance(event, AllocatorDecision) and event.new_limit > event.old_limit
    )
    raised = events[first_raise]
    # Each step emits the endpoint's sample, with the new limit, before its decision.
    step_start = first_raise - 1
    assert isinstance(raised, AllocatorDecision)
    assert isinstance(events[step_start], MonitorSample)

    for event in events[:step_start]:
        progress.handle(event)
    console.print(progress)
    before = out.getvalue()
    for event in events[step_start : first_raise + 1]:
        progress.handle(event)
    console.print(progress)
    after = out.getvalue()[len(before) :]

    assert re.findall(r"limit e (\d+)", before) == [str(raised.old_limit)]
    assert re.findall(r"limit e (\d+)", after) == [str(raised.new_limit)]


def _two_task_events() -> tuple[str, list[Event]]:
    """Events of a run in which a and b start; a finishes after one model call."""
    run = "run-1"
    specs = (step("a"), TaskSpec(id="b", description="[bold]x", role="worker"))
    return run, [
        RunStarted(run, 0.0, "request", 2),
        GraphChanged(run, 0.0, specs, (), (), "initial graph"),
        TaskStarted(run, 0.0, "a", "agent-1", "e"),
        TaskStarted(run, 0.1, "b", "agent-2", "e"),
        LLMCallFinished(run, 1.0, "a", "agent-1", "e", "m", 0.0, 1.0, 120, 30, 1, ()),
        TaskFinished(run, 1.0, "a", "agent-1", "out", 1.0, 120, 30),
    ]
