"""Streamed chat completions: OpenAIChatModel against a real ScriptedLLMServer.

Each request goes through the openai SDK over HTTP on 127.0.0.1 with
``stream=True``. The scripted server sends OpenAI's chunk sequence, or a
cut or unfinished one. Timing checks assert only bounds that hold on a
loaded machine.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.errors import LLMRequestError, LLMResponseError, TransientLLMError
from dyntaskmas.llm.attempts import AttemptRecord
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.scripted import (
    ScriptedLLMServer,
    ScriptedReply,
    StreamEnd,
    reply_sequence,
)
from dyntaskmas.llm.streaming import StreamAssembler
from dyntaskmas.llm.types import ChatMessage, ToolCall, ToolSpec

QUESTION = [ChatMessage("user", "Name the capital of France.")]
FAST_RETRIES = RetryPolicy(max_attempts=3, base_delay_s=0.001, max_delay_s=0.01)
LOOKUP = ToolSpec(
    "lookup",
    "Look a word up.",
    {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]},
)


def streaming_model(server: ScriptedLLMServer, *, stream: bool = True) -> OpenAIChatModel:
    endpoint = Endpoint(server.base_url, model=server.model, stream=stream)
    return OpenAIChatModel(endpoint, policy=FAST_RETRIES, timeout_s=10.0, rng=random.Random(0))


async def test_streamed_text_usage_and_ttft() -> None:
    reply = ScriptedReply(
        text="The capital is Paris.", prompt_tokens=9, completion_tokens=5, delay_s=0.05
    )
    async with (
        ScriptedLLMServer(lambda request: reply) as server,
        streaming_model(server) as model,
    ):
        records: list[AttemptRecord] = []
        model.endpoint.attempt_listeners.append(records.append)
        completion = await model.complete(QUESTION, max_tokens=16)

    request = server.calls[0].request
    assert request.stream
    assert request.body["stream_options"] == {"include_usage": True}
    assert completion.text == "The capital is Paris."
    assert completion.finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 5)
    assert completion.model == server.model
    assert completion.attempts == 1
    assert completion.time_to_first_token_s is not None
    # The server waited 0.05 s before its first byte.
    assert completion.time_to_first_token_s >= 0.05
    assert completion.time_to_first_token_s <= completion.latency_s
    assert [record.time_to_first_token_s for record in records] == [
        completion.time_to_first_token_s
    ]


async def test_streamed_request_body_matches_unstreamed() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    async with (
        ScriptedLLMServer(lambda request: '{"city": "Paris"}') as server,
        streaming_model(server) as model,
        streaming_model(server, stream=False) as plain_model,
    ):
        await model.complete(QUESTION, max_tokens=16, temperature=0.5, json_schema=schema)
        await plain_model.complete(QUESTION, max_tokens=16, temperature=0.5, json_schema=schema)

    streamed, plain = (call.request.body for call in server.calls)
    assert streamed["stream"] is True
    assert {k: v for k, v in streamed.items() if k not in ("stream", "stream_options")} == plain


async def test_unstreamed_call_has_no_ttft() -> None:
    async with (
        ScriptedLLMServer(lambda request: "Paris") as server,
        streaming_model(server, stream=False) as model,
    ):
        completion = await model.complete(QUESTION, max_tokens=16)

    assert not server.calls[0].request.stream
    assert completion.text == "Paris"
    assert completion.time_to_first_token_s is None


async def test_stream_without_usage_counts_zero() -> None:
    reply = ScriptedReply(text="Paris", stream_usage=False)
    async with (
        ScriptedLLMServer(lambda request: reply) as server,
        streaming_model(server) as model,
    ):
        completion = await model.complete(QUESTION, max_tokens=16)

    assert completion.text == "Paris"
    assert completion.usage.total_tokens == 0


async def test_streamed_tool_call_deltas_assembled() -> None:
    reply = ScriptedReply(
        tool_calls=(
            ("call_a", "lookup", '{"word": "capital"}'),
            ("call_b", "lookup", '{"word": "France"}'),
        ),
        prompt_tokens=20,
        completion_tokens=12,
    )
    async with (
        ScriptedLLMServer(lambda request: reply) as server,
        streaming_model(server) as model,
    ):
        completion = await model.complete(QUESTION, max_tokens=32, tools=[LOOKUP])

    assert server.calls[0].request.tool_names == ["lookup"]
    assert completion.finish_reason == "tool_calls"
    assert completion.text == ""
    assert completion.tool_calls == (
        ToolCall("call_a", "lookup", '{"word": "capital"}'),
        ToolCall("call_b", "lookup", '{"word": "France"}'),
    )
    assert completion.usage.completion_tokens == 12
    assert completion.time_to_first_token_s is not None


async def test_finished_stream_without_done_accepted() -> None:
    reply = ScriptedReply(text="Paris", stream_end="eof")
    async with (
        ScriptedLLMServer(lambda request: reply) as server,
        streaming_model(server) as model,
    ):
        completion = await model.complete(QUESTION, max_tokens=16)

    assert completion.text == "Paris"
    assert completion.attempts == 1


@pytest.mark.parametrize("end", ["eof", "close", "done"])
async def test_cut_stream_retried(end: StreamEnd) -> None:
    # Two chunks: the role and the first word, without the finish chunk.
    cut = ScriptedReply(text="The capital is Paris.", stream_chunks=2, stream_end=end)
    whole = ScriptedReply(text="The capital is Paris.")
    async with (
        ScriptedLLMServer(reply_sequence(cut, whole)) as server,
        streaming_model(server) as model,
    ):
        records: list[AttemptRecord] = []
        model.endpoint.attempt_listeners.append(records.append)
        completion = await model.complete(QUESTION, max_tokens=16)

    assert completion.text == "The capital is Paris."
    assert completion.attempts == 2
    assert len(server.calls) == 2
    assert [record.status for record in records] == ["server_error", "ok"]


@pytest.mark.parametrize(
    ("end", "words"),
    [("eof", "without a finish reason"), ("close", "broke off after 2 chunks")],
)
async def test_always_cut_stream_raises_transient(end: StreamEnd, words: str) -> None:
    cut = ScriptedReply(text="The capital is Paris.", stream_chunks=2, stream_end=end)
    async with (
        ScriptedLLMServer(lambda request: cut) as server,
        streaming_model(server) as model,
    ):
        with pytest.raises(TransientLLMError, match=words):
            await model.complete(QUESTION, max_tokens=16)

    assert len(server.calls) == FAST_RETRIES.max_attempts


async def test_malformed_chunk_retried() -> None:
    body = 'data: {"choices": [{"index": 0, "delta": {"content": "Pa\n\n'
    broken = ScriptedReply(raw_body=body)
    async with (
        ScriptedLLMServer(reply_sequence(broken, "Paris")) as server,
        streaming_model(server) as model,
    ):
        completion = await model.complete(QUESTION, max_tokens=16)

    assert completion.text == "Paris"
    assert completion.attempts == 2


async def test_error_event_in_stream_retried() -> None:
    body = 'data: {"error": {"message": "engine overloaded", "type": "server_error"}}\n\n'
    failed = ScriptedReply(raw_body=body)
    async with (
        ScriptedLLMServer(reply_sequence(failed, "Paris")) as server,
        streaming_model(server) as model,
    ):
        records: list[AttemptRecord] = []
        model.endpoint.attempt_listeners.append(records.append)
        completion = await model.complete(QUESTION, max_tokens=16)

    assert completion.text == "Paris"
    assert [record.status for record in records] == ["server_error", "ok"]


async def test_error_status_before_stream_not_retried_as_cut() -> None:
    rejected = ScriptedReply(status=400, error_message="max_tokens is too large")
    async with (
        ScriptedLLMServer(lambda request: rejected) as server,
        streaming_model(server) as model,
    ):
        with pytest.raises(LLMRequestError, match="max_tokens is too large"):
            await model.complete(QUESTION, max_tokens=16)

    assert len(server.calls) == 1


# --- the assembler on plain chunk objects -----------------------------------------


def chunk(
    *,
    content: str | None = None,
    finish: str | None = None,
    tool_calls: list[object] | None = None,
    usage: object = None,
    choices: bool = True,
    refusal: str | None = None,
) -> SimpleNamespace:
    delta = SimpleNamespace(content=content, tool_calls=tool_calls, refusal=refusal)
    listed = [SimpleNamespace(index=0, delta=delta, finish_reason=finish)] if choices else []
    return SimpleNamespace(model="m", choices=listed, usage=usage)


def tool_delta(
    index: int,
    *,
    call_id: str | None = None,
    name: str | None = None,
    arguments: str | None = None,
) -> SimpleNamespace:
    return SimpleNamespace(
        index=index, id=call_id, function=SimpleNamespace(name=name, arguments=arguments)
    )


def assemble(chunks: list[SimpleNamespace]) -> StreamAssembler:
    assembler = StreamAssembler()
    for item in chunks:
        assembler.add(item)
    return assembler


def test_usage_only_final_chunk_read() -> None:
    usage = SimpleNamespace(prompt_tokens=7, completion_tokens=2)
    assembler = assemble(
        [
            chunk(content=""),
            chunk(content="Paris"),
            chunk(finish="stop"),
            chunk(choices=False, usage=usage),
        ]
    )

    completion = assembler.completion(where="test", default_model="d", latency_s=1.0, attempts=1)
    assert completion.text == "Paris"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 2)
    assert assembler.chunks == 4


def test_role_chunk_is_not_output() -> None:
    assembler = assemble([chunk(content="")])

    assert not assembler.has_output
    assembler.add(chunk(content="P"))
    assert assembler.has_output


def test_wrong_typed_fields_skipped() -> None:
    usage = SimpleNamespace(prompt_tokens="many", completion_tokens=-3)
    assembler = assemble(
        [
            SimpleNamespace(model=5, choices="none", usage=None),
            chunk(content="Paris"),
            chunk(finish="stop", usage=usage),
        ]
    )

    completion = assembler.completion(where="test", default_model="d", latency_s=1.0, attempts=1)
    assert completion.text == "Paris"
    assert completion.usage.total_tokens == 0
    assert completion.model == "m"


def test_refusal_without_text_raises() -> None:
    assembler = assemble([chunk(refusal="I cannot help"), chunk(finish="stop")])

    with pytest.raises(LLMResponseError, match="I cannot help"):
        assembler.completion(where="test", default_model="d", latency_s=1.0, attempts=1)


def test_tool_call_without_id_gets_position_id() -> None:
    assembler = assemble(
        [
            chunk(tool_calls=[tool_delta(3, name="look", arguments='{"w"')]),
            chunk(tool_calls=[tool_delta(3, name="up", arguments=": 1}")]),
            chunk(finish="tool_calls"),
        ]
    )

    completion = assembler.completion(where="test", default_model="d", latency_s=1.0, attempts=1)
    assert completion.tool_calls == (ToolCall("call-0", "lookup", '{"w": 1}'),)


@given(
    arguments=st.lists(st.text(max_size=12), min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=12), min_size=4, max_size=4),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_tool_deltas_any_order_reassemble(arguments: list[str], cuts: list[int], seed: int) -> None:
    """Each call's argument pieces, interleaved across calls in any order, join back whole."""
    deltas = []
    for index, text in enumerate(arguments):
        cut = min(cuts[index], len(text))
        head = tool_delta(index, call_id=f"call_{index}", name="lookup", arguments=text[:cut])
        deltas.append([head, tool_delta(index, arguments=text[cut:])])
    order = [index for index, pair in enumerate(deltas) for _ in pair]
    random.Random(seed).shuffle(order)
    assembler = StreamAssembler()
    for index in order:
        # Pieces of one call keep their order; calls interleave freely.
        assembler.add(chunk(tool_calls=[deltas[index].pop(0)]))
    assembler.add(chunk(finish="tool_calls"))

    completion = assembler.completion(where="test", default_model="d", latency_s=1.0, attempts=1)
    assert [call.arguments for call in completion.tool_calls] == arguments
    assert [call.id for call in completion.tool_calls] == [
        f"call_{index}" for index in range(len(arguments))
    ]
    assert [call.name for call in completion.tool_calls] == ["lookup"] * len(arguments)
