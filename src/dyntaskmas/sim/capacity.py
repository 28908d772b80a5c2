"""A server with hidden capacity: latency inflates past one load and 429s past another.

The adaptive allocator must find a concurrency limit it is not told. This
module models a server that hides it:

- up to ``inflate_above`` requests in flight, a request takes its base
  latency, ``prefill_s_per_token * prompt + decode_s_per_token * output``;
- a request that arrives when more than ``inflate_above`` are in flight
  (itself included) takes ``inflation`` times its base latency;
- a request that would make more than ``reject_above`` in flight is
  answered at once with 429 and ``Retry-After: retry_after_s``;
- during a :class:`ThrottleWindow` every request is answered with 429 and
  the window's Retry-After, whatever the load;
- with ``rate_429`` above 0, that share of the other requests, drawn at
  random whatever the load, is answered at once with 429 and
  ``Retry-After: random_retry_after_s``, as a provider's token quota or a
  flaky gateway does.

With the defaults (24, 2.0, 40) the throughput at ``n`` requests in flight
is ``n / base`` up to 24 and ``n / (2 * base)`` from 25 to 40, so the best
limit is 24 and any limit above it loses throughput.

:class:`CapacityProfile` and :class:`ThrottleWindow` are pure decisions.
:class:`CapacityServer` applies them on the running event loop (virtual
time on a :class:`~dyntaskmas.sim.virtual_time.VirtualTimeEventLoop`), and
:class:`CapacityChatModel` is its one-attempt :class:`ChatModel`; wrap it in
:class:`~dyntaskmas.llm.attempts.RetryingChatModel` for the retry loop that
HTTP backends use. The HTTP server applies the same profile
(:mod:`dyntaskmas.sim.http_server`).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyntaskmas.errors import ConfigError, TransientLLMError
from dyntaskmas.llm.types import ChatMessage, Completion, Usage
from dyntaskmas.sim.content import estimate_prompt_tokens, filler_text


@dataclass(frozen=True)
class ThrottleWindow:
    """A span of time, in seconds from the server's start, when every request gets a 429."""

    start_s: float
    duration_s: float
    retry_after_s: float = 2.0

    def __post_init__(self) -> None:
        for name in ("start_s", "duration_s", "retry_after_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"throttle window {name} must be a finite number >= 0, got {value}"
                )

    def covers(self, elapsed_s: float) -> bool:
        """Tell whether ``elapsed_s`` seconds after the start fall inside the window."""
        return self.start_s <= elapsed_s < self.start_s + self.duration_s


@dataclass(frozen=True)
class Rejection:
    """A request answered with 429 and the Retry-After in seconds."""

    retry_after_s: float
    reason: str


@dataclass(frozen=True)
class CapacityProfile:
    """The load at which latency inflates and the load at which requests are rejected."""

    inflate_above: int = 24
    inflation: float = 2.0
    reject_above: int = 40
    retry_after_s: float = 1.0
    prefill_s_per_token: float = 0.0005
    decode_s_per_token: float = 0.009
    throttle: ThrottleWindow | None = None
    #: Share of requests answered with 429 whatever the load.
    rate_429: float = 0.0
    random_retry_after_s: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_429) and 0 <= self.rate_429 < 1):
            raise ConfigError(f"rate_429 must be in [0, 1), got {self.rate_429}")
        if self.inflate_above < 1:
            raise ConfigError(f"inflate_above must be >= 1 request, got {self.inflate_above}")
        if self.reject_above < self.inflate_above:
            raise ConfigError(
                f"reject_above ({self.reject_above}) must be >= inflate_above "
                f"({self.inflate_above}); a server rejects load only past where it slows"
            )
        if not (math.isfinite(self.inflation) and self.inflation >= 1):
            raise ConfigError(f"inflation must be a finite factor >= 1, got {self.inflation}")
        for name in (
            "retry_after_s",
            "random_retry_after_s",
            "prefill_s_per_token",
            "decode_s_per_token",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")

    def admit(self, in_flight: int, elapsed_s: float, draw: float = 1.0) -> Rejection | float:
        """Decide a request that arrives with ``in_flight`` others running.

        ``draw`` is a number in [0, 1) drawn at random for this request; one
        below ``rate_429`` gets a 429 whatever the load. Returns the factor
        on its base latency, or the :class:`Rejection`.
        """
        if self.throttle is not None and self.throttle.covers(elapsed_s):
            return Rejection(self.throttle.retry_after_s, "throttle window")
        load = in_flight + 1
        if load > self.reject_above:
            return Rejection(self.retry_after_s, f"more than {self.reject_above} in flight")
        if draw < self.rate_429:
            return Rejection(self.random_retry_after_s, "random 429")
        return self.inflation if load > self.inflate_above else 1.0

    def base_latency_s(self, prompt_tokens: int, output_tokens: int) -> float:
        """Return a request's latency at a load that does not inflate it."""
        return prompt_tokens * self.prefill_s_per_token + output_tokens * self.decode_s_per_token


@dataclass(frozen=True)
class ArrivalRecord:
    """One request as the server saw it: when, how many were in flight, and what it got."""

    at_s: float
    in_flight: int
    rejected: bool


class CapacityServer:
    """A :class:`CapacityProfile` served on the running event loop.

    Times are seconds since the first request. ``arrivals`` records every
    request, so a test can count what reached the server in any span.
    """

    def __init__(
        self, profile: CapacityProfile | None = None, *, rng: random.Random | None = None
    ) -> None:
        self.profile = profile if profile is not None else CapacityProfile()
        # Seeded, so the random 429s of a run replay.
        self._rng = rng if rng is not None else random.Random(0)
        self.in_flight = 0
        self.arrivals: list[ArrivalRecord] = []
        self._origin: float | None = None

    def elapsed_s(self) -> float:
        """Return the seconds since the first request (0 before it)."""
        now = asyncio.get_running_loop().time()
        if self._origin is None:
            self._origin = now
        return now - self._origin

    async def generate(self, prompt_tokens: int, output_tokens: int) -> float:
        """Serve one request and return its latency; raise a 429 error if rejected."""
        elapsed = self.elapsed_s()
        draw = self._rng.random() if self.profile.rate_429 > 0 else 1.0
        decision = self.profile.admit(self.in_flight, elapsed, draw)
        self.arrivals.append(
            ArrivalRecord(elapsed, self.in_flight, isinstance(decision, Rejection))
        )
        if isinstance(decision, Rejection):
            raise TransientLLMError(
                f"capacity server returned HTTP 429 ({decision.reason}); "
                f"retry after {decision.retry_after_s:g} s",
                status_code=429,
                retry_after_s=decision.retry_after_s,
            )
        latency = decision * self.profile.base_latency_s(prompt_tokens, output_tokens)
        self.in_flight += 1
        try:
            await asyncio.sleep(latency)
        finally:
            self.in_flight -= 1
        return latency

    def requests_between(self, start_s: float, end_s: float) -> int:
        """Return the requests that arrived in ``[start_s, end_s)``."""
        return sum(1 for arrival in self.arrivals if start_s <= arrival.at_s < end_s)


class CapacityChatModel:
    """A one-attempt :class:`ChatModel` on a :class:`CapacityServer`.

    ``output_tokens`` maps a call's index (from 0) to its output length;
    without it every call generates ``max_tokens``. A rejected call raises
    :class:`TransientLLMError` with status 429, which
    :class:`~dyntaskmas.llm.attempts.RetryingChatModel` retries.
    """

    def __init__(
        self,
        server: CapacityServer,
        *,
        output_tokens: Sequence[int] | None = None,
        model: str = "capacity-sim",
    ) -> None:
        self.server = server
        self.model = model
        self._output_tokens = output_tokens
        self._calls = 0

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        index = self._calls
        self._calls += 1
        output = max_tokens
        if self._output_tokens:
            output = min(max_tokens, self._output_tokens[index % len(self._output_tokens)])
        prompt = estimate_prompt_tokens(message.content for message in messages)
        latency = await self.server.generate(prompt, output)
        return Completion(
            text=filler_text(output, offset=index),
            usage=Usage(prompt_tokens=prompt, completion_tokens=output),
            model=self.model,
            finish_reason="stop" if output < max_tokens else "length",
            latency_s=latency,
        )
