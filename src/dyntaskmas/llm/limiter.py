"""Per-endpoint flow control: a resizable concurrency limit and a shared backoff gate.

:class:`ConcurrencyLimiter` bounds the requests in flight to one endpoint.
Its limit can be changed while requests run, because the adaptive allocator
raises and lowers it from live measurements. Waiters are served first come,
first served.

:class:`BackoffGate` holds back every request to an endpoint after the server
asks for a pause (a 429 or 503 with Retry-After). Without it each caller
would back off on its own, and callers that were throttled together would
retry together and be throttled again. After a pause it lets one probe
request through and holds the others until the probe's outcome is known.

Neither class retries or talks to the network; the retry loop in
:mod:`dyntaskmas.llm.attempts` uses both.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dyntaskmas.clock import Clock, MonotonicClock
from dyntaskmas.errors import ConfigError


class ConcurrencyLimiter:
    """A FIFO semaphore whose limit can be changed at run time.

    Raising the limit admits waiters at once. Lowering it never interrupts
    a request in flight; new requests wait until ``in_flight`` has dropped
    below the new limit.

    Invariant: a waiter's future is resolved only together with incrementing
    ``_in_flight``, so the slot belongs to the waiter from that moment, even
    if it is cancelled before it resumes.
    """

    def __init__(self, limit: int) -> None:
        _check_limit(limit)
        self._limit = limit
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def limit(self) -> int:
        """The maximum number of requests in flight."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        _check_limit(value)
        self._limit = value
        self._admit_waiters()

    @property
    def in_flight(self) -> int:
        """The number of slots taken now, above ``limit`` for a while after a decrease."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """The number of callers waiting for a slot."""
        return sum(1 for waiter in self._waiters if not waiter.done())

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        """Hold one slot for the duration of the ``async with`` block."""
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        # The fast path is taken only when no waiter is queued, so a newcomer
        # never overtakes a waiter.
        if self._in_flight < self._limit and not self._waiters:
            self._in_flight += 1
            return

        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was granted just before the cancellation arrived.
                self._release()
            else:
                # _admit_waiters may already have dropped the cancelled waiter.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
                self._admit_waiters()
            raise

    def _release(self) -> None:
        assert self._in_flight > 0, "released a slot that was not held"
        self._in_flight -= 1
        self._admit_waiters()

    def _admit_waiters(self) -> None:
        while self._waiters and self._in_flight < self._limit:
            waiter = self._waiters.popleft()
            if waiter.done():
                # Cancelled while queued, so it gets no slot.
                continue
            self._in_flight += 1
            waiter.set_result(None)


class BackoffGate:
    """A pause shared by every request to one endpoint, reopened by a single probe.

    :meth:`close_for` moves the reopening time later, never earlier, so the
    longest pause any server response asked for wins. :meth:`wait` returns
    once the gate is open, rechecking after each sleep because another
    response may have extended the pause in the meantime.

    After a pause the gate is half-open: the first caller through is the
    probe (:meth:`wait` returns True for it) and every other caller waits
    until the probe's attempt is settled with :meth:`settle_probe`. So
    callers throttled together never retry together: while the server keeps
    throttling, one request per pause reaches it instead of one per caller.

    NOTE: every 429 costs its Retry-After plus one whole probe request of
    idle endpoint, even a sporadic 429 that says nothing about the load.
    With 10 % random 429s and Retry-After: 1 this caps a simulated server
    that otherwise runs 26 tasks/s at about 4 (``dyntaskmas bench
    adaptive``). Settling the probe at its first streamed token would
    shorten the wait; no caller does that yet.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._open_at = self._clock.now()
        # True from a pause until a probe's attempt was not throttled.
        self._half_open = False
        self._probe_out = False
        self._probe_waiters: list[asyncio.Future[None]] = []
        self.pauses = 0

    @property
    def open_at(self) -> float:
        """The clock time at which requests may be sent again."""
        return self._open_at

    @property
    def half_open(self) -> bool:
        """Whether the gate lets only a probe through until one attempt is not throttled."""
        return self._half_open

    def remaining_s(self) -> float:
        """Return the seconds until the gate opens, 0 when it is open."""
        return max(0.0, self._open_at - self._clock.now())

    def close_for(self, seconds: float) -> None:
        """Hold back every request for ``seconds`` from now, unless already held longer."""
        if seconds > 0:
            self._open_at = max(self._open_at, self._clock.now() + seconds)
            self._half_open = True
            self.pauses += 1

    async def wait(self) -> bool:
        """Wait until this caller may send; return True when it is the probe after a pause.

        A caller that gets True must call :meth:`settle_probe` once its
        attempt is over, whatever the outcome, or the other callers wait on.
        """
        while True:
            remaining = self._open_at - self._clock.now()
            if remaining > 0:
                await self._clock.sleep(remaining)
                continue
            passed = self.try_pass()
            if passed is not None:
                return passed
            await self._wait_for_probe()

    def try_pass(self) -> bool | None:
        """Pass the gate without waiting, or return None when the caller must wait.

        Otherwise it returns what :meth:`wait` would. A caller with a
        concurrency slot uses it, because it must give the slot back before
        it waits: the probe may be queued for that slot.
        """
        if self._open_at > self._clock.now():
            return None
        if not self._half_open:
            return False
        if not self._probe_out:
            self._probe_out = True
            return True
        return None

    def settle_probe(self, *, throttled: bool) -> None:
        """Report the probe's outcome: a throttled probe keeps the gate half-open.

        A probe that gave up without a response (cancelled, connection
        failed) counts as throttled, so the next caller probes again.
        """
        self._probe_out = False
        if not throttled:
            self._half_open = False
        waiters, self._probe_waiters = self._probe_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_probe(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probe_waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._probe_waiters:
                self._probe_waiters.remove(waiter)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"concurrency limit must be an integer >= 1, got {limit!r}")
