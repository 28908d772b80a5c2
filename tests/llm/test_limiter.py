"""Tests of ConcurrencyLimiter (FIFO, resizable) and BackoffGate, without HTTP."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from dyntaskmas.clock import ManualClock
from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.limiter import BackoffGate, ConcurrencyLimiter


async def let_tasks_block() -> None:
    # One pass of the event loop runs every newly created task up to its
    # first real suspension, which here is waiting for a slot.
    await asyncio.sleep(0)


class SlotHolder:
    """Tasks that each take a slot and hold it until released by name."""

    def __init__(self, limiter: ConcurrencyLimiter) -> None:
        self.limiter = limiter
        self.acquired: list[str] = []
        self._release: dict[str, asyncio.Event] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str) -> asyncio.Task[None]:
        self._release[name] = asyncio.Event()
        task = asyncio.create_task(self._hold(name))
        self._tasks[name] = task
        return task

    async def release(self, name: str) -> None:
        self._release[name].set()
        await self._tasks[name]

    async def _hold(self, name: str) -> None:
        async with self.limiter.acquire():
            self.acquired.append(name)
            await self._release[name].wait()

    async def release_all(self) -> None:
        for event in self._release.values():
            event.set()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_waiters_served_in_arrival_order() -> None:
    limiter = ConcurrencyLimiter(1)
    holder = SlotHolder(limiter)
    holder.start("first")
    await let_tasks_block()
    for name in ("a", "b", "c"):
        holder.start(name)
        await let_tasks_block()
    assert limiter.waiting == 3

    await holder.release("first")
    await let_tasks_block()
    await holder.release("a")
    await let_tasks_block()
    await holder.release("b")
    await let_tasks_block()

    assert holder.acquired == ["first", "a", "b", "c"]
    await holder.release_all()


async def test_raising_limit_admits_waiters() -> None:
    limiter = ConcurrencyLimiter(1)
    holder = SlotHolder(limiter)
    for name in ("a", "b", "c"):
        holder.start(name)
    await let_tasks_block()
    assert limiter.in_flight == 1
    assert limiter.waiting == 2

    limiter.limit = 3
    await let_tasks_block()

    assert limiter.in_flight == 3
    assert limiter.waiting == 0
    assert holder.acquired == ["a", "b", "c"]
    await holder.release_all()


async def test_lowering_limit_keeps_requests_in_flight() -> None:
    limiter = ConcurrencyLimiter(3)
    holder = SlotHolder(limiter)
    for name in ("a", "b", "c", "d"):
        holder.start(name)
    await let_tasks_block()

    limiter.limit = 1
    assert limiter.in_flight == 3

    await holder.release("a")
    await holder.release("b")
    await let_tasks_block()
    assert limiter.in_flight == 1
    assert holder.acquired == ["a", "b", "c"]
    assert limiter.waiting == 1

    await holder.release("c")
    await let_tasks_block()
    assert holder.acquired == ["a", "b", "c", "d"]
    await holder.release_all()


async def test_newcomer_does_not_overtake_waiter() -> None:
    limiter = ConcurrencyLimiter(1)
    holder = SlotHolder(limiter)
    holder.start("a")
    await let_tasks_block()
    holder.start("b")
    await let_tasks_block()

    # Releasing "a" hands the slot to "b" before "late" even asks for it.
    await holder.release("a")
    holder.start("late")
    await let_tasks_block()

    assert holder.acquired == ["a", "b"]
    assert limiter.waiting == 1
    await holder.release_all()


async def test_cancelled_waiter_gives_up_its_place() -> None:
    limiter = ConcurrencyLimiter(1)
    holder = SlotHolder(limiter)
    holder.start("a")
    await let_tasks_block()
    cancelled = holder.start("cancelled")
    holder.start("b")
    await let_tasks_block()

    cancelled.cancel()
    await let_tasks_block()
    await holder.release("a")
    await let_tasks_block()

    assert holder.acquired == ["a", "b"]
    assert limiter.in_flight == 1
    assert limiter.waiting == 0
    await holder.release_all()


async def test_slot_released_on_exception() -> None:
    limiter = ConcurrencyLimiter(1)

    with pytest.raises(RuntimeError):
        async with limiter.acquire():
            raise RuntimeError("boom")

    assert limiter.in_flight == 0


@pytest.mark.parametrize("limit", [0, -1, True, 1.5])
def test_invalid_limit_rejected(limit: object) -> None:
    with pytest.raises(ConfigError, match="concurrency limit"):
        ConcurrencyLimiter(limit)  # type: ignore[arg-type]
    limiter = ConcurrencyLimiter(2)
    with pytest.raises(ConfigError, match="concurrency limit"):
        limiter.limit = limit  # type: ignore[assignment]
    assert limiter.limit == 2


async def test_gate_open_by_default() -> None:
    gate = BackoffGate(ManualClock())

    await gate.wait()

    assert gate.remaining_s() == 0.0


async def test_gate_holds_until_deadline() -> None:
    clock = ManualClock()
    gate = BackoffGate(clock)
    gate.close_for(2.0)
    waiter = asyncio.create_task(gate.wait())
    await clock.wait_for_sleepers(1)

    clock.advance(1.5)
    await clock.wait_for_sleepers(1)
    assert not waiter.done()
    assert gate.remaining_s() == 0.5

    clock.advance(0.5)
    await waiter
    assert gate.remaining_s() == 0.0


async def test_gate_keeps_longest_pause() -> None:
    clock = ManualClock()
    gate = BackoffGate(clock)

    gate.close_for(5.0)
    gate.close_for(1.0)

    assert gate.open_at == 5.0


async def test_gate_extended_while_waiting() -> None:
    clock = ManualClock()
    gate = BackoffGate(clock)
    gate.close_for(1.0)
    waiter = asyncio.create_task(gate.wait())
    await clock.wait_for_sleepers(1)

    gate.close_for(3.0)
    clock.advance(1.0)
    await clock.wait_for_sleepers(1)

    assert not waiter.done()
    assert clock.deadlines() == [3.0]
    clock.advance(2.0)
    await waiter


async def test_gate_lets_one_probe_through_after_pause() -> None:
    clock = ManualClock()
    gate = BackoffGate(clock)
    gate.close_for(1.0)
    waiters = [asyncio.create_task(gate.wait()) for _ in range(3)]
    await clock.wait_for_sleepers(3)

    clock.advance(1.0)
    await let_tasks_block()
    await let_tasks_block()

    done = [waiter for waiter in waiters if waiter.done()]
    assert len(done) == 1
    assert done[0].result() is True
    assert gate.half_open

    gate.settle_probe(throttled=False)
    results = await asyncio.gather(*waiters)
    assert sorted(results) == [False, False, True]
    assert not gate.half_open


async def test_gate_throttled_probe_hands_over() -> None:
    clock = ManualClock()
    gate = BackoffGate(clock)
    gate.close_for(1.0)
    first = asyncio.create_task(gate.wait())
    second = asyncio.create_task(gate.wait())
    await clock.wait_for_sleepers(2)
    clock.advance(1.0)
    await let_tasks_block()
    await let_tasks_block()
    probe, other = (first, second) if first.done() else (second, first)
    assert probe.result() is True

    # The probe was throttled again: the gate closes, and the other caller
    # becomes the next probe once the new pause ends.
    gate.close_for(2.0)
    gate.settle_probe(throttled=True)
    await clock.wait_for_sleepers(1)
    assert not other.done()
    clock.advance(2.0)

    assert await other is True
    assert gate.half_open
    assert gate.pauses == 2


async def test_gate_open_without_pause_has_no_probe() -> None:
    gate = BackoffGate(ManualClock())

    assert await gate.wait() is False
    assert not gate.half_open
