"""Virtual time for asyncio: an event loop whose clock jumps to the next timer.

:class:`VirtualTimeEventLoop` is an ordinary selector event loop with two
changes. Its :meth:`~VirtualTimeEventLoop.time` returns a virtual clock that
starts at 0. Its selector polls for I/O without blocking and, when no I/O is
ready and the loop would otherwise sleep until its next timer, moves the
virtual clock forward by that sleep instead. asyncio only sleeps when no
callback is ready to run, so time moves exactly when every task is blocked,
and it moves straight to the next scheduled wake-up. Code that waits with
``asyncio.sleep``, ``asyncio.timeout`` or ``loop.call_at`` (the simulated
server, the engine, a clock built on the loop) runs unchanged, hours of
virtual time passing in the wall time its callbacks take. With no I/O and
seeded randomness a run is deterministic.

:class:`EventLoopClock` is the :class:`~dyntaskmas.clock.Clock` that reads
the running loop's time, virtual or not; give it to the engine.
:func:`run_virtual` runs a coroutine on a fresh virtual loop.

The same idea drives the ``looptime`` package's pytest plugin; this module
is a small standalone form for library use.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

_T = TypeVar("_T")


class _FastForwardSelector(selectors.BaseSelector):
    """A selector that turns the loop's timed waits into jumps of a virtual clock.

    It wraps the default selector, so real file descriptors, the loop's
    self-pipe among them, still work.
    """

    def __init__(self, start: float) -> None:
        self.now = start
        self._inner = selectors.DefaultSelector()

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready:
            return ready
        if timeout is None:
            # No timer is scheduled, so only I/O or another thread (through
            # the self-pipe) can wake the loop: wait for them in real time.
            return self._inner.select(None)
        if timeout > 0:
            self.now += timeout
        return []

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeEventLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a virtual clock that skips idle waits.

    NOTE: real I/O and threads still take real time while the virtual clock
    runs ahead. A socket read or an executor job that is pending while a
    timer is scheduled sees the clock jump to that timer first, so code
    under virtual time should not wait on the network or on threads.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._fast_forward = _FastForwardSelector(start)
        super().__init__(selector=self._fast_forward)

    def time(self) -> float:
        return self._fast_forward.now


class EventLoopClock:
    """A :class:`~dyntaskmas.clock.Clock` that reads the running event loop's time.

    On a :class:`VirtualTimeEventLoop` it is virtual; on an ordinary loop
    it is :func:`time.monotonic`. ``now()`` must be called inside the loop.
    """

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


def run_virtual(main: Coroutine[Any, Any, _T], *, start: float = 0.0) -> _T:
    """Run ``main`` to completion on a new :class:`VirtualTimeEventLoop` and close it."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeEventLoop(start)) as runner:
        return runner.run(main)
