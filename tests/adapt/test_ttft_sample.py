"""Time to first token in the allocator's MonitorSample events, from streamed calls over HTTP."""

from __future__ import annotations

import random

from dyntaskmas.adapt.allocator import Allocator
from dyntaskmas.adapt.controller import ControllerConfig
from dyntaskmas.adapt.monitor import Monitor
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply
from dyntaskmas.llm.types import ChatMessage
from dyntaskmas.observe.events import Event, EventBus, MonitorSample, RunStarted

QUESTION = [ChatMessage("user", "Name a colour.")]


async def test_sample_reports_ttft_of_streamed_calls() -> None:
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    async with ScriptedLLMServer(
        lambda request: ScriptedReply(text="Red.", delay_s=0.02)
    ) as server:
        endpoint = Endpoint(server.base_url, model=server.model, stream=True)
        monitor = Monitor(endpoint.clock)
        monitor.watch(endpoint)
        allocator = Allocator(
            monitor,
            [(endpoint, ControllerConfig())],
            clock=endpoint.clock,
            events=bus,
            adjust=False,
        )
        bus.emit(RunStarted("r1", 0.0, "request", 1))
        async with OpenAIChatModel(endpoint, rng=random.Random(0)) as model:
            completions = [await model.complete(QUESTION, max_tokens=4) for _ in range(3)]
        allocator.step()

    (sample,) = [event for event in events if isinstance(event, MonitorSample)]
    measured = sorted(c.time_to_first_token_s for c in completions if c.time_to_first_token_s)
    assert len(measured) == 3
    assert sample.ttft_p50_s == measured[1]
    assert sample.ttft_p95_s == measured[2]
    # The server waited 0.02 s before its first byte.
    assert sample.ttft_p50_s >= 0.02
    assert sample.latency_p50_s is not None
    assert sample.ttft_p50_s <= sample.latency_p50_s
