"""Plain data exchanged with model backends, and the backend protocol.

Everything that calls a model (agents, the planner) depends on
:class:`ChatModel` only, so an OpenAI-compatible endpoint, the simulated
server and a scripted test double are interchangeable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A tool call a model requested: untrusted until the tool registry checks it.

    ``arguments`` is the raw JSON text the model wrote, which may be invalid.
    """

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolSpec:
    """A tool as a model is told about it: name, description, JSON schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    """One chat message.

    An assistant message may carry the ``tool_calls`` it made; a ``tool``
    message answers the call named by ``tool_call_id``.
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts as the server reported them (0 when it reported none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    """One chat completion: the text and what it cost.

    ``latency_s`` covers the successful attempt only; ``attempts`` counts every
    HTTP attempt made, retries included. ``time_to_first_token_s`` is measured
    only on streamed calls, from the start of the successful attempt to the
    first chunk with generated text or a tool call; it is None otherwise.
    """

    text: str
    usage: Usage
    model: str
    finish_reason: str | None
    latency_s: float
    attempts: int = 1
    #: Tool calls the model requested instead of, or besides, its text.
    tool_calls: tuple[ToolCall, ...] = ()
    time_to_first_token_s: float | None = None


class ChatModel(Protocol):
    """Something that turns chat messages into a completion."""

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Return one completion.

        When ``json_schema`` is given, the backend asks the server to constrain
        its output to that schema where the server supports it; callers still
        validate the text, because not every server enforces every keyword.
        """
        ...


class ToolCallingModel(ChatModel, Protocol):
    """A chat model that can also offer tools to the model.

    Backends that implement it set ``supports_tools = True``; the engine
    offers tools only to those.
    """

    supports_tools: bool

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> Completion:
        """Return one completion; with ``tools``, its ``tool_calls`` may be set."""
        ...
