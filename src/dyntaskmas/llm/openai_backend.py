"""Chat completions over HTTP from any OpenAI-compatible server, with retries.

:class:`OpenAIChatModel` implements :class:`~dyntaskmas.llm.types.ChatModel`
with the official ``openai`` SDK. The SDK's own retries are switched off
(``max_retries=0``) because retries must share state across callers: each
attempt waits on the endpoint's :class:`~dyntaskmas.llm.limiter.BackoffGate`,
then takes a slot of its :class:`~dyntaskmas.llm.limiter.ConcurrencyLimiter`,
and the delays come from a :class:`~dyntaskmas.llm.retry.RetryPolicy`. That
loop is :func:`~dyntaskmas.llm.attempts.call_with_retries`, shared with the
in-process simulator.

Which failures are retried:

- 429, 408 and 5xx responses, and timeouts: raised as
  :class:`TransientLLMError` once the attempts are used up;
- connection failures: raised as :class:`EndpointUnavailableError`;
- other 4xx responses: raised at once as :class:`LLMRequestError`;
- an answer without usable text: raised at once as :class:`LLMResponseError`;
- a response stream that breaks, carries an error event or ends before
  its finish reason: retried like a 5xx, and raised as
  :class:`TransientLLMError`.

An endpoint with ``stream`` set gets streamed requests
(``stream_options.include_usage`` on), assembled by
:class:`~dyntaskmas.llm.streaming.StreamAssembler`; the completion then also
carries its time to first token.

:func:`translate_error` is the only place where SDK exceptions become
dyntaskmas errors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessageParam

from dyntaskmas.errors import (
    EndpointUnavailableError,
    LLMError,
    LLMRequestError,
    LLMResponseError,
    LLMTimeoutError,
    TransientLLMError,
)
from dyntaskmas.llm.attempts import call_with_retries
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.retry import RetryPolicy, retry_after_from_headers
from dyntaskmas.llm.streaming import StreamAssembler
from dyntaskmas.llm.types import ChatMessage, Completion, ToolCall, ToolSpec, Usage

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 120.0

#: 4xx statuses that are retried: 429, and 408, the server's own request timeout.
_RETRYABLE_4XX = frozenset({408, 429})
#: Server messages longer than this are cut in error messages.
_MAX_SERVER_MESSAGE_CHARS = 500
#: OpenAI requires schema names to match ``^[a-zA-Z0-9_-]{1,64}$``.
_SCHEMA_NAME_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]+")


class OpenAIChatModel:
    """A :class:`~dyntaskmas.llm.types.ToolCallingModel` that calls one :class:`Endpoint`.

    Several models may share one endpoint; they then share its concurrency
    limit and backoff gate. ``timeout_s`` bounds each HTTP attempt, not the
    time spent waiting for a slot or for the gate. On a streamed endpoint it
    bounds the wait for each chunk instead (the SDK's read timeout), so a
    long answer that keeps arriving is not cut off. ``rng`` draws the retry
    jitter; pass a seeded one for reproducible delays.

    Close it with :meth:`aclose`, or use it as an async context manager.
    """

    supports_tools = True

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        policy: RetryPolicy | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        rng: random.Random | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy if policy is not None else RetryPolicy()
        self.timeout_s = timeout_s
        self._rng = rng if rng is not None else random.Random()
        self._client = openai.AsyncOpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            max_retries=0,
            timeout=timeout_s,
        )

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> Completion:
        """Send one chat completion request, retrying transient failures.

        ``tools`` are offered in OpenAI's ``tools`` form; the tool calls the
        model makes come back in ``Completion.tool_calls``, unchecked.
        Raises :class:`LLMRequestError`, :class:`LLMResponseError`,
        :class:`TransientLLMError` or :class:`EndpointUnavailableError`.
        """
        endpoint = self.endpoint
        message_params = [_message_param(message) for message in messages]
        extra_body = None
        if json_schema is not None and endpoint.structured_output != "none":
            extra_body = _response_format_body(json_schema, endpoint)
        if tools:
            extra_body = {**(extra_body or {}), "tools": [_tool_param(tool) for tool in tools]}

        async def attempt(attempts: int) -> Completion:
            started = endpoint.clock.now()
            try:
                # NOTE: max_tokens is what llama.cpp, vLLM and Ollama read.
                # OpenAI's reasoning models reject it and need
                # max_completion_tokens instead, which is not sent yet.
                response = await self._client.chat.completions.create(
                    model=endpoint.model,
                    messages=message_params,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    extra_body=extra_body,
                )
            except (openai.OpenAIError, json.JSONDecodeError) as exc:
                raise translate_error(
                    exc,
                    url=f"{endpoint.base_url}/chat/completions",
                    attempts=attempts,
                    now_epoch_s=time.time(),
                ) from exc
            latency_s = endpoint.clock.now() - started
            return _completion_from_response(
                response, endpoint=endpoint, latency_s=latency_s, attempts=attempts
            )

        async def streamed_attempt(attempts: int) -> Completion:
            body = {
                "model": endpoint.model,
                "messages": message_params,
                "max_tokens": max_tokens,
                "temperature": temperature,
                **(extra_body or {}),
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            return await self._streamed_attempt(body, attempts)

        chosen = streamed_attempt if endpoint.stream else attempt
        return await call_with_retries(endpoint, chosen, policy=self.policy, rng=self._rng)

    async def _streamed_attempt(self, body: Mapping[str, Any], attempts: int) -> Completion:
        """Send one streamed request and assemble its chunks, measuring the time to first token."""
        endpoint = self.endpoint
        url = f"{endpoint.base_url}/chat/completions"
        started = endpoint.clock.now()
        assembler = StreamAssembler()
        first_token_s: float | None = None
        stream_started = False
        try:
            # chat.completions.create() would build a pydantic model of every
            # chunk: 27.5 ms of client CPU per 256-token call against 9.3 ms
            # this way (scripts/bench_streaming.py, docs/benchmarks.md).
            # Posting with cast_to=object keeps the SDK's HTTP, SSE decoding
            # and errors, and yields each chunk as parsed JSON.
            stream = await self._client.post(
                "/chat/completions",
                body=body,
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            stream_started = True
            async with stream:
                async for chunk in stream:
                    assembler.add(chunk)
                    if first_token_s is None and assembler.has_output:
                        first_token_s = endpoint.clock.now() - started
        except (openai.OpenAIError, json.JSONDecodeError) as exc:
            raise translate_error(
                exc,
                url=url,
                attempts=attempts,
                now_epoch_s=time.time(),
                stream_chunks=assembler.chunks if stream_started else None,
            ) from exc
        completion = assembler.completion(
            where=url,
            default_model=endpoint.model,
            latency_s=endpoint.clock.now() - started,
            attempts=attempts,
        )
        return dataclasses.replace(completion, time_to_first_token_s=first_token_s)


def translate_error(
    exc: Exception,
    *,
    url: str,
    attempts: int,
    now_epoch_s: float,
    stream_chunks: int | None = None,
) -> LLMError:
    """Translate an exception from the ``openai`` SDK into a dyntaskmas error.

    ``url`` names the request in messages when the exception carries none.
    ``attempts`` is the number of attempts made so far, for the message.
    ``now_epoch_s`` is the wall-clock time, used to read a Retry-After date.
    ``stream_chunks`` is the number of chunks received when the error broke
    off a response stream that had started, and None otherwise: a
    connection error then means a cut stream, not an unreachable server.
    Exceptions that are not from the SDK or its JSON decoding become a plain
    :class:`LLMError`.
    """
    url = _request_url(exc, default=url)
    tried = f"after {attempts} attempt{'s' if attempts != 1 else ''}"

    # APITimeoutError subclasses APIConnectionError, so it is checked first.
    if isinstance(exc, openai.APITimeoutError):
        return LLMTimeoutError(
            f"request to {url} timed out {tried}; "
            f"raise the request timeout (timeout_s) or lower the endpoint's concurrency"
        )

    if isinstance(exc, openai.APIConnectionError) and stream_chunks is not None:
        # The server sent response headers, so it is reachable; the stream broke off in transit.
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return TransientLLMError(
            f"the response stream from {url} broke off after {stream_chunks} chunks, on "
            f"attempt {attempts} ({type(cause).__name__}: {cause}); the server or a proxy "
            f"closed the connection early, so retry later, or turn streaming off for this "
            f"endpoint if it keeps happening"
        )

    if type(exc) is openai.APIError and stream_chunks is not None:
        # The SDK raises the bare APIError for an error event inside a stream:
        # the server failed part-way through the answer, as a 5xx would.
        return TransientLLMError(
            f"the response stream from {url} carried an error after {stream_chunks} chunks, "
            f"on attempt {attempts}: {exc.message}; the server failed while answering, "
            f"so retry later or lower the endpoint's concurrency"
        )

    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        return EndpointUnavailableError(
            f"cannot connect to {url} {tried}: {type(cause).__name__}: {cause}; "
            f"check that the server is running and that the base URL is right"
        )

    if isinstance(exc, openai.APIResponseValidationError):
        return LLMResponseError(
            f"{url} returned a response that does not match the chat completion format "
            f"(HTTP {exc.status_code}): {exc.message}; check that the endpoint is "
            f"OpenAI-compatible",
            status_code=exc.status_code,
        )

    if isinstance(exc, openai.APIStatusError):
        return _translate_status_error(exc, url=url, tried=tried, now_epoch_s=now_epoch_s)

    if isinstance(exc, openai.LengthFinishReasonError | openai.ContentFilterFinishReasonError):
        return LLMResponseError(f"{url} returned an unusable completion: {exc}")

    if isinstance(exc, json.JSONDecodeError):
        # A body cut or garbled on the way is the usual cause, so it is retried
        # like a 5xx; a server that never sends JSON fails after every attempt.
        return TransientLLMError(
            f"{url} returned a body that is not valid JSON {tried} ({exc}); "
            f"check that the endpoint is OpenAI-compatible"
        )

    return LLMError(f"chat completion request to {url} failed: {type(exc).__name__}: {exc}")


def _translate_status_error(
    exc: openai.APIStatusError, *, url: str, tried: str, now_epoch_s: float
) -> LLMError:
    status = exc.status_code
    server_message = _server_message(exc)

    if status >= 500 or status in _RETRYABLE_4XX:
        retry_after_s = retry_after_from_headers(exc.response.headers, now_epoch_s=now_epoch_s)
        requested_wait = "" if retry_after_s is None else f" (Retry-After {retry_after_s:g} s)"
        return TransientLLMError(
            f"{url} returned HTTP {status}{requested_wait} {tried}: {server_message}; "
            f"the server is overloaded or failing, so retry later or lower the "
            f"endpoint's concurrency",
            status_code=status,
            retry_after_s=retry_after_s,
        )

    return LLMRequestError(
        f"{url} rejected the request with HTTP {status}: {server_message}; "
        f"{_hint_for_status(status)}",
        status_code=status,
    )


def _hint_for_status(status: int) -> str:
    if status in (401, 403):
        return "check the API key (DYNTASKMAS_API_KEY or OPENAI_API_KEY)"
    if status == 404:
        return "check the base URL and the model name"
    return "the request is invalid for this server, so fix it before retrying"


def _server_message(exc: openai.APIStatusError) -> str:
    """Return the message the server put in its error body, or the SDK's summary."""
    body = exc.body
    message: object = None
    if isinstance(body, Mapping):
        # The SDK has already unwrapped OpenAI's {"error": {...}} envelope;
        # FastAPI-based servers (llama-cpp-python) send {"detail": ...} instead.
        message = body.get("message") or body.get("detail")
    elif isinstance(body, str) and body:
        message = body
    text = str(message) if message else exc.message
    if len(text) > _MAX_SERVER_MESSAGE_CHARS:
        text = text[:_MAX_SERVER_MESSAGE_CHARS] + "..."
    return text


def _request_url(exc: Exception, *, default: str) -> str:
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    return str(url) if url is not None else default


def _tool_param(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


def _message_param(message: ChatMessage) -> ChatCompletionMessageParam:
    if message.role == "tool":
        return {
            "role": "tool",
            "content": message.content,
            "tool_call_id": message.tool_call_id or "",
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in message.tool_calls
            ],
        }
    if message.role == "system":
        return {"role": "system", "content": message.content}
    if message.role == "assistant":
        return {"role": "assistant", "content": message.content}
    return {"role": "user", "content": message.content}


def _response_format_body(json_schema: Mapping[str, Any], endpoint: Endpoint) -> dict[str, Any]:
    # The SDK's typed response_format parameter has no "schema" key for the
    # llama-cpp-python form, so both forms go through extra_body, which the
    # SDK merges unchanged into the request JSON.
    schema = dict(json_schema)
    if endpoint.structured_output == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(schema), "schema": schema, "strict": False},
        }
    }


def _schema_name(schema: Mapping[str, Any]) -> str:
    title = schema.get("title")
    if isinstance(title, str):
        name = _SCHEMA_NAME_INVALID_CHARS.sub("_", title).strip("_")[:64]
        if name:
            return name
    return "response"


def _completion_from_response(
    response: object, *, endpoint: Endpoint, latency_s: float, attempts: int
) -> Completion:
    # The SDK builds the response without validation. A server that sends
    # another shape gives missing attributes rather than an error, so every
    # field used here is checked.
    where = f"endpoint {endpoint.name!r} ({endpoint.base_url})"
    if not isinstance(response, ChatCompletion):
        raise LLMResponseError(
            f"{where} returned {type(response).__name__} instead of a chat completion; "
            f"check that the endpoint is OpenAI-compatible"
        )

    choices = getattr(response, "choices", None)
    if not choices:
        raise LLMResponseError(f"{where} returned a chat completion with no choices")

    choice = choices[0]
    message = getattr(choice, "message", None)
    content = getattr(message, "content", None)
    finish_reason = getattr(choice, "finish_reason", None)
    tool_calls = _tool_calls(message)
    if content is None and tool_calls:
        content = ""
    if not isinstance(content, str):
        refusal = getattr(message, "refusal", None)
        detail = f"; refusal: {refusal}" if refusal else ""
        raise LLMResponseError(
            f"{where} returned a choice without text content "
            f"(finish_reason={finish_reason!r}{detail})"
        )

    usage = getattr(response, "usage", None)
    model = getattr(response, "model", None)
    return Completion(
        text=content,
        usage=Usage(
            prompt_tokens=_token_count(getattr(usage, "prompt_tokens", None)),
            completion_tokens=_token_count(getattr(usage, "completion_tokens", None)),
        ),
        model=model if isinstance(model, str) and model else endpoint.model,
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        latency_s=latency_s,
        attempts=attempts,
        tool_calls=tool_calls,
    )


def _tool_calls(message: object) -> tuple[ToolCall, ...]:
    """Return the message's function tool calls; fields of the wrong type become ""."""
    calls = getattr(message, "tool_calls", None)
    if not isinstance(calls, list):
        return ()
    found = []
    for index, call in enumerate(calls):
        function = getattr(call, "function", None)
        call_id = getattr(call, "id", None)
        name = getattr(function, "name", None)
        arguments = getattr(function, "arguments", None)
        found.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) and call_id else f"call-{index}",
                name=name if isinstance(name, str) else "",
                arguments=arguments if isinstance(arguments, str) else "",
            )
        )
    return tuple(found)


def _token_count(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0
