"""A scripted OpenAI-compatible HTTP server for tests.

:class:`ScriptedLLMServer` is a real aiohttp server on 127.0.0.1 whose
responses come from a plain handler function, so tests of the engine, the
planner and the backends exercise the real client, HTTP and retry code. The
handler gets a :class:`ScriptedRequest` and returns a :class:`ScriptedReply`
(or a plain string), directly or from a coroutine::

    async with ScriptedLLMServer(lambda request: "4") as server:
        endpoint = Endpoint(server.base_url, model=server.model)
        ...
        assert server.calls[0].request.last_user_text == "What is 2 + 2?"

The server records every request with its arrival and finish times on its
clock (monotonic seconds), so tests can check ordering, overlap and counts.
It serves ``POST /v1/chat/completions``, streamed or not,
``GET /v1/models`` and, when given an ``embeddings`` handler,
``POST /v1/embeddings``. Errors use OpenAI's JSON shape,
``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiohttp import web

from dyntaskmas.clock import Clock, MonotonicClock
from dyntaskmas.llm.openai_http import error_response, message_text, serve_app

logger = logging.getLogger(__name__)

#: Length of the listening socket's queue of pending connections. Linux
#: drops connection attempts beyond it, which stalls those clients for a
#: second or more, so this leaves room above aiohttp's default of 128 for
#: many agents connecting at once.
DEFAULT_BACKLOG = 512

StreamEnd = Literal["done", "eof", "close"]


@dataclass(frozen=True)
class ScriptedRequest:
    """One chat completion request as the scripted server received it."""

    #: 0-based position of this request among all the server received.
    index: int
    #: The parsed JSON body, unchanged.
    body: Mapping[str, Any]
    #: The HTTP request headers, with names in lower case.
    headers: Mapping[str, str]

    @property
    def messages(self) -> list[Mapping[str, Any]]:
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            return []
        return [message for message in messages if isinstance(message, Mapping)]

    @property
    def model(self) -> str | None:
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def max_tokens(self) -> int | None:
        value = self.body.get("max_tokens", self.body.get("max_completion_tokens"))
        return value if isinstance(value, int) else None

    @property
    def temperature(self) -> float | None:
        value = self.body.get("temperature")
        return float(value) if isinstance(value, int | float) else None

    @property
    def response_format(self) -> Mapping[str, Any] | None:
        value = self.body.get("response_format")
        return value if isinstance(value, Mapping) else None

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True

    @property
    def tool_names(self) -> list[str]:
        """The names of the function tools the request offers."""
        tools = self.body.get("tools")
        if not isinstance(tools, list):
            return []
        names = []
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            name = function.get("name") if isinstance(function, Mapping) else None
            if isinstance(name, str):
                names.append(name)
        return names

    @property
    def inputs(self) -> list[str]:
        """The texts of an embeddings request: its ``input``, as a list."""
        value = self.body.get("input")
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [item for item in value if isinstance(item, str)]
        return []

    @property
    def last_user_text(self) -> str:
        """The text of the last user message, or "" when there is none."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message_text(message.get("content"))
        return ""


@dataclass(frozen=True)
class ScriptedReply:
    """The scripted server's response to one request.

    A ``status`` of 400 or more sends an OpenAI error body with
    ``error_message``; otherwise a chat completion with ``text``. Token
    counts default to a rough estimate of four characters per token.
    """

    text: str = ""
    #: Seconds to wait before responding, on the server's clock.
    delay_s: float = 0.0
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    error_message: str | None = None
    #: OpenAI's error ``type``; derived from ``status`` when None.
    error_type: str | None = None
    error_code: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = "stop"
    #: Sent verbatim instead of the JSON body, to simulate a broken server.
    raw_body: str | None = None
    #: Tool calls of the reply as ``(id, name, arguments JSON text)``; with
    #: any, the finish reason is ``tool_calls`` and an empty ``text`` is sent
    #: as null content. A streamed reply sends each call as deltas: the id
    #: and name first, then the arguments in pieces.
    tool_calls: tuple[tuple[str, str, str], ...] = ()
    #: A streamed reply sends only its first ``stream_chunks`` chunks; None sends all.
    stream_chunks: int | None = None
    #: How a streamed reply ends: ``"done"`` sends ``data: [DONE]``, ``"eof"``
    #: ends the body without it, and ``"close"`` closes the connection with
    #: the body unfinished, as a crashed server or proxy does.
    stream_end: StreamEnd = "done"
    #: Whether a streamed reply sends the usage chunk when the request asks
    #: for it; False acts like servers that ignore ``stream_options``.
    stream_usage: bool = True

    def __post_init__(self) -> None:
        if not math.isfinite(self.delay_s) or self.delay_s < 0:
            raise ValueError(f"delay_s must be a finite number >= 0, got {self.delay_s}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {self.status}")
        if self.stream_chunks is not None and self.stream_chunks < 0:
            raise ValueError(f"stream_chunks must be >= 0 or None, got {self.stream_chunks}")
        if self.stream_end not in ("done", "eof", "close"):
            raise ValueError(
                f"stream_end must be 'done', 'eof' or 'close', got {self.stream_end!r}"
            )


ReplyLike = ScriptedReply | str
Handler = Callable[[ScriptedRequest], ReplyLike | Awaitable[ReplyLike]]
#: Returns one vector per input text, or a ScriptedReply with an error status.
EmbeddingsHandler = Callable[[ScriptedRequest], Sequence[Sequence[float]] | ScriptedReply]


@dataclass
class RecordedCall:
    """A request the server received, with its arrival and finish times."""

    request: ScriptedRequest
    arrived_at: float
    #: None while the request is being handled.
    finished_at: float | None = None
    #: The HTTP status sent; None while handling, or if the handler was cancelled.
    status: int | None = None


class ScriptedLLMServer:
    """An OpenAI-compatible server on 127.0.0.1 whose responses come from a handler.

    Use it as an async context manager inside the test's event loop; the
    port is chosen by the OS. A handler that raises gets a 500 reply, and
    the exception is kept in :attr:`handler_errors` so that a test can fail
    on it.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        model: str = "scripted-model",
        clock: Clock | None = None,
        backlog: int = DEFAULT_BACKLOG,
        embeddings: EmbeddingsHandler | None = None,
    ) -> None:
        self.model = model
        self.calls: list[RecordedCall] = []
        #: Embeddings requests, kept apart so that ``calls`` contains chat requests only.
        self.embedding_calls: list[ScriptedRequest] = []
        self._embeddings = embeddings
        self.handler_errors: list[Exception] = []
        self._handler = handler
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._backlog = backlog
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._in_flight = 0
        self._peak_in_flight = 0
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._arrivals: asyncio.Condition | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the scripted server is not running; use it in 'async with'")
        return self._port

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def in_flight(self) -> int:
        """The number of chat completion requests being handled now."""
        return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The largest number of chat completion requests handled at the same time."""
        return self._peak_in_flight

    async def __aenter__(self) -> ScriptedLLMServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening on a free port of 127.0.0.1."""
        if self._runner is not None:
            raise RuntimeError("the scripted server is already running")
        self._arrivals = asyncio.Condition()

        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_post("/v1/embeddings", self._handle_embeddings)

        self._runner, self._port = await serve_app(app, "127.0.0.1", 0, backlog=self._backlog)

    async def stop(self) -> None:
        """Stop the server, cancelling handlers that are still running."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Handlers still sleeping (a test of client timeouts leaves some)
        # would otherwise hold the shutdown for aiohttp's grace period.
        for task in self._handler_tasks:
            task.cancel()
        await runner.cleanup()

    async def wait_for_calls(self, count: int, *, timeout_s: float = 10.0) -> None:
        """Wait until the server has received at least ``count`` chat requests."""
        if self._arrivals is None:
            raise RuntimeError("the scripted server is not running; use it in 'async with'")
        arrivals = self._arrivals
        try:
            async with asyncio.timeout(timeout_s), arrivals:
                await arrivals.wait_for(lambda: len(self.calls) >= count)
        except TimeoutError:
            raise TimeoutError(
                f"the scripted server received {len(self.calls)} chat requests "
                f"within {timeout_s} s, expected {count}"
            ) from None

    async def _handle_models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "dyntaskmas"}
                ],
            }
        )

    async def _handle_embeddings(self, http_request: web.Request) -> web.Response:
        if self._embeddings is None:
            return error_response(
                404,
                "this scripted server was started without an embeddings handler",
                None,
                None,
                {},
            )
        try:
            body = await http_request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(400, f"request body is not valid JSON: {exc}", None, None, {})
        if not isinstance(body, dict):
            return error_response(400, "request body must be a JSON object", None, None, {})

        headers = {name.lower(): value for name, value in http_request.headers.items()}
        request = ScriptedRequest(index=len(self.embedding_calls), body=body, headers=headers)
        self.embedding_calls.append(request)
        try:
            result = self._embeddings(request)
        except Exception as exc:
            self.handler_errors.append(exc)
            logger.warning(
                "scripted embeddings handler raised on request %d: %r", request.index, exc
            )
            return error_response(500, f"scripted handler raised {exc!r}", "server_error", None, {})
        if isinstance(result, ScriptedReply):
            message = result.error_message or f"scripted error {result.status}"
            return error_response(
                result.status, message, result.error_type, result.error_code, result.headers
            )

        data = [
            {"object": "embedding", "index": index, "embedding": [float(x) for x in vector]}
            for index, vector in enumerate(result)
        ]
        tokens = sum(_rough_tokens(text) for text in request.inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": request.model or self.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _handle_chat(self, http_request: web.Request) -> web.StreamResponse:
        try:
            body = await http_request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return error_response(400, f"request body is not valid JSON: {exc}", None, None, {})
        if not isinstance(body, dict):
            return error_response(400, "request body must be a JSON object", None, None, {})

        headers = {name.lower(): value for name, value in http_request.headers.items()}
        request = ScriptedRequest(index=len(self.calls), body=body, headers=headers)
        call = RecordedCall(request=request, arrived_at=self._clock.now())
        self.calls.append(call)
        self._in_flight += 1
        self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        await self._notify_arrival()

        try:
            response = await self._respond(request, http_request)
            call.status = response.status
            return response
        finally:
            self._in_flight -= 1
            call.finished_at = self._clock.now()
            if task is not None:
                self._handler_tasks.discard(task)

    async def _respond(
        self, request: ScriptedRequest, http_request: web.Request
    ) -> web.StreamResponse:
        try:
            result = self._handler(request)
            reply = await result if inspect.isawaitable(result) else result
            if isinstance(reply, str):
                reply = ScriptedReply(text=reply)
            if not isinstance(reply, ScriptedReply):
                raise TypeError(
                    f"the handler returned {type(reply).__name__}; return a ScriptedReply or a str"
                )
        except Exception as exc:
            self.handler_errors.append(exc)
            logger.warning("scripted handler raised on request %d: %r", request.index, exc)
            return error_response(500, f"scripted handler raised {exc!r}", "server_error", None, {})

        if reply.delay_s > 0:
            await self._clock.sleep(reply.delay_s)

        if reply.raw_body is not None:
            return web.Response(
                status=reply.status,
                text=reply.raw_body,
                headers=reply.headers,
                content_type="application/json",
            )
        if reply.status >= 400:
            message = reply.error_message or f"scripted error {reply.status}"
            return error_response(
                reply.status, message, reply.error_type, reply.error_code, reply.headers
            )
        if request.stream:
            return await self._stream_completion(request, reply, http_request)
        return web.json_response(
            self._completion_body(request, reply), status=reply.status, headers=reply.headers
        )

    def _completion_body(self, request: ScriptedRequest, reply: ScriptedReply) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-scripted-{request.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": _message_body(reply),
                    "finish_reason": "tool_calls" if reply.tool_calls else reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage_body(request, reply),
        }

    async def _stream_completion(
        self, request: ScriptedRequest, reply: ScriptedReply, http_request: web.Request
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=reply.status,
            headers={
                **reply.headers,
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
            },
        )
        await response.prepare(http_request)

        common = {
            "id": f"chatcmpl-scripted-{request.index}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model or self.model,
        }

        def chunk(delta: Mapping[str, Any], finish_reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
            return {**common, "choices": [choice]}

        # The same sequence as OpenAI: the role with empty content first, the
        # text, the tool-call deltas, then an empty delta with the finish
        # reason, and the usage last (with no choices) when the client
        # requested it.
        events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""}, None)]
        events.extend(chunk({"content": piece}, None) for piece in _split_for_stream(reply.text))
        events.extend(chunk({"tool_calls": [delta]}, None) for delta in _tool_call_deltas(reply))
        events.append(chunk({}, "tool_calls" if reply.tool_calls else reply.finish_reason))
        stream_options = request.body.get("stream_options")
        if (
            reply.stream_usage
            and isinstance(stream_options, Mapping)
            and stream_options.get("include_usage") is True
        ):
            events.append({**common, "choices": [], "usage": _usage_body(request, reply)})
        if reply.stream_chunks is not None:
            events = events[: reply.stream_chunks]

        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        if reply.stream_end == "close":
            # close() still sends what was written, then ends the connection
            # without the chunked body's last chunk, so the client sees a cut body.
            if http_request.transport is not None:
                http_request.transport.close()
            return response
        if reply.stream_end == "done":
            await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _notify_arrival(self) -> None:
        assert self._arrivals is not None, "start() creates the condition"
        async with self._arrivals:
            self._arrivals.notify_all()


def reply_sequence(*replies: ReplyLike) -> Handler:
    """Return a handler that gives ``replies`` in the order requests arrive.

    Once they are used up, every further request gets the last one again,
    so ``reply_sequence(error, error, "ok")`` fails twice and then succeeds.
    """
    if not replies:
        raise ValueError("reply_sequence needs at least one reply")
    counter = itertools.count()

    def handler(request: ScriptedRequest) -> ReplyLike:
        position = next(counter)
        return replies[min(position, len(replies) - 1)]

    return handler


def _message_body(reply: ScriptedReply) -> dict[str, Any]:
    if not reply.tool_calls:
        return {"role": "assistant", "content": reply.text}
    return {
        "role": "assistant",
        "content": reply.text or None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in reply.tool_calls
        ],
    }


def _tool_call_deltas(reply: ScriptedReply) -> list[dict[str, Any]]:
    """Return OpenAI's tool-call deltas for the reply, the calls interleaved.

    Every call's id and name come first, then the first half of each call's
    arguments, then the second halves, so only the ``index`` tells a client
    which call a piece belongs to.
    """
    heads: list[dict[str, Any]] = []
    firsts: list[dict[str, Any]] = []
    seconds: list[dict[str, Any]] = []
    for index, (call_id, name, arguments) in enumerate(reply.tool_calls):
        heads.append(
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
        )
        middle = len(arguments) // 2
        for pieces, piece in ((firsts, arguments[:middle]), (seconds, arguments[middle:])):
            if piece:
                pieces.append({"index": index, "function": {"arguments": piece}})
    return [*heads, *firsts, *seconds]


def _usage_body(request: ScriptedRequest, reply: ScriptedReply) -> dict[str, int]:
    prompt_text = "".join(message_text(message.get("content")) for message in request.messages)
    prompt_tokens = (
        reply.prompt_tokens if reply.prompt_tokens is not None else _rough_tokens(prompt_text)
    )
    completion_tokens = (
        reply.completion_tokens
        if reply.completion_tokens is not None
        else _rough_tokens(reply.text)
    )
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _rough_tokens(text: str) -> int:
    # An estimate: BPE tokenizers average about four characters per token on
    # English text.
    return math.ceil(len(text) / 4)


def _split_for_stream(text: str) -> list[str]:
    """Split text into word-sized pieces that join back to the same text."""
    pieces: list[str] = []
    start = 0
    for index in range(1, len(text)):
        if text[index] == " ":
            pieces.append(text[start:index])
            start = index
    if text:
        pieces.append(text[start:])
    return pieces
