"""The shared retry loop on in-process models: statuses, records and the probe."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from dyntaskmas.clock import ManualClock
from dyntaskmas.errors import (
    EndpointUnavailableError,
    LLMError,
    LLMRequestError,
    LLMTimeoutError,
    TransientLLMError,
)
from dyntaskmas.llm.attempts import AttemptRecord, LocalFlow, RetryingChatModel, classify
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.types import ChatMessage, Completion, ToolCall, Usage
from dyntaskmas.sim.capacity import CapacityChatModel, CapacityProfile, CapacityServer
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

QUESTION = [ChatMessage("user", "2 + 2?")]
FAST = RetryPolicy(max_attempts=4, base_delay_s=0.01, max_delay_s=0.01)


class Flaky:
    """A one-attempt model that raises the queued errors first, then returns a completion."""

    def __init__(self, *errors: LLMError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        self.calls += 1
        await asyncio.sleep(0)
        if self.errors:
            raise self.errors.pop(0)
        return Completion(
            "4",
            Usage(5, 1),
            "flaky",
            "stop",
            0.0,
            tool_calls=(ToolCall("c1", "add", '{"a": 2}'),),
            time_to_first_token_s=0.25,
        )


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TransientLLMError("busy", status_code=429), "rate_limited"),
        (LLMTimeoutError("slow"), "timeout"),
        (TransientLLMError("request timeout", status_code=408), "timeout"),
        (TransientLLMError("bad gateway", status_code=502), "server_error"),
        (TransientLLMError("invalid JSON"), "server_error"),
        (EndpointUnavailableError("refused"), "unavailable"),
        (LLMRequestError("bad request", status_code=400), "failed"),
    ],
)
def test_classify_maps_errors(error: LLMError, status: str) -> None:
    assert classify(error) == status


async def test_retried_call_records_each_attempt() -> None:
    flow = LocalFlow("e", concurrency=2)
    records: list[AttemptRecord] = []
    flow.attempt_listeners.append(records.append)
    model = RetryingChatModel(Flaky(TransientLLMError("down", status_code=502)), flow, policy=FAST)

    completion = await model.complete(QUESTION, max_tokens=4)

    assert completion.attempts == 2
    assert completion.tool_calls == (ToolCall("c1", "add", '{"a": 2}'),)
    assert completion.time_to_first_token_s == 0.25
    assert [r.status for r in records] == ["server_error", "ok"]
    assert records[1].completion_tokens == 1
    assert not flow.gate.half_open  # a 502 does not ask callers to slow down


async def test_client_error_not_retried() -> None:
    inner = Flaky(LLMRequestError("bad request", status_code=400))
    model = RetryingChatModel(inner, LocalFlow("e", concurrency=1), policy=FAST)

    with pytest.raises(LLMRequestError):
        await model.complete(QUESTION, max_tokens=4)

    assert inner.calls == 1


async def test_cancelled_probe_hands_over() -> None:
    """A probe cancelled mid-attempt lets the next caller probe instead of blocking it."""
    clock = ManualClock()
    flow = LocalFlow("e", concurrency=2, clock=clock)
    flow.gate.close_for(1.0)
    started = asyncio.Event()
    release = asyncio.Event()

    class Blocking:
        async def complete(self, *args: Any, **kwargs: Any) -> Completion:
            started.set()
            await release.wait()
            return Completion("4", Usage(5, 1), "blocking", "stop", 0.0)

    model = RetryingChatModel(Blocking(), flow, policy=FAST)  # type: ignore[arg-type]
    first = asyncio.create_task(model.complete(QUESTION, max_tokens=4))
    second = asyncio.create_task(model.complete(QUESTION, max_tokens=4))
    await clock.wait_for_sleepers(2)
    clock.advance(1.0)
    await started.wait()

    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    release.set()

    completion = await asyncio.wait_for(second, timeout=5)
    assert completion.text == "4"
    assert not flow.gate.half_open


def test_probe_gets_slot_under_429s() -> None:
    """Frequent 429s while the limit is full: the probe still gets a slot, every call ends.

    A caller that takes a slot and then finds the gate closed must not keep
    the slot while it waits, or the probe may queue behind it for ever.
    """
    server = CapacityServer(
        CapacityProfile(rate_429=0.3, random_retry_after_s=0.5), rng=random.Random(5)
    )
    done: list[int] = []

    async def main() -> None:
        clock = EventLoopClock()
        flow = LocalFlow("flaky", concurrency=2, clock=clock)
        model = RetryingChatModel(
            CapacityChatModel(server, output_tokens=[50]),
            flow,
            policy=RetryPolicy(max_attempts=100, base_delay_s=0.1, max_delay_s=1.0),
            rng=random.Random(6),
        )

        async def call(index: int) -> None:
            await model.complete(QUESTION, max_tokens=50)
            done.append(index)

        async with asyncio.timeout(3600), asyncio.TaskGroup() as group:
            for index in range(12):
                group.create_task(call(index))

    run_virtual(main())

    assert sorted(done) == list(range(12))
    assert any(arrival.rejected for arrival in server.arrivals)
