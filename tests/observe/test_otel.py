"""OpenTelemetry spans of a run, collected by the SDK's in-memory exporter."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.observe.events import EventBus, LLMCallFinished
from dyntaskmas.observe.otel import OtelSpans, provider_from_environment
from engine.harness import output_of, step, task_id_of
from observe.runs import observed_run

START_NS = 1_700_000_000_000_000_000


def _reply(request: ScriptedRequest) -> ScriptedReply:
    task_id = str(task_id_of(request))
    if task_id == "bad":
        return ScriptedReply(status=400, error_message="rejected by the test")
    return ScriptedReply(text=output_of(task_id), prompt_tokens=40, completion_tokens=9)


async def test_spans_follow_genai_conventions() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _, events = await observed_run([step("a"), step("b", "a"), step("bad")], _reply, agents=2)
    spans = OtelSpans(provider, wall_clock_ns=lambda: START_NS)
    bus = EventBus()
    spans.attach(bus)

    for event in events:
        bus.emit(event)

    finished = {span.name: span for span in exporter.get_finished_spans()}
    run = finished["invoke_workflow dyntaskmas"]
    chats = [span for span in exporter.get_finished_spans() if span.name.startswith("chat ")]
    agents = [
        span for span in exporter.get_finished_spans() if span.name.startswith("invoke_agent")
    ]
    calls = [e for e in events if isinstance(e, LLMCallFinished)]
    assert run.attributes is not None
    assert run.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run.start_time == START_NS
    assert len(agents) == 3
    assert len(chats) == len(calls) == 2
    for chat in chats:
        assert chat.attributes is not None
        assert chat.attributes["gen_ai.operation.name"] == "chat"
        assert chat.attributes["gen_ai.request.model"] == calls[0].model
        assert chat.attributes["gen_ai.usage.input_tokens"] == 40
        assert chat.attributes["gen_ai.usage.output_tokens"] == 9
        parent = next(s for s in agents if s.context.span_id == chat.parent.span_id)
        assert parent.parent is not None
        assert parent.parent.span_id == run.context.span_id
    failed = [s for s in agents if s.attributes and s.attributes["dyntaskmas.task.id"] == "bad"]
    assert failed[0].status.status_code == StatusCode.ERROR


def test_no_exporter_without_environment() -> None:
    assert provider_from_environment({}) is None
    assert provider_from_environment({"OTEL_TRACES_EXPORTER": "none"}) is None


def test_unknown_exporter_is_config_error() -> None:
    with pytest.raises(ConfigError, match="'zipkin' is not supported"):
        provider_from_environment({"OTEL_TRACES_EXPORTER": "zipkin"})
