"""The asyncio driver of the simulated server: a :class:`ServerModel` on an event loop.

:class:`SimulatedServer` turns the pure state machine into awaitable
requests. It reads time from the running event loop, so the same driver
serves both forms of the simulator: on a
:class:`~dyntaskmas.sim.virtual_time.VirtualTimeEventLoop` hours of model
time pass in seconds, and on an ordinary loop it runs in real time (the
HTTP server). Model time is ``(loop.time() - origin) * speedup``, where
``origin`` is the loop time of the first request.

The driver keeps one timer, set for the model's next event (a prefill step's
end or a request's finish), so a long decode run costs one wake-up, not one
per step. It does not own the loop or any task.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from dyntaskmas.errors import ConfigError
from dyntaskmas.sim.server_model import (
    FinishedRequest,
    Progress,
    ServerConfig,
    ServerModel,
    ServerStats,
)


@dataclass(frozen=True)
class PendingRequest:
    """A submitted request: futures for its first token and for its end.

    ``first_token`` resolves to the model time of the first token.
    Cancelling either future only stops the wait. The simulated server
    still runs the request to its end, as a server does for a client that
    went away.
    """

    request_id: int
    first_token: asyncio.Future[float]
    finished: asyncio.Future[FinishedRequest]


class SimulatedServer:
    """A continuous-batching LLM server simulated on the running event loop.

    ``speedup`` divides every model duration when mapped to loop time
    (2.0 runs twice as fast). Use one instance from one event loop only.
    """

    def __init__(self, config: ServerConfig | None = None, *, speedup: float = 1.0) -> None:
        if not (math.isfinite(speedup) and speedup > 0):
            raise ConfigError(f"speedup must be a finite number > 0, got {speedup}")
        self.config = config if config is not None else ServerConfig()
        self.speedup = speedup
        self.model = ServerModel(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origin = 0.0
        self._pending: dict[int, PendingRequest] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_target: float | None = None

    @property
    def in_flight(self) -> int:
        """The requests submitted and not yet finished."""
        return len(self._pending)

    def now(self) -> float:
        """Return the current model time (0 before the first request)."""
        if self._loop is None:
            return self.model.now
        return max(self.model.now, (self._loop.time() - self._origin) * self.speedup)

    def to_loop_seconds(self, model_seconds: float) -> float:
        """Convert a model duration into event-loop seconds."""
        return model_seconds / self.speedup

    def submit(self, prompt_tokens: int, output_tokens: int) -> PendingRequest:
        """Send a request to the simulated server now and return its futures.

        Raises :class:`~dyntaskmas.sim.server_model.ContextLengthError` when
        the request does not fit the context window.
        """
        loop = self._bind()
        now = self.now()
        self._deliver(self.model.advance(now))
        try:
            request_id = self.model.submit(prompt_tokens, output_tokens, now)
        finally:
            # advance() may have moved the next event even if submit() raised.
            self._reschedule()
        pending = PendingRequest(request_id, loop.create_future(), loop.create_future())
        self._pending[request_id] = pending
        return pending

    async def generate(self, prompt_tokens: int, output_tokens: int) -> FinishedRequest:
        """Submit a request and wait until its last token."""
        pending = self.submit(prompt_tokens, output_tokens)
        return await pending.finished

    def stats(self) -> ServerStats:
        """Return the model's counters up to now."""
        if self._loop is not None:
            self._deliver(self.model.advance(self.now()))
            self._reschedule()
        return self.model.stats()

    def reset_window(self) -> None:
        """Start a new measured window now."""
        if self._loop is not None:
            self._deliver(self.model.advance(self.now()))
            self._reschedule()
        self.model.reset_window()

    def close(self) -> None:
        """Stop the timer and cancel the futures of unfinished requests."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_target = None
        for pending in self._pending.values():
            pending.first_token.cancel()
            pending.finished.cancel()
        self._pending.clear()

    # --- internals ------------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            self._origin = loop.time()
        elif self._loop is not loop:
            raise RuntimeError(
                "this SimulatedServer runs on another event loop; create one per loop"
            )
        return loop

    def _reschedule(self) -> None:
        target = self.model.next_event_time()
        if target == self._timer_target:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_target = target
        if target is not None:
            assert self._loop is not None, "a request was submitted, so the loop is bound"
            when = self._origin + target / self.speedup
            self._timer = self._loop.call_at(when, self._on_timer, target)

    def _on_timer(self, target: float) -> None:
        self._timer = None
        self._timer_target = None
        # Converting to loop time and back may round below the target, and
        # then advance() would not process the event. The loop runs this
        # callback only once the target is due, so the target is the floor.
        self._deliver(self.model.advance(max(target, self.now())))
        self._reschedule()

    def _deliver(self, progress: Progress) -> None:
        for first in progress.first_tokens:
            pending = self._pending.get(first.request_id)
            if pending is not None and not pending.first_token.done():
                pending.first_token.set_result(first.at)
        for finished in progress.finished:
            pending = self._pending.pop(finished.request_id, None)
            if pending is None:
                continue
            if not pending.first_token.done():
                pending.first_token.set_result(finished.first_token_at)
            if not pending.finished.done():
                pending.finished.set_result(finished)
