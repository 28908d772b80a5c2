"""OpenTelemetry spans of a run, following the GenAI semantic conventions.

Needs the optional extra ``otel`` (``pip install 'dyntaskmas[otel]'``); no
other module imports this one, so without the extra nothing imports
OpenTelemetry. :class:`OtelSpans` subscribes to an engine's event bus and
makes three kinds of spans on the tracer provider it is given:

- the run: ``invoke_workflow dyntaskmas``, with ``gen_ai.operation.name``
  ``invoke_workflow`` and the run's id and figures;
- each task that ran on an agent: ``invoke_agent <agent>``, a child of the
  run, with ``gen_ai.agent.name``, the task's id, role and state;
- each model call: ``chat <model>``, a child of its task, with
  ``gen_ai.request.model``, ``gen_ai.usage.input_tokens`` and
  ``gen_ai.usage.output_tokens``. Prompts are not recorded, because spans
  often go to shared backends.

Span times are the events' times, placed on the wall clock at the run's
start. Spans are exported only through the provider's span processors, so
nothing leaves the process unless the caller configured an exporter.
:func:`provider_from_environment` builds one from the standard variable
``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``) for the CLI.

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    OtelSpans(provider).attach(engine.events)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from dyntaskmas import __version__
from dyntaskmas.errors import ConfigError
from dyntaskmas.observe.events import (
    Event,
    EventBus,
    LLMCallFinished,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskStarted,
)

TRACER_NAME = "dyntaskmas"
EXPORTER_ENV_VAR = "OTEL_TRACES_EXPORTER"


class OtelSpans:
    """Turns a run's events into OpenTelemetry spans on ``tracer_provider``.

    ``wall_clock_ns`` gives the Unix time in nanoseconds at which a run's
    ``RunStarted`` arrives (injectable for tests); every later time is that
    plus the event's ``at_s``.
    """

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider=tracer_provider)
        self._wall_clock_ns = wall_clock_ns
        self._base_ns: dict[str, int] = {}
        self._runs: dict[str, Span] = {}
        # Open task spans by (run id, task id).
        self._tasks: dict[tuple[str, str], Span] = {}

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Subscribe to ``bus``; return the function that unsubscribes."""
        return bus.subscribe(self.handle)

    def _ns(self, event: Event, seconds: float) -> int:
        return self._base_ns.get(event.run_id, 0) + round(seconds * 1e9)

    def handle(self, event: Event) -> None:
        """Start or end the spans that ``event`` opens or closes."""
        if isinstance(event, RunStarted):
            self._start_run(event)
            return
        run_span = self._runs.get(event.run_id)
        if run_span is None:
            return
        if isinstance(event, TaskStarted) and event.agent is not None:
            context = trace.set_span_in_context(run_span)
            span = self._tracer.start_span(
                f"invoke_agent {event.agent}",
                context=context,
                kind=SpanKind.INTERNAL,
                start_time=self._ns(event, event.at_s),
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": event.agent,
                    "dyntaskmas.task.id": event.task_id,
                    "dyntaskmas.endpoint": event.endpoint or "",
                },
            )
            self._tasks[(event.run_id, event.task_id)] = span
        elif isinstance(event, LLMCallFinished):
            parent = self._tasks.get((event.run_id, event.task_id), run_span)
            span = self._tracer.start_span(
                f"chat {event.model}",
                context=trace.set_span_in_context(parent),
                kind=SpanKind.CLIENT,
                start_time=self._ns(event, event.started_at_s),
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": event.model,
                    "gen_ai.response.model": event.model,
                    "gen_ai.usage.input_tokens": event.prompt_tokens,
                    "gen_ai.usage.output_tokens": event.completion_tokens,
                    "gen_ai.agent.name": event.agent or "",
                    "dyntaskmas.task.id": event.task_id,
                    "dyntaskmas.attempts": event.attempts,
                },
            )
            span.end(end_time=self._ns(event, event.started_at_s + event.duration_s))
        elif isinstance(event, TaskFinished):
            self._end_task(event, event.task_id, None)
        elif isinstance(event, TaskFailed):
            self._end_task(event, event.task_id, event.error)
        elif isinstance(event, TaskCancelled):
            self._end_task(event, event.task_id, event.reason)
        elif isinstance(event, RunFinished):
            self._end_run(event)

    def _start_run(self, event: RunStarted) -> None:
        self._base_ns[event.run_id] = self._wall_clock_ns() - round(event.at_s * 1e9)
        self._runs[event.run_id] = self._tracer.start_span(
            "invoke_workflow dyntaskmas",
            kind=SpanKind.INTERNAL,
            start_time=self._ns(event, event.at_s),
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": "dyntaskmas",
                "dyntaskmas.run.id": event.run_id,
                "dyntaskmas.agents": event.agents,
            },
        )

    def _end_task(self, event: Event, task_id: str, error: str | None) -> None:
        span = self._tasks.pop((event.run_id, task_id), None)
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        if isinstance(event, TaskFinished):
            span.set_attribute("gen_ai.usage.input_tokens", event.prompt_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", event.completion_tokens)
        span.end(end_time=self._ns(event, event.at_s))

    def _end_run(self, event: RunFinished) -> None:
        for key in [key for key in self._tasks if key[0] == event.run_id]:
            self._tasks.pop(key).end(end_time=self._ns(event, event.at_s))
        span = self._runs.pop(event.run_id)
        span.set_attribute("dyntaskmas.run.status", event.status)
        span.set_attribute("dyntaskmas.llm_calls", event.llm_calls)
        if event.status != "succeeded":
            span.set_status(Status(StatusCode.ERROR, f"run {event.status}"))
        span.end(end_time=self._ns(event, event.at_s))
        del self._base_ns[event.run_id]


def provider_from_environment(environ: Mapping[str, str]) -> TracerProvider | None:
    """Return a tracer provider with the exporter ``OTEL_TRACES_EXPORTER`` names, or None.

    ``otlp`` sends OTLP over HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT``, which
    the exporter reads. ``console`` prints spans as JSON on stderr, because
    stdout carries the CLI's output. Unset or ``none`` exports nothing.
    """
    name = environ.get(EXPORTER_ENV_VAR, "").strip().lower()
    if name in ("", "none"):
        return None
    exporter: SpanExporter
    if name == "console":
        exporter = ConsoleSpanExporter(out=sys.stderr)
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigError(
                f"{EXPORTER_ENV_VAR}=otlp needs the OTLP exporter; install it with "
                f"pip install 'dyntaskmas[otel]'"
            ) from None
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return provider
    raise ConfigError(f"{EXPORTER_ENV_VAR}={name!r} is not supported; use otlp, console or none")
