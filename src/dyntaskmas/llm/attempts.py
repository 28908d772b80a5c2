"""The retry loop that every model backend shares, and the record of each attempt.

:func:`call_with_retries` makes one logical call out of HTTP attempts (or
in-process attempts for the simulator). Each attempt waits on the
endpoint's :class:`~dyntaskmas.llm.limiter.BackoffGate`, takes a slot of its
:class:`~dyntaskmas.llm.limiter.ConcurrencyLimiter` and then runs. A failed
attempt is retried after a delay from the
:class:`~dyntaskmas.llm.retry.RetryPolicy`.

A 429 or 503 closes the gate for every caller of the endpoint: for the
Retry-After the server sent, or for the policy's jittered backoff when it
sent none. The gate then lets one probe through before the others, so
throttled callers never retry in lockstep.

Every attempt, failed or not, is reported to the endpoint's
``attempt_listeners`` as an :class:`AttemptRecord`; the adaptive monitor
reads latencies, token counts and 429s from them. A listener must not
raise; the loop calls them synchronously.

:class:`RetryingChatModel` applies the loop to an in-process model whose
``complete`` makes one attempt and raises :class:`LLMError` on failure,
such as the simulator's capacity server.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from dyntaskmas.clock import Clock, MonotonicClock
from dyntaskmas.errors import (
    EndpointUnavailableError,
    LLMError,
    LLMTimeoutError,
    TransientLLMError,
)
from dyntaskmas.llm.limiter import BackoffGate, ConcurrencyLimiter
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.types import ChatMessage, ChatModel, Completion

logger = logging.getLogger(__name__)

AttemptStatus = Literal["ok", "rate_limited", "timeout", "server_error", "unavailable", "failed"]

#: Statuses that mean the server is overloaded; they close the endpoint's gate.
_THROTTLE_STATUS_CODES = frozenset({429, 503})


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of a model call, as the retry loop saw it.

    Times are on the endpoint's clock. ``in_flight`` is the endpoint's
    requests in flight when the attempt started, this one included. Token
    counts are 0 for a failed attempt. ``time_to_first_token_s`` is set only
    for a successful streamed attempt.
    """

    endpoint: str
    started_at: float
    finished_at: float
    status: AttemptStatus
    status_code: int | None = None
    retry_after_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    in_flight: int = 1
    time_to_first_token_s: float | None = None

    @property
    def latency_s(self) -> float:
        return self.finished_at - self.started_at


AttemptListener = Callable[[AttemptRecord], None]


class FlowControl(Protocol):
    """The state that the callers of one endpoint share: limit, gate, clock and listeners."""

    name: str
    limiter: ConcurrencyLimiter
    gate: BackoffGate
    clock: Clock
    attempt_listeners: list[AttemptListener]


class LocalFlow:
    """Flow control for an endpoint without a URL, such as an in-process simulator."""

    def __init__(self, name: str, *, concurrency: int, clock: Clock | None = None) -> None:
        self.name = name
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.limiter = ConcurrencyLimiter(concurrency)
        self.gate = BackoffGate(self.clock)
        self.attempt_listeners: list[AttemptListener] = []


def classify(error: LLMError) -> AttemptStatus:
    """Return the attempt status that ``error`` stands for."""
    if isinstance(error, EndpointUnavailableError):
        return "unavailable"
    if isinstance(error, LLMTimeoutError) or error.status_code == 408:
        return "timeout"
    if isinstance(error, TransientLLMError):
        # 5xx responses, and bodies that are not valid JSON.
        return "rate_limited" if error.status_code == 429 else "server_error"
    return "failed"


async def call_with_retries(
    flow: FlowControl,
    attempt: Callable[[int], Awaitable[Completion]],
    *,
    policy: RetryPolicy,
    rng: random.Random,
) -> Completion:
    """Run ``attempt`` under ``flow``'s gate and limit until it succeeds or must give up.

    ``attempt`` receives the attempt number (from 1) and raises an
    :class:`LLMError` on failure. Transient errors and unreachable
    endpoints are retried; any other error is raised at once.
    """
    attempts = 0
    previous_delay_s: float | None = None

    while True:
        attempts += 1

        # Wait for the gate before queueing for a slot, and check it again
        # once a slot is held, because another caller may have closed it
        # while this one was queued.
        probe = False
        settled = False
        try:
            async with _admitted(flow) as probe:
                in_flight = flow.limiter.in_flight
                started = flow.clock.now()
                try:
                    completion = await attempt(attempts)
                except LLMError as exc:
                    error = exc
                else:
                    _notify(flow, _record(flow, started, "ok", in_flight, completion=completion))
                    if probe:
                        flow.gate.settle_probe(throttled=False)
                        settled = True
                    return completion
            status = classify(error)
            retry_after_s = error.retry_after_s if isinstance(error, TransientLLMError) else None
            _notify(
                flow,
                _record(flow, started, status, in_flight, error=error, retry_after_s=retry_after_s),
            )

            retryable = isinstance(error, TransientLLMError | EndpointUnavailableError)
            throttled = error.status_code in _THROTTLE_STATUS_CODES
            delay_s = policy.delay_s(
                attempts + 1, rng, retry_after_s=retry_after_s, previous_delay_s=previous_delay_s
            )
            # The pause applies to every caller, even when this call gives up.
            # A pause too long to wait for is not imposed on anyone.
            if throttled and (retry_after_s is None or retry_after_s <= policy.max_retry_after_s):
                flow.gate.close_for(retry_after_s if retry_after_s is not None else delay_s)
            if probe:
                flow.gate.settle_probe(throttled=throttled or status == "unavailable")
                settled = True
        finally:
            if probe and not settled:
                # Cancelled, or an unexpected error: let the next caller probe.
                flow.gate.settle_probe(throttled=True)

        if not retryable or not policy.should_retry(attempts, retry_after_s=retry_after_s):
            raise error

        previous_delay_s = delay_s
        logger.info(
            "endpoint %s: attempt %d of %d failed (%s); retrying in %.2f s",
            flow.name,
            attempts,
            policy.max_attempts,
            status if error.status_code is None else f"HTTP {error.status_code}",
            delay_s,
        )
        await flow.clock.sleep(delay_s)


class RetryingChatModel:
    """A :class:`ChatModel` that runs an in-process single-attempt model under flow control.

    ``inner.complete`` makes one attempt and raises :class:`LLMError` on
    failure; this model adds the gate, the limit, retries and attempt
    records of ``flow``, as the HTTP backend does for its endpoint.
    """

    def __init__(
        self,
        inner: ChatModel,
        flow: FlowControl,
        *,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.flow = flow
        self.policy = policy if policy is not None else RetryPolicy()
        self._rng = rng if rng is not None else random.Random(0)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        async def attempt(number: int) -> Completion:
            completion = await self.inner.complete(
                messages, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema
            )
            # replace keeps every other field, tool calls and time to first token included.
            return dataclasses.replace(completion, attempts=number)

        return await call_with_retries(self.flow, attempt, policy=self.policy, rng=self._rng)


@asynccontextmanager
async def _admitted(flow: FlowControl) -> AsyncIterator[bool]:
    """Hold a slot of ``flow``'s limit with its gate passed; yield whether this is the probe.

    A caller that gets a slot and then finds the gate closed gives the slot
    back before it waits again. Waiting with the slot held could deadlock:
    the probe that would reopen the gate may be queued for that very slot.
    A probe given up before the block starts is settled as throttled, so
    the next caller probes.
    """
    while True:
        probe = await flow.gate.wait()
        admitted = False
        try:
            async with flow.limiter.acquire():
                passed = True if probe else flow.gate.try_pass()
                if passed is not None:
                    admitted = True
                    yield passed
                    return
        except BaseException:
            if probe and not admitted:
                flow.gate.settle_probe(throttled=True)
            raise


def _record(
    flow: FlowControl,
    started: float,
    status: AttemptStatus,
    in_flight: int,
    *,
    completion: Completion | None = None,
    error: LLMError | None = None,
    retry_after_s: float | None = None,
) -> AttemptRecord:
    return AttemptRecord(
        endpoint=flow.name,
        started_at=started,
        finished_at=flow.clock.now(),
        status=status,
        status_code=error.status_code if error is not None else None,
        retry_after_s=retry_after_s,
        prompt_tokens=completion.usage.prompt_tokens if completion is not None else 0,
        completion_tokens=completion.usage.completion_tokens if completion is not None else 0,
        in_flight=in_flight,
        time_to_first_token_s=(
            completion.time_to_first_token_s if completion is not None else None
        ),
    )


def _notify(flow: FlowControl, record: AttemptRecord) -> None:
    for listener in list(flow.attempt_listeners):
        listener(record)
