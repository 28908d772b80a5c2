"""The tool-call loop of a work task: ask the model, run the calls it makes, repeat.

Each round sends the conversation with the registered tools. When the
model's reply has tool calls, each one goes through
:meth:`~dyntaskmas.tools.registry.ToolRegistry.call`, whose checks decide
whether it runs; the results, errors included, go back as ``tool``
messages, and the next round starts. The loop ends when a reply has no tool
calls. After ``max_rounds`` rounds with tool calls, one last request is
sent without tools, so the model must answer in text and the loop is
bounded by ``max_rounds + 1`` model calls.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from dyntaskmas.llm.types import ChatMessage, Completion, ToolCallingModel
from dyntaskmas.tools.registry import ToolRegistry, ToolResult

logger = logging.getLogger(__name__)

#: Rounds of tool calls one task may make before it must answer; the
#: engine's default, EngineConfig.max_tool_rounds, is the same.
DEFAULT_MAX_TOOL_ROUNDS = 4
#: Tool calls of one reply that are run; the rest get an error.
MAX_CALLS_PER_ROUND = 16


@dataclass(frozen=True)
class ToolLoopResult:
    """The final completion, every completion made (for token accounting), every call."""

    final: Completion
    completions: tuple[Completion, ...]
    results: tuple[ToolResult, ...]


async def complete_with_tools(
    model: ToolCallingModel,
    messages: Sequence[ChatMessage],
    tools: ToolRegistry,
    *,
    max_tokens: int,
    temperature: float = 0.0,
    max_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
) -> ToolLoopResult:
    """Run the tool-call loop from ``messages``; see the module docstring."""
    if max_rounds < 0:
        raise ValueError(f"max_rounds must be >= 0, got {max_rounds}")
    conversation = list(messages)
    specs = tools.specs()
    completions: list[Completion] = []
    results: list[ToolResult] = []

    for round_number in range(max_rounds + 1):
        offered = specs if round_number < max_rounds else None
        completion = await model.complete(
            conversation, max_tokens=max_tokens, temperature=temperature, tools=offered
        )
        completions.append(completion)
        # A model that calls a tool it was not offered in this round gets
        # nothing run: the last round's reply is final, calls or not.
        if not completion.tool_calls or offered is None:
            return ToolLoopResult(completion, tuple(completions), tuple(results))

        conversation.append(
            ChatMessage("assistant", completion.text, tool_calls=completion.tool_calls)
        )
        for index, call in enumerate(completion.tool_calls):
            if index < MAX_CALLS_PER_ROUND:
                result = await tools.call(call)
            else:
                result = ToolResult(
                    call,
                    f"error: only {MAX_CALLS_PER_ROUND} tool calls run per reply; call "
                    f"{call.name!r} again in the next reply",
                    ok=False,
                )
            logger.debug("tool call %s (%s): ok=%s", call.name, call.id, result.ok)
            results.append(result)
            conversation.append(ChatMessage("tool", result.content, tool_call_id=call.id))

    raise AssertionError("the last round offers no tools, so it always returns")
