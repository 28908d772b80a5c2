"""Assemble one chat completion from the chunks of a streamed response.

:class:`StreamAssembler` owns the chunk format, not the HTTP: the OpenAI
backend feeds it every chunk the SDK parsed and measures the time to first
token from :attr:`StreamAssembler.has_output`. It is pure (no clock, no I/O)
and takes each chunk as parsed JSON (a mapping) or as an object with the
same attributes, such as the SDK's ``ChatCompletionChunk``. Chunks are
server output and untrusted: fields of the wrong type are skipped.

OpenAI's order of chunks, which llama.cpp, vLLM and this project's servers
follow::

    {"choices": [{"delta": {"role": "assistant", "content": ""}}]}
    {"choices": [{"delta": {"content": "Par"}}]}
    {"choices": [{"delta": {"content": "is"}}]}
    {"choices": [{"delta": {}, "finish_reason": "stop"}]}
    {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}}

The usage chunk comes only when the request set
``stream_options.include_usage``, and only from servers that support it.
Tool calls arrive as deltas keyed by ``index``: the first delta of a call
carries its ``id`` and name, and later ones add pieces of its arguments.

A stream is complete only once a chunk has carried a ``finish_reason``.
:meth:`StreamAssembler.completion` raises :class:`TransientLLMError` for one
that ended before, so a cut stream is retried, never returned as a short answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from dyntaskmas.errors import LLMResponseError, TransientLLMError
from dyntaskmas.llm.types import Completion, ToolCall, Usage


@dataclass
class _ToolCallParts:
    """The pieces of one streamed tool call received so far."""

    id: str = ""
    name: list[str] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)


class StreamAssembler:
    """Collects the chunks of one streamed completion (choice 0) into a :class:`Completion`."""

    def __init__(self) -> None:
        #: Chunks received, the usage-only chunk included.
        self.chunks = 0
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._tool_calls: dict[int, _ToolCallParts] = {}
        self._finish_reason: str | None = None
        self._usage: Usage | None = None
        self._model: str | None = None

    @property
    def has_output(self) -> bool:
        """Whether any generated text or tool call has arrived."""
        return any(self._text) or bool(self._tool_calls)

    @property
    def finished(self) -> bool:
        """Whether a chunk carried the finish reason."""
        return self._finish_reason is not None

    def add(self, chunk: object) -> None:
        """Add the next chunk of the stream."""
        self.chunks += 1
        model = _field(chunk, "model")
        if self._model is None and isinstance(model, str) and model:
            self._model = model

        usage = _field(chunk, "usage")
        if usage is not None:
            # Some servers repeat a running total on every chunk; the last one counts.
            self._usage = Usage(
                prompt_tokens=_token_count(_field(usage, "prompt_tokens")),
                completion_tokens=_token_count(_field(usage, "completion_tokens")),
            )

        choices = _field(chunk, "choices")
        if not isinstance(choices, list):
            return
        for position, choice in enumerate(choices):
            index = _field(choice, "index")
            if index is None:
                index = position
            if index == 0:
                self._add_choice(choice)

    def completion(
        self, *, where: str, default_model: str, latency_s: float, attempts: int
    ) -> Completion:
        """Return the assembled completion, or raise if the stream is incomplete or unusable.

        ``where`` names the endpoint in messages. Raises
        :class:`TransientLLMError` when no chunk carried a finish reason, and
        :class:`LLMResponseError` when the model refused without any text or
        tool call.
        """
        if self._finish_reason is None:
            raise TransientLLMError(
                f"the response stream from {where} ended after {self.chunks} chunks without "
                f"a finish reason, so the answer may be cut short; the server or a proxy "
                f"ended it early, so retry later, or turn streaming off for this endpoint if "
                f"it keeps happening"
            )
        text = "".join(self._text)
        tool_calls = self._assembled_tool_calls()
        if not text and not tool_calls and self._refusal:
            raise LLMResponseError(
                f"{where} returned a choice without text content "
                f"(finish_reason={self._finish_reason!r}; refusal: {''.join(self._refusal)})"
            )
        return Completion(
            text=text,
            usage=self._usage if self._usage is not None else Usage(),
            model=self._model or default_model,
            finish_reason=self._finish_reason,
            latency_s=latency_s,
            attempts=attempts,
            tool_calls=tool_calls,
        )

    def _add_choice(self, choice: object) -> None:
        delta = _field(choice, "delta")
        content = _field(delta, "content")
        if isinstance(content, str):
            self._text.append(content)
        refusal = _field(delta, "refusal")
        if isinstance(refusal, str):
            self._refusal.append(refusal)
        calls = _field(delta, "tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                self._add_tool_call_delta(call, position)
        finish_reason = _field(choice, "finish_reason")
        if isinstance(finish_reason, str) and finish_reason:
            self._finish_reason = finish_reason

    def _add_tool_call_delta(self, call: object, position: int) -> None:
        index = _field(call, "index")
        # A server that leaves out the index sends each call whole in one delta.
        key = index if isinstance(index, int) and not isinstance(index, bool) else position
        parts = self._tool_calls.setdefault(key, _ToolCallParts())
        call_id = _field(call, "id")
        if isinstance(call_id, str) and call_id and not parts.id:
            parts.id = call_id
        function = _field(call, "function")
        name = _field(function, "name")
        if isinstance(name, str):
            parts.name.append(name)
        arguments = _field(function, "arguments")
        if isinstance(arguments, str):
            parts.arguments.append(arguments)

    def _assembled_tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(
                id=parts.id or f"call-{position}",
                name="".join(parts.name),
                arguments="".join(parts.arguments),
            )
            for position, (_, parts) in enumerate(sorted(self._tool_calls.items()))
        )


def _field(value: object, name: str) -> object:
    """Return the field ``name`` of a parsed JSON object or of an SDK model, None if absent."""
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _token_count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
