"""Tests of ManualClock: sleepers wake only when time is advanced past their deadline."""

from __future__ import annotations

import asyncio

import pytest

from dyntaskmas.clock import ManualClock, MonotonicClock


async def test_sleeper_wakes_after_advance() -> None:
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(2.0))
    await clock.wait_for_sleepers(1)

    clock.advance(1.0)
    await asyncio.sleep(0)
    assert not sleeper.done()

    clock.advance(1.0)
    await sleeper
    assert clock.now() == 2.0


async def test_sleepers_wake_in_deadline_order() -> None:
    clock = ManualClock()
    woken: list[str] = []

    async def sleep_then_record(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woken.append(name)

    async with asyncio.TaskGroup() as group:
        group.create_task(sleep_then_record("late", 3.0))
        group.create_task(sleep_then_record("early", 1.0))
        group.create_task(sleep_then_record("middle", 2.0))
        await clock.wait_for_sleepers(3)
        assert clock.deadlines() == [1.0, 2.0, 3.0]
        clock.advance(5.0)

    assert woken == ["early", "middle", "late"]


async def test_zero_sleep_returns_without_advance() -> None:
    clock = ManualClock(start=7.0)

    await clock.sleep(0.0)
    await clock.sleep(-1.0)

    assert clock.now() == 7.0
    assert clock.sleepers == 0


async def test_cancelled_sleeper_not_counted() -> None:
    clock = ManualClock()
    sleeper = asyncio.create_task(clock.sleep(1.0))
    await clock.wait_for_sleepers(1)

    sleeper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sleeper

    assert clock.sleepers == 0
    assert clock.deadlines() == []


def test_advance_backwards_rejected() -> None:
    with pytest.raises(ValueError, match="backwards"):
        ManualClock().advance(-0.1)


async def test_monotonic_clock_sleeps_real_time() -> None:
    clock = MonotonicClock()
    before = clock.now()

    await clock.sleep(0.01)

    assert clock.now() - before >= 0.01
