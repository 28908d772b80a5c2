"""Tests of ScriptedLLMServer itself: routes, error shape, streaming, records."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import openai
import pytest

from dyntaskmas.llm.scripted import (
    ScriptedLLMServer,
    ScriptedReply,
    ScriptedRequest,
    reply_sequence,
)


def client_for(server: ScriptedLLMServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="not-needed", max_retries=0)


async def test_base_url_on_loopback() -> None:
    async with ScriptedLLMServer(lambda request: "ok") as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.port > 0


async def test_models_lists_model() -> None:
    async with ScriptedLLMServer(lambda request: "ok", model="tiny") as server:
        client = client_for(server)
        models = await client.models.list()
        await client.close()

    assert [model.id for model in models.data] == ["tiny"]


async def test_request_recorded() -> None:
    async with ScriptedLLMServer(lambda request: "ok") as server:
        client = client_for(server)
        await client.chat.completions.create(
            model="tiny",
            messages=[
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "first answer"},
                {"role": "user", "content": "second question"},
            ],
            max_tokens=5,
        )
        await client.close()

    [call] = server.calls
    assert call.request.index == 0
    assert call.request.model == "tiny"
    assert call.request.max_tokens == 5
    assert call.request.last_user_text == "second question"
    assert call.status == 200
    assert call.finished_at is not None
    assert call.finished_at >= call.arrived_at


async def test_async_handler_and_usage_override() -> None:
    async def handler(request: ScriptedRequest) -> ScriptedReply:
        await asyncio.sleep(0)
        return ScriptedReply(
            text="hi", prompt_tokens=7, completion_tokens=3, finish_reason="length"
        )

    async with ScriptedLLMServer(handler) as server:
        client = client_for(server)
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )
        await client.close()

    assert completion.choices[0].message.content == "hi"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 7
    assert completion.usage.completion_tokens == 3
    assert completion.usage.total_tokens == 10


async def test_default_usage_is_rough_estimate() -> None:
    async with ScriptedLLMServer(lambda request: "12345678") as server:
        client = client_for(server)
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "abcd"}]
        )
        await client.close()

    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 1
    assert completion.usage.completion_tokens == 2


async def post_chat(server: ScriptedLLMServer, **request_options: Any) -> tuple[int, str, Any]:
    """POST to the chat route with aiohttp and return the status, Retry-After and JSON body."""
    url = f"{server.base_url}/chat/completions"
    async with aiohttp.ClientSession() as session, session.post(url, **request_options) as response:
        return response.status, response.headers.get("Retry-After", ""), await response.json()


async def test_error_reply_uses_openai_shape() -> None:
    reply = ScriptedReply(
        status=429, headers={"Retry-After": "3"}, error_message="slow down", error_code="rate"
    )
    chat_request = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    async with ScriptedLLMServer(lambda request: reply) as server:
        status, retry_after, body = await post_chat(server, json=chat_request)

    assert status == 429
    assert retry_after == "3"
    assert body == {
        "error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": "rate"}
    }


async def test_invalid_json_body_rejected() -> None:
    async with ScriptedLLMServer(lambda request: "ok") as server:
        status, _, body = await post_chat(server, data=b"{oops")

    assert status == 400
    assert "not valid JSON" in body["error"]["message"]
    assert server.calls == []


async def test_handler_exception_gives_500() -> None:
    def broken(request: ScriptedRequest) -> str:
        raise KeyError("no script for this prompt")

    async with ScriptedLLMServer(broken) as server:
        client = client_for(server)
        with pytest.raises(openai.InternalServerError) as raised:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}]
            )
        await client.close()

    assert "no script for this prompt" in raised.value.message
    assert len(server.handler_errors) == 1
    assert isinstance(server.handler_errors[0], KeyError)
    assert server.calls[0].status == 500


async def test_streaming_with_usage() -> None:
    async with ScriptedLLMServer(lambda request: "the quick brown fox") as server:
        client = client_for(server)
        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        await client.close()

    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "the quick brown fox"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert server.calls[0].request.stream


async def test_streaming_without_usage() -> None:
    async with ScriptedLLMServer(lambda request: "a b") as server:
        client = client_for(server)
        stream = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        chunks = [chunk async for chunk in stream]
        await client.close()

    assert all(chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_reply_sequence_repeats_last() -> None:
    handler = reply_sequence("one", "two")
    requests = [ScriptedRequest(index=i, body={}, headers={}) for i in range(4)]

    replies = [handler(request) for request in requests]

    assert replies == ["one", "two", "two", "two"]


async def test_wait_for_calls_times_out() -> None:
    async with ScriptedLLMServer(lambda request: "ok") as server:
        with pytest.raises(TimeoutError, match="received 0 chat requests"):
            await server.wait_for_calls(1, timeout_s=0.05)


async def test_stop_cancels_slow_handlers() -> None:
    slow = ScriptedReply(text="late", delay_s=60.0)
    async with ScriptedLLMServer(lambda request: slow) as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key="not-needed", max_retries=0, timeout=30.0
        )
        request = asyncio.create_task(
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        )
        await server.wait_for_calls(1)

    with pytest.raises(openai.APIConnectionError):
        await request
    await client.close()
    assert server.calls[0].status is None
    assert server.calls[0].finished_at is not None


def test_invalid_reply_rejected() -> None:
    with pytest.raises(ValueError, match="delay_s"):
        ScriptedReply(delay_s=-1.0)
    with pytest.raises(ValueError, match="status"):
        ScriptedReply(status=42)
