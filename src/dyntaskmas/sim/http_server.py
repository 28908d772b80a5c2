"""The HTTP form of the simulator: an OpenAI-compatible server with fault injection.

:class:`SimulatedLLMServer` is an aiohttp server (127.0.0.1 by default)
whose chat completions run on a :class:`~dyntaskmas.sim.server.SimulatedServer`
in real time, divided by ``speedup``. Any OpenAI client works against it
unchanged. Routes:

- ``POST /v1/chat/completions``: streamed or not. A streamed response sends
  the role chunk and the first token when the prefill step ends, the other
  tokens when the request finishes, then the finish-reason chunk, the usage
  chunk (no choices) when ``stream_options.include_usage`` is true, and
  ``[DONE]``.
- ``POST /v1/embeddings``: feature-hashed vectors, as floats or base64.
  They return at once, without simulated time.
- ``GET /v1/models``: the one model name it lists; requests may name any model.
- ``GET /v1/sim/stats``: utilisation, tokens per second, request and fault
  counts; ``POST /v1/sim/reset`` starts a new measured window.

A chat request whose response format carries a decomposition schema gets a
valid plan of ``plan_fanout`` subtasks (:mod:`dyntaskmas.sim.plans`) instead
of filler text, so planned runs against the simulator build real graphs.
:attr:`SimulatedLLMServer.completed` counts the chat requests that got a
whole, fault-free response, by their messages, so a test can check that no
request was answered twice.

Faults (:mod:`dyntaskmas.sim.faults`) hit chat and embedding requests:

- ``rate_limited``: a 429 at once, with ``Retry-After`` in whole seconds
  (rounded up) and ``retry-after-ms``;
- ``server_error``: a 500 at once;
- ``slow``: a wait of ``slow_s`` before the request is handled;
- ``malformed``: a 200 whose body, or first content chunk when streamed,
  is JSON cut in half;
- ``truncated``: the connection closes half-way through the body or stream.

With a :class:`~dyntaskmas.sim.capacity.CapacityProfile` the server also
hides its capacity. A chat request that arrives with more than
``inflate_above`` chat requests in flight waits ``inflation - 1`` times its
simulated latency more before the server responds. One that would make
more than ``reject_above`` in flight, or that arrives inside the profile's
throttle window (wall-clock seconds from :meth:`SimulatedLLMServer.start`),
gets a 429 at once. The batching model sets the base latency, so the
profile's per-token latencies are not used here.

Errors use OpenAI's JSON shape, ``{"error": {"message", "type", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import random
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import asdict
from types import TracebackType
from typing import Any

from aiohttp import web

from dyntaskmas.llm.openai_http import error_response, message_text, serve_app
from dyntaskmas.llm.scripted import DEFAULT_BACKLOG
from dyntaskmas.sim.capacity import CapacityProfile, Rejection
from dyntaskmas.sim.chat_model import DEFAULT_MODEL_NAME
from dyntaskmas.sim.content import (
    decide_output,
    estimate_prompt_tokens,
    estimate_tokens,
    filler_text,
    hashed_embedding,
)
from dyntaskmas.sim.faults import Fault, FaultConfig, FaultInjector
from dyntaskmas.sim.plans import DEFAULT_PLAN_FANOUT, plan_for_schema, request_schema
from dyntaskmas.sim.server import SimulatedServer
from dyntaskmas.sim.server_model import ContextLengthError, ServerConfig, output_budget
from dyntaskmas.sim.workload_sizes import TokenLengths

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
#: Output tokens of a chat request that sets no ``max_tokens``.
DEFAULT_MAX_TOKENS = 512
DEFAULT_EMBEDDING_DIMENSIONS = 64


class SimulatedLLMServer:
    """An OpenAI-compatible HTTP server backed by the continuous-batching simulator.

    Use it as an async context manager inside the event loop that serves
    it. ``port`` 0 lets the OS choose a free port. ``seed`` fixes both the
    fault sequence and the output lengths drawn from ``output_lengths``
    (without them, every request generates its ``max_tokens``).
    """

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        faults: FaultConfig | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
        model: str = DEFAULT_MODEL_NAME,
        speedup: float = 1.0,
        seed: int = 0,
        output_lengths: TokenLengths | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        embedding_dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS,
        backlog: int = DEFAULT_BACKLOG,
        plan_fanout: int = DEFAULT_PLAN_FANOUT,
        capacity: CapacityProfile | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {port}")
        if default_max_tokens < 1:
            raise ValueError(f"default_max_tokens must be >= 1, got {default_max_tokens}")
        if embedding_dimensions < 1:
            raise ValueError(f"embedding_dimensions must be >= 1, got {embedding_dimensions}")
        self.model = model
        self.simulator = SimulatedServer(config, speedup=speedup)
        self.faults = FaultInjector(faults or FaultConfig(), random.Random(f"{seed}:faults"))
        self._host = host
        self._requested_port = port
        self._backlog = backlog
        self._output_lengths = output_lengths
        self._lengths_rng = random.Random(f"{seed}:lengths")
        self._default_max_tokens = default_max_tokens
        self._embedding_dimensions = embedding_dimensions
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handler_tasks: set[asyncio.Task[Any]] = set()
        self._received = 0
        self._next_completion_id = 0
        # 0 answers plan requests with filler text, as any other request.
        if plan_fanout < 0:
            raise ValueError(f"plan_fanout must be >= 0, got {plan_fanout}")
        self._plan_fanout = plan_fanout
        #: Fault-free chat responses sent whole, by the request's message texts.
        self.completed: Counter[str] = Counter()
        self.capacity = capacity
        self._chats_in_flight = 0
        self._capacity_rejected = 0
        self._started_at = 0.0
        #: Loop time of every chat request's arrival, for counting what reached the server.
        self.chat_arrivals: list[float] = []

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the simulated server is not running; use it in 'async with'")
        return self._port

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client, e.g. ``http://127.0.0.1:41234/v1``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/v1"

    @property
    def received(self) -> int:
        """The chat and embedding requests received, faulty ones included."""
        return self._received

    async def __aenter__(self) -> SimulatedLLMServer:
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
        """Start listening."""
        if self._runner is not None:
            raise RuntimeError("the simulated server is already running")
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        app.router.add_post("/v1/embeddings", self._handle_embeddings)
        app.router.add_get("/v1/models", self._handle_models)
        app.router.add_get("/v1/sim/stats", self._handle_stats)
        app.router.add_post("/v1/sim/reset", self._handle_reset)

        self._started_at = asyncio.get_running_loop().time()
        self._runner, self._port = await serve_app(
            app, self._host, self._requested_port, backlog=self._backlog
        )
        logger.info(
            "simulated LLM server listening on %s: %d slots, speedup %g",
            self.base_url,
            self.simulator.config.slots,
            self.simulator.speedup,
        )

    async def stop(self) -> None:
        """Stop the server, cancelling requests that are still being handled."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # A handler in a slow fault would otherwise hold the shutdown for
        # aiohttp's grace period.
        for task in self._handler_tasks:
            task.cancel()
        await runner.cleanup()
        self.simulator.close()
        logger.info("simulated LLM server on port %d stopped", self.port)

    def stats(self) -> dict[str, Any]:
        """Return the simulator's counters as JSON-ready data.

        Durations and rates are in model seconds, which pass ``speedup``
        times faster than wall-clock seconds.
        """
        stats = self.simulator.stats()
        return {
            "model": self.model,
            "speedup": self.simulator.speedup,
            "model_time_s": self.simulator.now(),
            **asdict(stats),
            "requests": {
                "received": self._received,
                "submitted": stats.submitted,
                "finished": stats.finished,
                "in_flight": self.simulator.in_flight,
            },
            "faults": dict(self.faults.counts),
            "capacity_rejected": self._capacity_rejected,
        }

    # --- handlers ---------------------------------------------------------------------

    async def _handle_models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": self.model, "object": "model", "created": 0, "owned_by": "dyntaskmas"}
                ],
            }
        )

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.simulator.reset_window()
        return web.json_response(self.stats())

    async def _handle_chat(self, http_request: web.Request) -> web.StreamResponse:
        return await self._tracked(self._chat(http_request))

    async def _handle_embeddings(self, http_request: web.Request) -> web.StreamResponse:
        return await self._tracked(self._embeddings(http_request))

    async def _tracked(
        self, handler: Coroutine[Any, Any, web.StreamResponse]
    ) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._handler_tasks.add(task)
        try:
            return await handler
        finally:
            if task is not None:
                self._handler_tasks.discard(task)

    async def _chat(self, http_request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        self.chat_arrivals.append(loop.time() - self._started_at)
        fault = self._arrive()
        early = await self._early_fault(fault)
        if early is not None:
            return early
        inflation = 1.0
        if self.capacity is not None:
            decision = self.capacity.admit(self._chats_in_flight, loop.time() - self._started_at)
            if isinstance(decision, Rejection):
                self._capacity_rejected += 1
                return _rate_limited(decision.retry_after_s, decision.reason)
            inflation = decision
        self._chats_in_flight += 1
        try:
            return await self._chat_admitted(http_request, fault, inflation)
        finally:
            self._chats_in_flight -= 1

    async def _chat_admitted(
        self, http_request: web.Request, fault: Fault | None, inflation: float
    ) -> web.StreamResponse:
        started = asyncio.get_running_loop().time()

        body, error = await _json_object(http_request)
        if error is not None:
            return error
        assert body is not None
        parsed = _parse_chat(body, self._default_max_tokens)
        if isinstance(parsed, web.Response):
            return parsed
        contents, max_tokens, stream, include_usage = parsed

        prompt_tokens = estimate_prompt_tokens(contents)
        try:
            budget = output_budget(self.simulator.config, prompt_tokens, max_tokens)
        except ContextLengthError as exc:
            return error_response(400, str(exc), code="context_length_exceeded")
        natural = (
            self._output_lengths.sample(self._lengths_rng)
            if self._output_lengths is not None
            else None
        )
        output_tokens, finish_reason = decide_output(natural, budget)

        completion_id = f"chatcmpl-sim-{self._next_completion_id}"
        self._next_completion_id += 1
        text = filler_text(output_tokens, offset=self._next_completion_id)
        schema = request_schema(body)
        plan = (
            plan_for_schema(schema, fanout=self._plan_fanout)
            if schema and self._plan_fanout
            else None
        )
        if plan is not None:
            # The plan replaces the filler; its length sets the simulated decode time.
            text = plan
            output_tokens = estimate_tokens(plan)
            finish_reason = "stop"
        pending = self.simulator.submit(prompt_tokens, output_tokens)
        common = {
            "id": completion_id,
            "created": int(time.time()),
            "model": body.get("model") if isinstance(body.get("model"), str) else self.model,
        }
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens,
        }

        async def finished() -> None:
            # Past the profile's load, the request takes `inflation` times as long.
            await pending.finished
            if inflation > 1:
                elapsed = asyncio.get_running_loop().time() - started
                await asyncio.sleep((inflation - 1) * elapsed)

        if stream:
            chunk = _Chunks(common, text, finish_reason, usage if include_usage else None)
            response = await self._stream(http_request, pending.first_token, finished, chunk, fault)
            if fault is None or fault == "slow":
                self._count_completed(http_request, contents)
            return response

        await finished()
        if fault is None or fault == "slow":
            self._count_completed(http_request, contents)
        completion = {
            **common,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": usage,
        }
        return await _send_json(http_request, completion, fault)

    async def _embeddings(self, http_request: web.Request) -> web.StreamResponse:
        fault = self._arrive()
        early = await self._early_fault(fault)
        if early is not None:
            return early

        body, error = await _json_object(http_request)
        if error is not None:
            return error
        assert body is not None
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(i, str) for i in inputs)
        ):
            return error_response(
                400, "'input' must be a string or a non-empty list of strings", param="input"
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return error_response(
                400,
                f"'encoding_format' must be 'float' or 'base64', got {encoding!r}",
                param="encoding_format",
            )
        dimensions = body.get("dimensions", self._embedding_dimensions)
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            return error_response(
                400, f"'dimensions' must be an integer >= 1, got {dimensions!r}", param="dimensions"
            )

        data = []
        for index, text in enumerate(inputs):
            vector = hashed_embedding(text, dimensions)
            embedding: list[float] | str = vector
            if encoding == "base64":
                # OpenAI's base64 form: little-endian float32 values.
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(estimate_tokens(text) for text in inputs)
        response = {
            "object": "list",
            "data": data,
            "model": body.get("model") if isinstance(body.get("model"), str) else self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return await _send_json(http_request, response, fault)

    def _count_completed(self, http_request: web.Request, contents: list[str]) -> None:
        # A client that timed out during a slow fault has closed the connection,
        # and the response it never reads is not counted.
        transport = http_request.transport
        if transport is None or transport.is_closing():
            return
        self.completed["\n".join(contents)] += 1

    # --- faults and responses --------------------------------------------------------

    def _arrive(self) -> Fault | None:
        self._received += 1
        fault = self.faults.draw()
        if fault is not None:
            logger.debug("injecting fault %s into request %d", fault, self._received)
        return fault

    async def _early_fault(self, fault: Fault | None) -> web.Response | None:
        """Return the response of a fault that replaces handling, or wait out a slow one."""
        config = self.faults.config
        if fault == "rate_limited":
            return _rate_limited(config.retry_after_s, "simulated rate limit")
        if fault == "server_error":
            return error_response(500, "simulated server error")
        if fault == "slow":
            await asyncio.sleep(config.slow_s)
        return None

    async def _stream(
        self,
        http_request: web.Request,
        first_token: asyncio.Future[float],
        finished: Callable[[], Awaitable[None]],
        chunks: _Chunks,
        fault: Fault | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(http_request)
        events = chunks.events()
        if fault == "malformed":
            # The first content chunk, cut in half.
            events[1] = events[1][: len(events[1]) // 2]
        cut_at = len(events) // 2 if fault == "truncated" else len(events)

        try:
            await first_token
            # The role chunk and the first token leave when the prefill ends.
            for event in events[: min(2, cut_at)]:
                await response.write(f"data: {event}\n\n".encode())
            await finished()
            for event in events[2:cut_at]:
                await response.write(f"data: {event}\n\n".encode())
            if fault == "truncated":
                _close_connection(http_request)
                return response
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except ConnectionResetError:
            logger.debug("client closed the stream of %s early", chunks.common["id"])
        return response


class _Chunks:
    """The chunks of one streamed completion, in OpenAI's order, as JSON strings."""

    def __init__(
        self,
        common: Mapping[str, Any],
        text: str,
        finish_reason: str,
        usage: Mapping[str, int] | None,
    ) -> None:
        self.common = {**common, "object": "chat.completion.chunk"}
        self._text = text
        self._finish_reason = finish_reason
        self._usage = usage

    def events(self) -> list[str]:
        """Return the role chunk, one chunk per token, the finish chunk and the usage chunk."""
        pieces = _split_words(self._text)
        chunks = [self._chunk({"role": "assistant", "content": ""}, None)]
        chunks.extend(self._chunk({"content": piece}, None) for piece in pieces)
        chunks.append(self._chunk({}, self._finish_reason))
        if self._usage is not None:
            chunks.append({**self.common, "choices": [], "usage": dict(self._usage)})
        return [json.dumps(chunk) for chunk in chunks]

    def _chunk(self, delta: Mapping[str, Any], finish_reason: str | None) -> dict[str, Any]:
        choice = {"index": 0, "delta": dict(delta), "finish_reason": finish_reason}
        return {**self.common, "choices": [choice]}


def _parse_chat(
    body: Mapping[str, Any], default_max_tokens: int
) -> tuple[list[str], int, bool, bool] | web.Response:
    """Return a chat request's message texts, max tokens, stream and usage flags, or a 400."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return error_response(400, "'messages' must be a non-empty list", param="messages")
    contents = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            return error_response(
                400, f"message {index} must be an object with a string 'role'", param="messages"
            )
        contents.append(message_text(message.get("content")))

    max_tokens = body.get("max_completion_tokens", body.get("max_tokens", default_max_tokens))
    if max_tokens is None:
        max_tokens = default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        return error_response(
            400, f"'max_tokens' must be an integer >= 1, got {max_tokens!r}", param="max_tokens"
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        return error_response(400, f"'stream' must be a boolean, got {stream!r}", param="stream")
    options = body.get("stream_options")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    return contents, max_tokens, stream, include_usage


async def _json_object(
    http_request: web.Request,
) -> tuple[dict[str, Any], None] | tuple[None, web.Response]:
    try:
        body = await http_request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, error_response(400, f"request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return None, error_response(400, "request body must be a JSON object")
    return body, None


async def _send_json(
    http_request: web.Request, payload: Mapping[str, Any], fault: Fault | None
) -> web.StreamResponse:
    data = json.dumps(payload).encode()
    if fault == "malformed":
        return web.Response(
            status=200, body=data[: len(data) // 2], content_type="application/json"
        )
    if fault != "truncated":
        return web.Response(status=200, body=data, content_type="application/json")

    # Announce the whole body, send half of it, then close the connection.
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(data)
    try:
        await response.prepare(http_request)
        await response.write(data[: len(data) // 2])
    except ConnectionResetError:
        logger.debug("client closed the connection before the truncated body")
    _close_connection(http_request)
    return response


def _rate_limited(wait_s: float, reason: str) -> web.Response:
    return error_response(
        429,
        f"{reason}; retry after {wait_s:g} s",
        headers={
            "Retry-After": str(math.ceil(wait_s)),
            "retry-after-ms": str(round(wait_s * 1000)),
        },
    )


def _close_connection(http_request: web.Request) -> None:
    # close() still sends what was written, so the client receives the
    # partial body before the connection closes.
    transport = http_request.transport
    if transport is not None:
        transport.close()


def _split_words(text: str) -> list[str]:
    """Split text into one piece per word, each but the first with its leading space."""
    words = text.split(" ")
    if words == [""]:
        return []
    return [words[0], *(f" {word}" for word in words[1:])]
