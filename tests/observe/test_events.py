"""The engine's event stream, on a scripted server over loopback HTTP."""

from __future__ import annotations

import asyncio

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.observe.events import (
    Event,
    EventBus,
    GraphChanged,
    RunFinished,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)
from engine.harness import ROLES, scripted_model, step, task_id_of


def _reply(request: ScriptedRequest) -> ScriptedReply:
    if task_id_of(request) == "bad":
        return ScriptedReply(status=400, error_message="rejected by the test")
    return ScriptedReply(text=f"output of {task_id_of(request)}")


async def _run_with_events(*, bus: EventBus) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(events.append)
    async with scripted_model(_reply) as (_, model):
        pool = AgentPool(build_agents(2, ROLES, {"scripted": model}))
        engine = Engine(pool, config=EngineConfig(roles=ROLES), events=bus)
        await engine.run_graph([step("a"), step("b", "a"), step("bad"), step("after", "bad")])
    return events


async def test_events_frame_the_run() -> None:
    events = await _run_with_events(bus=EventBus())

    assert isinstance(events[0], RunStarted)
    assert isinstance(events[1], GraphChanged)
    assert isinstance(events[-1], RunFinished)
    assert len({event.run_id for event in events}) == 1


async def test_task_events_in_order() -> None:
    events = await _run_with_events(bus=EventBus())

    for task_id in ("a", "b"):
        kinds = [type(e) for e in events if getattr(e, "task_id", None) == task_id]
        assert kinds == [TaskReady, TaskStarted, TaskFinished]
    finished = [e for e in events if isinstance(e, TaskFinished) and e.task_id == "b"]
    assert finished[0].output == "output of b"


async def test_failure_event_lists_cancelled() -> None:
    events = await _run_with_events(bus=EventBus())

    failures = [e for e in events if isinstance(e, TaskFailed)]
    assert len(failures) == 1
    assert failures[0].task_id == "bad"
    assert failures[0].cancelled == ("after",)
    assert "rejected by the test" in failures[0].error


async def test_stream_yields_until_run_finished() -> None:
    bus = EventBus()
    streamed: list[Event] = []

    async def consume() -> None:
        async for event in bus.stream():
            streamed.append(event)

    async with asyncio.TaskGroup() as group:
        consumer = group.create_task(consume())
        await asyncio.sleep(0)  # let the consumer subscribe before the run starts
        recorded = await _run_with_events(bus=bus)

    assert consumer.done()
    assert streamed == recorded


def test_unsubscribe_stops_delivery() -> None:
    bus = EventBus()
    seen: list[Event] = []
    unsubscribe = bus.subscribe(seen.append)
    bus.emit(RunStarted("run-1", 0.0, "request", 1))

    unsubscribe()
    bus.emit(RunStarted("run-1", 0.0, "request", 1))

    assert len(seen) == 1
