"""Time as an injected dependency: the :class:`Clock` protocol and two clocks.

Code that waits or measures durations takes a ``Clock`` instead of calling
:func:`time.monotonic` and :func:`asyncio.sleep` itself, so a test can move a
:class:`ManualClock` forward instead of sleeping. Wall-clock time (for HTTP
dates) is not a clock's concern.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """A monotonic time source in seconds and a way to wait on it."""

    def now(self) -> float:
        """Return the current time in seconds. Only differences are meaningful."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait until ``now()`` has advanced by at least ``seconds``."""
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic` and :func:`asyncio.sleep`."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when :meth:`advance` is called.

    Sleepers wake in deadline order, ties in the order they started sleeping.
    :meth:`wait_for_sleepers` lets a test wait until its tasks are blocked on
    the clock, so it can advance time without guessing how long they need to
    get there.

    >>> clock = ManualClock(start=10.0)
    >>> clock.advance(2.5)
    >>> clock.now()
    12.5
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        # Entries are (deadline, sequence, future); the sequence keeps equal
        # deadlines first-come-first-served and keeps futures out of comparisons.
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._sequence = itertools.count()
        self._changed: asyncio.Condition | None = None

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            # Still yield once, as asyncio.sleep(0) does, so a loop that
            # sleeps for zero seconds cannot starve other tasks.
            await asyncio.sleep(0)
            return

        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._sequence), waker))
        try:
            await self._notify()
            await waker
        finally:
            # A cancelled sleeper must stop counting as one. Cancelling a
            # future that advance() already resolved does nothing.
            waker.cancel()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed.

        The woken tasks run when the caller next yields to the event loop.
        """
        if seconds < 0:
            raise ValueError(f"a clock cannot move backwards: advance({seconds})")
        self._now += seconds

        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, waker = heapq.heappop(self._sleepers)
            if not waker.done():
                waker.set_result(None)

    @property
    def sleepers(self) -> int:
        """The number of tasks currently blocked in :meth:`sleep`."""
        return sum(1 for _, _, waker in self._sleepers if not waker.done())

    def deadlines(self) -> list[float]:
        """Return the wake-up times of the current sleepers, earliest first."""
        return sorted(deadline for deadline, _, waker in self._sleepers if not waker.done())

    async def wait_for_sleepers(self, count: int) -> None:
        """Wait until at least ``count`` tasks are blocked in :meth:`sleep`."""
        changed = self._condition()
        async with changed:
            await changed.wait_for(lambda: self.sleepers >= count)

    async def _notify(self) -> None:
        changed = self._condition()
        async with changed:
            changed.notify_all()

    def _condition(self) -> asyncio.Condition:
        # Created lazily so that the clock can be built outside an event loop.
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed
