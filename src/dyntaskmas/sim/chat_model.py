"""The in-process form of the simulator: a :class:`ChatModel` backed by a simulated server.

:class:`SimulatedChatModel` implements :class:`~dyntaskmas.llm.types.ChatModel`
by sending each call to a shared :class:`~dyntaskmas.sim.server.SimulatedServer`
and returning when the simulated server emits the last token. Agents that
share one server share its slots, so their calls batch and queue as on a
real inference server. Run the engine on a
:class:`~dyntaskmas.sim.virtual_time.VirtualTimeEventLoop` with an
:class:`~dyntaskmas.sim.virtual_time.EventLoopClock`, and simulated hours
pass in seconds::

    async def main() -> RunResult:
        model = SimulatedChatModel(SimulatedServer(), output_lengths=..., rng=Random(7))
        agents = build_agents(8, roles, {"sim": model})
        engine = Engine(AgentPool(agents), clock=EventLoopClock())
        return await engine.run_graph(specs)

    result = run_virtual(main())

How long each completion is: the token count of ``text(call)`` when a text
function is given; otherwise a draw from ``output_lengths``; otherwise
``max_tokens``. It is always capped by ``max_tokens`` and by the context
window. Without a text function the text is filler of that many tokens.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyntaskmas.llm.types import ChatMessage, Completion, Usage
from dyntaskmas.sim.content import (
    decide_output,
    estimate_prompt_tokens,
    estimate_tokens,
    filler_text,
    truncate_to_tokens,
)
from dyntaskmas.sim.server import SimulatedServer
from dyntaskmas.sim.server_model import output_budget
from dyntaskmas.sim.workload_sizes import TokenLengths

#: The model name that simulated completions report by default.
DEFAULT_MODEL_NAME = "sim-8b"


@dataclass(frozen=True)
class SimulatedCall:
    """One call to a :class:`SimulatedChatModel`, the argument of a text function."""

    #: 0-based position of this call among the model's calls.
    index: int
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    json_schema: Mapping[str, Any] | None


TextFunction = Callable[[SimulatedCall], str]


class SimulatedChatModel:
    """A :class:`~dyntaskmas.llm.types.ChatModel` whose calls run on a simulated server.

    ``rng`` draws output lengths; pass a seeded one for reproducible runs.
    Several agents may share one instance. ``Completion.latency_s`` is in
    event-loop seconds (model seconds divided by the server's speedup).
    The JSON schema of a call is passed to ``text`` and otherwise ignored.
    """

    def __init__(
        self,
        server: SimulatedServer,
        *,
        model: str = DEFAULT_MODEL_NAME,
        output_lengths: TokenLengths | None = None,
        rng: random.Random | None = None,
        text: TextFunction | None = None,
    ) -> None:
        self.server = server
        self.model = model
        self._output_lengths = output_lengths
        self._rng = rng if rng is not None else random.Random(0)
        self._text = text
        self._calls = 0

    @property
    def calls(self) -> int:
        """The number of calls made so far."""
        return self._calls

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Run one completion on the simulated server and return it.

        Raises :class:`~dyntaskmas.sim.server_model.ContextLengthError` (an
        :class:`~dyntaskmas.errors.LLMRequestError`) when the prompt does
        not fit the context window.
        """
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        index = self._calls
        self._calls += 1
        prompt_tokens = estimate_prompt_tokens(message.content for message in messages)
        budget = output_budget(self.server.config, prompt_tokens, max_tokens)

        if self._text is not None:
            call = SimulatedCall(index, tuple(messages), max_tokens, json_schema)
            text = self._text(call)
            output_tokens, finish_reason = decide_output(estimate_tokens(text), budget)
            if finish_reason == "length":
                text = truncate_to_tokens(text, output_tokens)
        else:
            natural = (
                self._output_lengths.sample(self._rng) if self._output_lengths is not None else None
            )
            output_tokens, finish_reason = decide_output(natural, budget)
            text = filler_text(output_tokens, offset=index)

        finished = await self.server.generate(prompt_tokens, output_tokens)
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=output_tokens),
            model=self.model,
            finish_reason=finish_reason,
            latency_s=self.server.to_loop_seconds(finished.latency_s),
        )
