"""Plain data exchanged with model backends, and the backend protocol.

Everything that calls a model (agents, the planner) depends on
:class:`ChatModel` only, so an OpenAI-compatible endpoint, the simulated
server and a scripted test double are interchangeable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str


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
    HTTP attempt made, retries included.
    """

    text: str
    usage: Usage
    model: str
    finish_reason: str | None
    latency_s: float
    attempts: int = 1


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
