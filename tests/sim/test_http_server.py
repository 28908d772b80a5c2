"""The simulated server over real loopback HTTP, through the project's OpenAI client.

Every server runs on 127.0.0.1 in the test's event loop. Under ``LATENCY``
a request of p prompt tokens and n output tokens takes
``0.5 + p / 64 + (n - 1) * 0.375`` model seconds when it runs alone.
``SPEEDUP`` runs model time 100 times faster than the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.errors import (
    EndpointUnavailableError,
    LLMRequestError,
    TransientLLMError,
)
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.types import ChatMessage
from dyntaskmas.sim.content import estimate_prompt_tokens, filler_text, hashed_embedding
from dyntaskmas.sim.faults import FaultConfig
from dyntaskmas.sim.http_server import SimulatedLLMServer
from dyntaskmas.sim.latency import LatencyModel
from dyntaskmas.sim.server_model import ServerConfig

LATENCY = LatencyModel.linear(
    prefill_base_s=0.5, prefill_s_per_token=1 / 64, decode_base_s=0.25, decode_s_per_request=0.125
)
SPEEDUP = 100.0
MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "What is 2 + 2?")]
PROMPT_TOKENS = estimate_prompt_tokens(message.content for message in MESSAGES)
NO_RETRIES = RetryPolicy(max_attempts=1)


def fast_retries(attempts: int) -> RetryPolicy:
    return RetryPolicy(max_attempts=attempts, base_delay_s=0.001, max_delay_s=0.005)


@contextlib.asynccontextmanager
async def simulated(
    faults: FaultConfig | None = None, *, slots: int = 4, **options: Any
) -> AsyncIterator[SimulatedLLMServer]:
    server = SimulatedLLMServer(
        ServerConfig(slots=slots, latency=LATENCY), faults=faults, speedup=SPEEDUP, **options
    )
    async with server:
        yield server


@contextlib.asynccontextmanager
async def client_of(
    server: SimulatedLLMServer,
    policy: RetryPolicy = NO_RETRIES,
    *,
    timeout_s: float = 10.0,
    concurrency: int = 8,
) -> AsyncIterator[OpenAIChatModel]:
    endpoint = Endpoint(server.base_url, model=server.model, concurrency=concurrency)
    model = OpenAIChatModel(endpoint, policy=policy, timeout_s=timeout_s, rng=random.Random(0))
    async with model:
        yield model


@contextlib.asynccontextmanager
async def sdk_client(server: SimulatedLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


async def test_completion_has_usage_and_filler_text() -> None:
    async with simulated() as server, client_of(server) as model:
        completion = await model.complete(MESSAGES, max_tokens=5)

    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == 5
    assert len(completion.text.split()) == 5
    assert completion.finish_reason == "length"
    assert completion.model == server.model
    assert completion.attempts == 1


async def test_completion_takes_simulated_latency() -> None:
    async with simulated() as server, client_of(server) as model:
        completion = await model.complete(MESSAGES, max_tokens=9)

    model_latency_s = 0.5 + PROMPT_TOKENS / 64 + 8 * 0.375
    assert completion.latency_s >= model_latency_s / SPEEDUP


async def test_stats_count_finished_request() -> None:
    async with simulated(slots=2) as server, client_of(server) as model:
        await model.complete(MESSAGES, max_tokens=4)
        stats = server.stats()

    assert stats["finished"] == 1
    assert stats["output_tokens"] == 4
    assert stats["prompt_tokens"] == PROMPT_TOKENS
    assert stats["slots"] == 2
    assert 0.0 < stats["utilisation"] <= 0.5
    assert stats["requests"]["received"] == 1
    assert stats["faults"]["rate_limited"] == 0


async def test_concurrent_requests_share_decode_steps() -> None:
    async with simulated(slots=8) as server, client_of(server) as model:
        completions = await asyncio.gather(
            *(model.complete(MESSAGES, max_tokens=40) for _ in range(8))
        )
        stats = server.stats()

    assert all(c.usage.completion_tokens == 40 for c in completions)
    # Alone, the 8 requests would need 8 * 39 decode steps.
    assert stats["decode_steps"] < 8 * 39


async def test_stats_and_reset_over_http() -> None:
    async with simulated() as server, client_of(server) as model:
        await model.complete(MESSAGES, max_tokens=3)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{server.base_url}/sim/stats") as response:
                before = await response.json()
            async with session.post(f"{server.base_url}/sim/reset") as response:
                after = await response.json()

    assert before["finished"] == 1
    assert before["output_tokens_per_s"] > 0
    assert after["finished"] == 0
    assert after["output_tokens"] == 0


async def test_stream_follows_openai_chunk_order() -> None:
    async with simulated() as server, sdk_client(server) as client:
        stream = await client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Count."}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]

    first, *middle, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert len(middle) == 6
    assert "".join(c.choices[0].delta.content or "" for c in middle).split() == (
        filler_text(6, offset=1).split()
    )
    assert all(c.choices[0].finish_reason is None for c in middle)
    assert finish.choices[0].finish_reason == "length"
    assert usage.choices == []
    assert usage.usage is not None
    assert usage.usage.completion_tokens == 6
    assert usage.usage.prompt_tokens == 2


async def test_stream_without_usage_ends_at_finish() -> None:
    async with simulated() as server, sdk_client(server) as client:
        stream = await client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Count."}],
            max_tokens=2,
            stream=True,
        )
        chunks = [chunk async for chunk in stream]

    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(chunk.usage is None for chunk in chunks)


async def test_output_lengths_draw_natural_stops() -> None:
    from dyntaskmas.sim.workload_sizes import TokenLengths

    lengths = TokenLengths((3,))
    async with simulated(output_lengths=lengths) as server, client_of(server) as model:
        short = await model.complete(MESSAGES, max_tokens=10)
        capped = await model.complete(MESSAGES, max_tokens=2)

    assert short.usage.completion_tokens == 3
    assert short.finish_reason == "stop"
    assert capped.usage.completion_tokens == 2
    assert capped.finish_reason == "length"


async def test_rate_limit_sends_retry_after() -> None:
    faults = FaultConfig(rate_429=1.0, retry_after_s=0.05)
    async with simulated(faults) as server, aiohttp.ClientSession() as session:
        url = f"{server.base_url}/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with session.post(url, json=body) as response:
            status = response.status
            headers = response.headers
            error = (await response.json())["error"]

    assert status == 429
    assert headers["Retry-After"] == "1"
    assert headers["retry-after-ms"] == "50"
    assert error["type"] == "rate_limit_error"


async def test_rate_limit_is_retried_then_raised() -> None:
    faults = FaultConfig(rate_429=1.0, retry_after_s=0.02)
    async with simulated(faults) as server, client_of(server, fast_retries(3)) as model:
        with pytest.raises(TransientLLMError) as raised:
            await model.complete(MESSAGES, max_tokens=2)

    assert raised.value.status_code == 429
    assert raised.value.retry_after_s == 0.02
    assert server.received == 3
    assert server.stats()["faults"]["rate_limited"] == 3


async def test_server_error_is_retried_then_raised() -> None:
    async with (
        simulated(FaultConfig(rate_500=1.0)) as server,
        client_of(server, fast_retries(2)) as model,
    ):
        with pytest.raises(TransientLLMError) as raised:
            await model.complete(MESSAGES, max_tokens=2)

    assert raised.value.status_code == 500
    assert server.received == 2


async def test_slow_response_times_out_client() -> None:
    faults = FaultConfig(rate_slow=1.0, slow_s=30.0)
    async with simulated(faults) as server, client_of(server, timeout_s=0.2) as model:
        with pytest.raises(TransientLLMError, match="timed out"):
            await model.complete(MESSAGES, max_tokens=2)


async def test_slow_response_adds_delay() -> None:
    faults = FaultConfig(rate_slow=1.0, slow_s=0.2)
    async with simulated(faults) as server, client_of(server) as model:
        completion = await model.complete(MESSAGES, max_tokens=2)

    assert completion.latency_s >= 0.2
    assert completion.usage.completion_tokens == 2


async def test_malformed_body_retried_then_raised() -> None:
    async with (
        simulated(FaultConfig(rate_malformed=1.0)) as server,
        client_of(server, fast_retries(3)) as model,
    ):
        with pytest.raises(TransientLLMError, match="not valid JSON"):
            await model.complete(MESSAGES, max_tokens=2)

    assert server.received == 3


async def test_truncated_body_retried_as_connection_error() -> None:
    async with (
        simulated(FaultConfig(rate_truncated=1.0)) as server,
        client_of(server, fast_retries(2)) as model,
    ):
        with pytest.raises(EndpointUnavailableError):
            await model.complete(MESSAGES, max_tokens=2)

    assert server.received == 2
    assert server.stats()["finished"] == 2


async def test_truncated_stream_ends_before_finish() -> None:
    received: list[Any] = []
    async with (
        simulated(FaultConfig(rate_truncated=1.0)) as server,
        sdk_client(server) as client,
    ):
        stream = await client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Count."}],
            max_tokens=10,
            stream=True,
        )
        with pytest.raises(openai.APIConnectionError):
            async for chunk in stream:
                received.append(chunk)

    assert 0 < len(received) < 12
    assert all(chunk.choices[0].finish_reason is None for chunk in received)


async def test_malformed_stream_chunk_fails_to_parse() -> None:
    async with (
        simulated(FaultConfig(rate_malformed=1.0)) as server,
        sdk_client(server) as client,
    ):
        stream = await client.chat.completions.create(
            model=server.model,
            messages=[{"role": "user", "content": "Count."}],
            max_tokens=3,
            stream=True,
        )
        with pytest.raises(json.JSONDecodeError):
            async for _ in stream:
                pass


async def test_mixed_faults_complete_with_retries() -> None:
    faults = FaultConfig(
        rate_429=0.1,
        retry_after_s=0.01,
        rate_500=0.1,
        rate_truncated=0.05,
        rate_slow=0.05,
        slow_s=0.01,
    )
    async with (
        simulated(faults, seed=7) as server,
        client_of(server, fast_retries(10), concurrency=4) as model,
    ):
        completions = await asyncio.gather(
            *(model.complete(MESSAGES, max_tokens=3) for _ in range(24))
        )
        stats = server.stats()

    injected = sum(stats["faults"].values())
    assert len(completions) == 24
    assert all(c.usage.completion_tokens == 3 for c in completions)
    assert injected > 0
    assert sum(c.attempts for c in completions) == server.received
    assert server.received == 24 + injected - stats["faults"]["slow"]


async def test_fault_sequence_repeats_for_seed() -> None:
    faults = FaultConfig(rate_500=0.5)

    async def statuses() -> list[int]:
        async with simulated(faults, seed=3) as server, aiohttp.ClientSession() as session:
            url = f"{server.base_url}/chat/completions"
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            result = []
            for _ in range(12):
                async with session.post(url, json=body) as response:
                    result.append(response.status)
            return result

    first = await statuses()
    second = await statuses()

    assert first == second
    assert set(first) == {200, 500}


async def test_invalid_max_tokens_is_rejected() -> None:
    async with simulated() as server, aiohttp.ClientSession() as session:
        url = f"{server.base_url}/chat/completions"
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}
        async with session.post(url, json=body) as response:
            status = response.status
            error = (await response.json())["error"]

    assert status == 400
    assert error["param"] == "max_tokens"


async def test_missing_messages_are_rejected() -> None:
    async with simulated() as server, aiohttp.ClientSession() as session:
        url = f"{server.base_url}/chat/completions"
        async with session.post(url, json={"model": "m"}) as response:
            status = response.status
            error = (await response.json())["error"]

    assert status == 400
    assert error["param"] == "messages"


async def test_prompt_beyond_context_is_client_error() -> None:
    server = SimulatedLLMServer(
        ServerConfig(latency=LATENCY, max_context_tokens=4), speedup=SPEEDUP
    )
    async with server, client_of(server, fast_retries(3)) as model:
        with pytest.raises(LLMRequestError) as raised:
            await model.complete([ChatMessage("user", "x" * 64)], max_tokens=2)

    assert raised.value.status_code == 400
    assert server.received == 1


async def test_embeddings_match_hashed_vectors() -> None:
    texts = ["the nile is long", "the amazon is wide"]
    async with simulated() as server, sdk_client(server) as client:
        default = await client.embeddings.create(model=server.model, input=texts)
        floats = await client.embeddings.create(
            model=server.model, input=texts[0], encoding_format="float"
        )

    assert [item.index for item in default.data] == [0, 1]
    assert len(default.data[0].embedding) == 64
    assert default.data[1].embedding == pytest.approx(hashed_embedding(texts[1], 64), abs=1e-6)
    assert floats.data[0].embedding == hashed_embedding(texts[0], 64)
    # 16 and 18 characters: 4 and 5 tokens at four characters per token.
    assert default.usage.prompt_tokens == 9


async def test_embeddings_take_requested_dimensions() -> None:
    async with simulated() as server, sdk_client(server) as client:
        response = await client.embeddings.create(
            model=server.model, input="short text", dimensions=8, encoding_format="float"
        )

    assert len(response.data[0].embedding) == 8


async def test_models_lists_served_model() -> None:
    async with simulated(model="sim-test") as server, sdk_client(server) as client:
        models = [model.id async for model in client.models.list()]

    assert models == ["sim-test"]


async def test_engine_runs_unchanged_over_http() -> None:
    roles = {"worker": "does the step it is given"}
    specs = [
        TaskSpec(id="a", description="Step a", role="worker"),
        TaskSpec(id="b", description="Step b", role="worker"),
        TaskSpec(id="c", description="Step c", role="worker", depends_on=("a", "b")),
    ]
    async with simulated() as server, client_of(server) as model:
        pool = AgentPool(build_agents(2, roles, {"sim": model}))
        engine = Engine(pool, config=EngineConfig(roles=roles, work_max_tokens=4))
        result = await engine.run_graph(specs)

    assert result.status == "succeeded"
    assert result.llm_calls == 3
    assert result.usage.completion_tokens == 12
