"""The engine's event stream, on a scripted server over loopback HTTP."""

from __future__ import annotations

import asyncio

from dyntaskmas.context.manager import ContextManager
from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.observe.events import (
    ContextDelivered,
    Event,
    EventBus,
    GraphChanged,
    LLMCallFinished,
    RunFinished,
    RunStarted,
    TaskCancelled,
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


async def _run_with_events(*, bus: EventBus, context: bool = False) -> list[Event]:
    events: list[Event] = []
    bus.subscribe(events.append)
    async with scripted_model(_reply) as (_, model):
        pool = AgentPool(build_agents(2, ROLES, {"scripted": model}))
        engine = Engine(
            pool,
            config=EngineConfig(roles=ROLES),
            events=bus,
            context=ContextManager if context else None,
        )
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
        assert kinds == [TaskReady, TaskStarted, LLMCallFinished, TaskFinished]
    finished = [e for e in events if isinstance(e, TaskFinished) and e.task_id == "b"]
    assert finished[0].output == "output of b"


async def test_failure_event_lists_cancelled() -> None:
    events = await _run_with_events(bus=EventBus())

    failures = [e for e in events if isinstance(e, TaskFailed)]
    assert len(failures) == 1
    assert failures[0].task_id == "bad"
    assert failures[0].cancelled == ("after",)
    assert "rejected by the test" in failures[0].error


async def test_cancelled_descendant_has_event() -> None:
    events = await _run_with_events(bus=EventBus())

    cancelled = [e for e in events if isinstance(e, TaskCancelled)]
    assert [e.task_id for e in cancelled] == ["after"]
    assert "bad" in cancelled[0].reason


async def test_llm_call_event_matches_task() -> None:
    events = await _run_with_events(bus=EventBus())

    calls = {e.task_id: e for e in events if isinstance(e, LLMCallFinished)}
    finished = {e.task_id: e for e in events if isinstance(e, TaskFinished)}
    started = {e.task_id: e for e in events if isinstance(e, TaskStarted)}
    call = calls["b"]
    assert call.prompt_tokens == finished["b"].prompt_tokens
    assert call.completion_tokens == finished["b"].completion_tokens
    assert call.agent == started["b"].agent
    assert started["b"].at_s <= call.started_at_s <= call.at_s <= finished["b"].at_s
    assert any("output of a" in content for _, content in call.messages)


async def test_context_delivered_names_sources() -> None:
    events = await _run_with_events(bus=EventBus(), context=True)

    delivered = {e.task_id: e for e in events if isinstance(e, ContextDelivered)}
    assert delivered["b"].sources == ("a",)
    assert delivered["b"].tokens > 0
    assert delivered["b"].tokens <= delivered["b"].budget_tokens


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


async def test_retried_call_has_event() -> None:
    from dyntaskmas.observe.events import LLMCallRetried

    seen: list[str] = []

    def flaky(request: ScriptedRequest) -> ScriptedReply:
        task_id = str(task_id_of(request))
        seen.append(task_id)
        if task_id == "a" and seen.count("a") == 1:
            return ScriptedReply(status=503, error_message="busy, try again")
        return ScriptedReply(text=f"output of {task_id}")

    bus = EventBus()
    events: list[Event] = []
    bus.subscribe(events.append)
    async with scripted_model(flaky) as (_, model):
        pool = AgentPool(build_agents(1, ROLES, {"scripted": model}))
        await Engine(pool, config=EngineConfig(roles=ROLES), events=bus).run_graph([step("a")])

    retried = [e for e in events if isinstance(e, LLMCallRetried)]
    calls = [e for e in events if isinstance(e, LLMCallFinished)]
    assert [(e.task_id, e.retries) for e in retried] == [("a", 1)]
    assert calls[0].attempts == 2
