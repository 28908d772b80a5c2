"""Tests of OpenAIChatModel against a real ScriptedLLMServer on 127.0.0.1.

Every request goes through the openai SDK over HTTP; nothing is patched.
Timing checks use the server's recorded monotonic timestamps and only
assert lower bounds, which hold on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from dyntaskmas.clock import Clock, ManualClock
from dyntaskmas.errors import (
    EndpointUnavailableError,
    LLMRequestError,
    LLMResponseError,
    TransientLLMError,
)
from dyntaskmas.llm.attempts import AttemptRecord
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.scripted import (
    Handler,
    RecordedCall,
    ScriptedLLMServer,
    ScriptedReply,
    ScriptedRequest,
    reply_sequence,
)
from dyntaskmas.llm.types import ChatMessage

QUESTION = [
    ChatMessage("system", "You answer briefly."),
    ChatMessage("user", "What is 2 + 2?"),
]
# Tiny delays so that retry tests take milliseconds. Retry-After still applies.
FAST_RETRIES = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01)
SCHEMA = {
    "title": "Answer",
    "type": "object",
    "properties": {"answer": {"type": "string"}},
    "required": ["answer"],
}


def make_model(
    server: ScriptedLLMServer,
    *,
    policy: RetryPolicy = FAST_RETRIES,
    concurrency: int = 4,
    timeout_s: float = 10.0,
    clock: Clock | None = None,
) -> OpenAIChatModel:
    endpoint = Endpoint(server.base_url, model=server.model, concurrency=concurrency, clock=clock)
    return OpenAIChatModel(endpoint, policy=policy, timeout_s=timeout_s, rng=random.Random(0))


@contextlib.asynccontextmanager
async def serve(
    handler: Handler, **model_options: Any
) -> AsyncIterator[tuple[ScriptedLLMServer, OpenAIChatModel]]:
    """Run a scripted server and a model that calls it, built by make_model."""
    async with ScriptedLLMServer(handler) as server, make_model(server, **model_options) as model:
        yield server, model


def gap_s(earlier: RecordedCall, later: RecordedCall) -> float:
    assert earlier.finished_at is not None
    return later.arrived_at - earlier.finished_at


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_completion_fields() -> None:
    reply = ScriptedReply(text="4", prompt_tokens=12, completion_tokens=1, finish_reason="stop")
    async with serve(lambda request: reply) as (server, model):
        completion = await model.complete(QUESTION, max_tokens=8, temperature=0.5)

    assert completion.text == "4"
    assert completion.usage.prompt_tokens == 12
    assert completion.usage.completion_tokens == 1
    assert completion.model == server.model
    assert completion.finish_reason == "stop"
    assert completion.attempts == 1
    assert completion.latency_s >= 0.0


async def test_request_body_sent() -> None:
    async with serve(lambda request: "4") as (server, model):
        await model.complete(QUESTION, max_tokens=8, temperature=0.5)

    request = server.calls[0].request
    assert request.model == server.model
    assert request.max_tokens == 8
    assert request.temperature == 0.5
    assert request.response_format is None
    assert [message["role"] for message in request.messages] == ["system", "user"]
    assert request.last_user_text == "What is 2 + 2?"


async def test_api_key_sent_as_bearer_token() -> None:
    async with ScriptedLLMServer(lambda request: "4") as server:
        endpoint = Endpoint(server.base_url, model=server.model, api_key="sk-test-key")
        async with OpenAIChatModel(endpoint) as model:
            await model.complete(QUESTION, max_tokens=8)

    assert server.calls[0].request.headers["authorization"] == "Bearer sk-test-key"


async def test_json_schema_sent_in_openai_form() -> None:
    async with serve(lambda request: '{"answer": "4"}') as (server, model):
        await model.complete(QUESTION, max_tokens=8, json_schema=SCHEMA)

    assert server.calls[0].request.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": SCHEMA, "strict": False},
    }


async def test_json_schema_sent_in_llama_cpp_form() -> None:
    async with ScriptedLLMServer(lambda request: '{"answer": "4"}') as server:
        endpoint = Endpoint(server.base_url, model=server.model, structured_output="json_object")
        async with OpenAIChatModel(endpoint) as model:
            await model.complete(QUESTION, max_tokens=8, json_schema=SCHEMA)

    assert server.calls[0].request.response_format == {"type": "json_object", "schema": SCHEMA}


async def test_no_response_format_in_none_mode() -> None:
    async with ScriptedLLMServer(lambda request: '{"answer": "4"}') as server:
        endpoint = Endpoint(server.base_url, model=server.model, structured_output="none")
        async with OpenAIChatModel(endpoint) as model:
            completion = await model.complete(QUESTION, max_tokens=8, json_schema=SCHEMA)

    assert completion.text == '{"answer": "4"}'
    assert server.calls[0].request.response_format is None


async def test_schema_name_sanitised() -> None:
    schema = {"title": "Plan for: task #3", "type": "object"}
    async with serve(lambda request: "{}") as (server, model):
        await model.complete(QUESTION, max_tokens=8, json_schema=schema)

    response_format = server.calls[0].request.response_format
    assert response_format is not None
    assert response_format["json_schema"]["name"] == "Plan_for_task_3"


async def test_429_waits_for_retry_after() -> None:
    throttled = ScriptedReply(status=429, headers={"Retry-After": "1"}, error_message="slow down")
    handler = reply_sequence(throttled, throttled, "4")
    async with serve(handler) as (server, model):
        completion = await model.complete(QUESTION, max_tokens=8)

    assert completion.text == "4"
    assert completion.attempts == 3
    assert len(server.calls) == 3
    assert gap_s(server.calls[0], server.calls[1]) >= 1.0 - 0.01
    assert gap_s(server.calls[1], server.calls[2]) >= 1.0 - 0.01


async def test_400_not_retried() -> None:
    rejected = ScriptedReply(status=400, error_message="max_tokens is too large: 999999")
    async with serve(lambda request: rejected) as (server, model):
        with pytest.raises(LLMRequestError) as raised:
            await model.complete(QUESTION, max_tokens=999999)

    assert "max_tokens is too large: 999999" in str(raised.value)
    assert "400" in str(raised.value)
    assert raised.value.status_code == 400
    assert isinstance(raised.value.__cause__, openai.BadRequestError)
    assert len(server.calls) == 1


async def test_401_hints_at_api_key() -> None:
    rejected = ScriptedReply(status=401, error_message="invalid api key")
    async with serve(lambda request: rejected) as (server, model):
        with pytest.raises(LLMRequestError, match="DYNTASKMAS_API_KEY") as raised:
            await model.complete(QUESTION, max_tokens=8)

    assert "invalid api key" in str(raised.value)
    assert len(server.calls) == 1


async def test_500_then_success_retried() -> None:
    handler = reply_sequence(ScriptedReply(status=500, error_message="overloaded"), "4")
    async with serve(handler) as (server, model):
        completion = await model.complete(QUESTION, max_tokens=8)

    assert completion.text == "4"
    assert completion.attempts == 2
    assert len(server.calls) == 2


async def test_persistent_500_raises_after_max_attempts() -> None:
    failing = ScriptedReply(status=503, error_message="model is loading")
    async with serve(lambda request: failing) as (server, model):
        with pytest.raises(TransientLLMError) as raised:
            await model.complete(QUESTION, max_tokens=8)

    assert raised.value.status_code == 503
    assert "model is loading" in str(raised.value)
    assert "after 3 attempts" in str(raised.value)
    assert isinstance(raised.value.__cause__, openai.InternalServerError)
    assert len(server.calls) == FAST_RETRIES.max_attempts


async def test_retry_after_too_long_gives_up() -> None:
    throttled = ScriptedReply(status=429, headers={"Retry-After": "3600"})
    async with serve(lambda request: throttled) as (server, model):
        with pytest.raises(TransientLLMError) as raised:
            await model.complete(QUESTION, max_tokens=8)

    assert raised.value.retry_after_s == 3600.0
    assert raised.value.status_code == 429
    assert len(server.calls) == 1
    assert model.endpoint.gate.remaining_s() == 0.0


async def test_last_attempt_429_still_closes_gate() -> None:
    clock = ManualClock()
    throttled = ScriptedReply(status=429, headers={"Retry-After": "2"})
    single_attempt = RetryPolicy(max_attempts=1)
    async with serve(lambda request: throttled, policy=single_attempt, clock=clock) as (_, model):
        with pytest.raises(TransientLLMError):
            await model.complete(QUESTION, max_tokens=8)

    assert model.endpoint.gate.open_at == 2.0


async def test_empty_schema_still_sent() -> None:
    async with serve(lambda request: "{}") as (server, model):
        await model.complete(QUESTION, max_tokens=8, json_schema={})

    response_format = server.calls[0].request.response_format
    assert response_format is not None
    assert response_format["json_schema"]["schema"] == {}


async def test_connection_refused_raises_unavailable() -> None:
    endpoint = Endpoint(f"http://127.0.0.1:{closed_port()}/v1", model="any")
    async with OpenAIChatModel(endpoint, policy=FAST_RETRIES) as model:
        with pytest.raises(EndpointUnavailableError) as raised:
            await model.complete(QUESTION, max_tokens=8)

    assert endpoint.base_url in str(raised.value)
    assert "after 3 attempts" in str(raised.value)
    assert isinstance(raised.value.__cause__, openai.APIConnectionError)


async def test_timeout_retried() -> None:
    # The first reply would come after 60 s, but the server cancels it on exit.
    handler = reply_sequence(ScriptedReply(text="late", delay_s=60.0), "4")
    async with serve(handler, timeout_s=1.0) as (server, model):
        completion = await model.complete(QUESTION, max_tokens=8)

    assert completion.text == "4"
    assert completion.attempts == 2
    assert len(server.calls) == 2
    assert server.calls[1].arrived_at - server.calls[0].arrived_at >= 1.0 - 0.01


async def test_persistent_timeout_raises_transient() -> None:
    slow = ScriptedReply(text="late", delay_s=60.0)
    policy = RetryPolicy(max_attempts=2, base_delay_s=0.001, max_delay_s=0.01)
    async with serve(lambda request: slow, policy=policy, timeout_s=0.3) as (server, model):
        with pytest.raises(TransientLLMError, match="timed out") as raised:
            await model.complete(QUESTION, max_tokens=8)

    assert isinstance(raised.value.__cause__, openai.APITimeoutError)
    assert len(server.calls) == 2


async def test_no_choices_raises_response_error() -> None:
    body = json.dumps(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
    )
    async with serve(lambda request: ScriptedReply(raw_body=body)) as (server, model):
        with pytest.raises(LLMResponseError, match="no choices"):
            await model.complete(QUESTION, max_tokens=8)

    assert len(server.calls) == 1


async def test_null_content_raises_response_error() -> None:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": None, "refusal": "I cannot help"},
        "finish_reason": "stop",
    }
    body = json.dumps(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
    )
    async with serve(lambda request: ScriptedReply(raw_body=body)) as (_, model):
        with pytest.raises(LLMResponseError, match="without text content") as raised:
            await model.complete(QUESTION, max_tokens=8)

    assert "I cannot help" in str(raised.value)


async def test_invalid_json_retried_then_succeeds() -> None:
    handler = reply_sequence(ScriptedReply(raw_body="{not json"), "4")
    async with serve(handler) as (server, model):
        completion = await model.complete(QUESTION, max_tokens=8)

    assert completion.text == "4"
    assert completion.attempts == 2
    assert len(server.calls) == 2


async def test_persistent_invalid_json_raises() -> None:
    async with serve(lambda request: ScriptedReply(raw_body="{not json")) as (server, model):
        with pytest.raises(TransientLLMError, match="not valid JSON"):
            await model.complete(QUESTION, max_tokens=8)

    assert len(server.calls) == FAST_RETRIES.max_attempts


async def test_missing_usage_counts_zero() -> None:
    choice = {"index": 0, "message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}
    body = json.dumps(
        {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
    )
    async with serve(lambda request: ScriptedReply(raw_body=body)) as (_, model):
        completion = await model.complete(QUESTION, max_tokens=8)

    assert completion.text == "4"
    assert completion.usage.prompt_tokens == 0
    assert completion.usage.completion_tokens == 0


def max_overlap(calls: list[RecordedCall]) -> int:
    """Return the most requests the server was handling at one instant."""
    events: list[tuple[float, int]] = []
    for call in calls:
        assert call.finished_at is not None
        events.append((call.arrived_at, 1))
        events.append((call.finished_at, -1))
    # At equal times a finish sorts before an arrival, so touching intervals
    # do not count as overlapping.
    events.sort()
    current = peak = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


async def test_limiter_caps_requests_in_flight() -> None:
    slow = ScriptedReply(text="done", delay_s=0.2)
    async with (
        serve(lambda request: slow, concurrency=2) as (server, model),
        asyncio.TaskGroup() as group,
    ):
        tasks = [group.create_task(model.complete(QUESTION, max_tokens=8)) for _ in range(6)]

    assert all(task.result().text == "done" for task in tasks)
    assert len(server.calls) == 6
    assert server.peak_in_flight == 2
    assert max_overlap(server.calls) == 2
    # Three waves of two 0.2 s requests.
    last_finish = max(call.finished_at or 0.0 for call in server.calls)
    assert last_finish - server.calls[0].arrived_at >= 0.6 - 0.01


async def test_limit_change_takes_effect() -> None:
    release = asyncio.Event()

    async def held_until_released(request: ScriptedRequest) -> str:
        await release.wait()
        return "done"

    async with serve(held_until_released, concurrency=1) as (server, model):
        limiter = model.endpoint.limiter
        async with asyncio.TaskGroup() as group:
            for _ in range(6):
                group.create_task(model.complete(QUESTION, max_tokens=8))

            await server.wait_for_calls(1)
            assert server.in_flight == 1
            assert limiter.waiting == 5

            limiter.limit = 3
            await server.wait_for_calls(3)
            assert server.in_flight == 3
            assert limiter.in_flight == 3
            assert limiter.waiting == 3

            release.set()

    assert len(server.calls) == 6
    assert server.peak_in_flight == 3


async def test_gate_holds_other_callers() -> None:
    """One caller's 429 with Retry-After: 1 also delays the other caller's retry.

    The endpoint runs on a ManualClock, so each retry is blocked on the clock
    until the test advances it, and the deadlines can be checked exactly.
    """
    clock = ManualClock()

    def handler(request: ScriptedRequest) -> ScriptedReply | str:
        if request.index == 0:
            return ScriptedReply(status=429, headers={"Retry-After": "1"})
        if request.index == 1:
            return ScriptedReply(status=500)
        return "done"

    async with (
        serve(handler, concurrency=2, clock=clock) as (server, model),
        asyncio.timeout(10),
        asyncio.TaskGroup() as group,
    ):
        first = group.create_task(model.complete(QUESTION, max_tokens=8))
        second = group.create_task(model.complete(QUESTION, max_tokens=8))

        # Both failed: the 429 caller sleeps 1 s, the 500 caller sleeps its
        # own short backoff (at most 0.01 s).
        await clock.wait_for_sleepers(2)
        deadlines = clock.deadlines()
        assert deadlines[0] <= 0.01
        assert deadlines[1] == 1.0

        # The 500 caller's backoff ends, but the gate keeps it waiting too.
        clock.advance(0.5)
        await clock.wait_for_sleepers(2)
        assert clock.deadlines() == [1.0, 1.0]
        assert len(server.calls) == 2

        clock.advance(0.5)

    assert first.result().attempts == 2
    assert second.result().attempts == 2
    assert len(server.calls) == 4


async def test_429_without_retry_after_closes_gate_for_backoff() -> None:
    clock = ManualClock()
    throttled = ScriptedReply(status=429)
    single_attempt = RetryPolicy(max_attempts=1, base_delay_s=1.0, max_delay_s=1.0)
    async with serve(lambda request: throttled, policy=single_attempt, clock=clock) as (_, model):
        records: list[AttemptRecord] = []
        model.endpoint.attempt_listeners.append(records.append)
        with pytest.raises(TransientLLMError):
            await model.complete(QUESTION, max_tokens=8)

    assert 0.0 < model.endpoint.gate.open_at <= 1.0
    assert model.endpoint.gate.half_open
    assert [(r.status, r.status_code, r.retry_after_s) for r in records] == [
        ("rate_limited", 429, None)
    ]


async def test_every_attempt_reaches_listeners() -> None:
    handler = reply_sequence(
        ScriptedReply(status=429, headers={"Retry-After": "0"}),
        ScriptedReply(text="4", prompt_tokens=12, completion_tokens=3),
    )
    async with serve(handler) as (_, model):
        records: list[AttemptRecord] = []
        model.endpoint.attempt_listeners.append(records.append)
        await model.complete(QUESTION, max_tokens=8)

    assert [r.status for r in records] == ["rate_limited", "ok"]
    assert records[0].retry_after_s == 0.0
    assert (records[1].prompt_tokens, records[1].completion_tokens) == (12, 3)
    assert all(r.endpoint == model.endpoint.name for r in records)
