"""The continuous-batching state machine of the simulated LLM server.

:class:`ServerModel` is pure: no clock, no I/O, no randomness. A driver
submits requests as they arrive (:meth:`~ServerModel.submit`) and moves
the model's time forward (:meth:`~ServerModel.advance`), which returns the
first tokens and finished requests of that interval.
:meth:`~ServerModel.next_event_time` returns when the next of them is due.
The asyncio driver is in :mod:`dyntaskmas.sim.server`.

Policy, after vLLM's V0 scheduler with chunked prefill off
(``Scheduler._schedule_default`` in ``vllm/core/scheduler.py``):

- The server has ``slots`` slots. A request occupies one from its admission to
  the end of the step that emits its last token. Arrivals wait in FIFO order.
- Work happens in steps. At each step boundary (the end of a step, or an
  arrival at an idle server) the scheduler first admits waiting requests in
  arrival order while a slot is free (and, when ``max_prefill_tokens`` is
  set, while the step's prompt tokens stay within it, admitting at least
  one). If it admitted any, it runs a **prefill step** over their prompts:
  it lasts ``prefill_s(their total prompt tokens)``, emits each admitted
  request's first token at its end, and stalls the running requests, which
  emit nothing meanwhile. Otherwise, if requests are running, it runs a
  **decode step**: it lasts ``decode_step_s(running requests)`` and emits one
  token for each of them. Otherwise the server is idle.
- So a request of ``n`` output tokens needs one prefill step and ``n - 1``
  decode steps; alone, it takes ``prefill_s(p) + (n - 1) * decode_step_s(1)``,
  the form of SplitwiseSim's measured end-to-end time.
- A boundary's decision uses the queue as it is at that moment: a request
  that arrives while a step runs, even at the instant that step started or
  ends, waits for the next boundary.

Example with 2 slots, ``prefill_s(p) = 0.5`` and ``decode_step_s(b) = 0.25 * b``::

    t=0.0   A (3 output tokens) arrives at an idle server: prefill [A] until 0.5
    t=0.1   B (2 output tokens) arrives and waits
    t=0.5   A's first token; B is admitted: prefill [B] until 1.0, A stalls
    t=1.0   B's first token; decode [A, B] until 1.5 (0.25 * 2)
    t=1.5   second tokens of A and B, so B finishes; decode [A] until 1.75
    t=1.75  A's third token, so A finishes; the server is idle

Utilisation is the time-average fraction of busy slots over the measured
window, which starts at creation or at :meth:`~ServerModel.reset_window`;
in the example it is 2.75 busy slot-seconds over 2 slots * 1.75 s = 0.786.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from dyntaskmas.errors import ConfigError, LLMRequestError
from dyntaskmas.sim.latency import DEFAULT_LATENCY, LatencyModel

StepKind = Literal["prefill", "decode"]

#: Slots of the default server: requests that run together in one batch.
DEFAULT_SLOTS = 32


class ContextLengthError(LLMRequestError):
    """A request's prompt leaves no room for output in the model's context window."""

    def __init__(self, prompt_tokens: int, max_context_tokens: int) -> None:
        super().__init__(
            f"the prompt has {prompt_tokens} tokens, which leaves no room for output in "
            f"the context window of {max_context_tokens} tokens; shorten the prompt",
            status_code=400,
        )
        self.prompt_tokens = prompt_tokens
        self.max_context_tokens = max_context_tokens


@dataclass(frozen=True)
class ServerConfig:
    """Settings of the simulated server.

    ``max_context_tokens`` bounds prompt plus output tokens of one request
    (None: unbounded). ``max_prefill_tokens`` bounds the prompt tokens of
    one prefill step (None: unbounded). A step admits its first request
    even when that prompt alone is longer, so that no request waits forever.
    """

    slots: int = DEFAULT_SLOTS
    latency: LatencyModel = DEFAULT_LATENCY
    max_context_tokens: int | None = None
    max_prefill_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ConfigError(f"slots must be at least 1, got {self.slots}")
        for name in ("max_context_tokens", "max_prefill_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1 or None, got {value}")


def output_budget(config: ServerConfig, prompt_tokens: int, max_tokens: int) -> int:
    """Return how many tokens a request may generate: ``max_tokens``, capped by context.

    Raises :class:`ContextLengthError` when the prompt leaves no room for
    a single output token.
    """
    if config.max_context_tokens is None:
        return max_tokens
    room = config.max_context_tokens - prompt_tokens
    if room < 1:
        raise ContextLengthError(prompt_tokens, config.max_context_tokens)
    return min(max_tokens, room)


@dataclass(frozen=True)
class FinishedRequest:
    """A request that emitted its last token, with its timeline in model seconds."""

    request_id: int
    prompt_tokens: int
    output_tokens: int
    arrived_at: float
    #: Start of its prefill step.
    admitted_at: float
    #: End of its prefill step, which emits the first output token.
    first_token_at: float
    finished_at: float

    @property
    def latency_s(self) -> float:
        return self.finished_at - self.arrived_at

    @property
    def queued_s(self) -> float:
        return self.admitted_at - self.arrived_at

    @property
    def time_to_first_token_s(self) -> float:
        return self.first_token_at - self.arrived_at


@dataclass(frozen=True)
class FirstToken:
    """A request's first output token, emitted at the end of its prefill step."""

    request_id: int
    at: float


@dataclass(frozen=True)
class Progress:
    """The first tokens and finished requests of one :meth:`ServerModel.advance`, in time order."""

    first_tokens: tuple[FirstToken, ...] = ()
    finished: tuple[FinishedRequest, ...] = ()


@dataclass(frozen=True)
class ServerStats:
    """Counters of the measured window, which ends at the model's current time.

    ``utilisation`` is ``busy_slot_s / (slots * window_s)``, 0 for an empty
    window. Tokens are counted when the step that processes or emits them
    ends. ``busy_slots`` and ``waiting`` are the state now.
    """

    slots: int
    window_s: float
    busy_slot_s: float
    utilisation: float
    prompt_tokens: int
    output_tokens: int
    prompt_tokens_per_s: float
    output_tokens_per_s: float
    submitted: int
    finished: int
    prefill_steps: int
    decode_steps: int
    busy_slots: int
    waiting: int


@dataclass
class _Request:
    request_id: int
    prompt_tokens: int
    output_tokens: int
    arrived_at: float
    admitted_at: float = math.nan
    first_token_at: float = math.nan
    # The decode step count (over the model's life) at whose end it finishes.
    last_decode_step: int = 0


@dataclass
class _Step:
    kind: StepKind
    ends_at: float
    # The requests being prefilled; empty for a decode step.
    admitted: list[_Request] = field(default_factory=list)
    # Running requests in a decode step; 0 for a prefill step.
    batch: int = 0


class ServerModel:
    """The continuous-batching server as a deterministic state machine.

    State:

    - ``now``: the model time up to which everything has been processed;
    - the FIFO of waiting requests, the running requests (past prefill), and
      a heap of running requests by the decode step at whose end they finish;
    - the step in progress, or None when idle;
    - the counters of the measured window.

    Times are seconds on any clock that the driver chooses, as long as it
    never goes backwards.
    """

    def __init__(self, config: ServerConfig | None = None, *, start: float = 0.0) -> None:
        self.config = config if config is not None else ServerConfig()
        self._now = start
        self._next_id = 0
        self._waiting: deque[_Request] = deque()
        self._running: dict[int, _Request] = {}
        # Entries are (last decode step, request id): ties finish in arrival order.
        self._finish_order: list[tuple[int, int]] = []
        self._step: _Step | None = None
        # Decode steps completed over the model's life; finish times count in it.
        self._decode_steps_done = 0
        # Decode step durations by batch size, so long runs skip the curve lookup.
        self._decode_s: dict[int, float] = {}
        self._reset_counters(start)

    # --- state ------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._now

    @property
    def busy_slots(self) -> int:
        """The slots held now: running requests plus those being prefilled."""
        admitted = len(self._step.admitted) if self._step is not None else 0
        return len(self._running) + admitted

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def idle(self) -> bool:
        return self._step is None

    @property
    def step_kind(self) -> StepKind | None:
        """The kind of the step in progress, or None when idle."""
        return self._step.kind if self._step is not None else None

    # --- driving ----------------------------------------------------------------

    def submit(self, prompt_tokens: int, output_tokens: int, now: float) -> int:
        """Add a request that arrives at ``now`` and return its id.

        Ids count from 0 in arrival order. ``now`` must not be before the
        model's time, and every event up to ``now`` must have been processed
        with :meth:`advance` first. Raises :class:`ContextLengthError` when
        the request does not fit the context window.
        """
        if prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must be >= 0, got {prompt_tokens}")
        if output_tokens < 1:
            raise ValueError(f"output_tokens must be >= 1, got {output_tokens}")
        limit = self.config.max_context_tokens
        if limit is not None and prompt_tokens + output_tokens > limit:
            raise ContextLengthError(prompt_tokens, limit)
        if now < self._now:
            raise ValueError(f"time cannot go backwards: submit at {now}, model at {self._now}")
        if self._step is not None and self._step.ends_at <= now:
            raise ValueError(
                f"a step ended at {self._step.ends_at}, before the arrival at {now}; "
                f"call advance({now}) first"
            )

        self._account_until(now)
        request = _Request(self._next_id, prompt_tokens, output_tokens, arrived_at=now)
        self._next_id += 1
        self._waiting.append(request)
        self._submitted += 1
        if self._step is None:
            self._start_step(now)
        return request.request_id

    def next_event_time(self) -> float | None:
        """Return when :meth:`advance` will next report progress, or None when idle.

        That is the end of the prefill step in progress, or the end of the
        decode step in which the next running request finishes, assuming no
        further arrivals.
        """
        step = self._step
        if step is None:
            return None
        if step.kind == "prefill":
            return step.ends_at

        # Decode steps repeat unchanged until a request finishes, because a
        # waiting request can only be admitted once a slot frees. The sum is
        # accumulated step by step, exactly as advance() will, so the two
        # agree to the last bit.
        last_step, _ = self._finish_order[0]
        ends_at = step.ends_at
        duration = self._decode_step_s(step.batch)
        for _ in range(last_step - self._decode_steps_done - 1):
            ends_at += duration
        return ends_at

    def advance(self, to: float) -> Progress:
        """Process every step that ends at or before ``to``, then move time to ``to``."""
        if to < self._now:
            raise ValueError(f"time cannot go backwards: advance to {to}, model at {self._now}")
        first_tokens: list[FirstToken] = []
        finished: list[FinishedRequest] = []
        while self._step is not None and self._step.ends_at <= to:
            self._finish_step(self._step, first_tokens, finished)
        self._account_until(to)
        return Progress(tuple(first_tokens), tuple(finished))

    # --- statistics ---------------------------------------------------------------

    def stats(self) -> ServerStats:
        """Return the counters of the window from its start to :attr:`now`."""
        window_s = self._now - self._window_start
        slots = self.config.slots
        return ServerStats(
            slots=slots,
            window_s=window_s,
            busy_slot_s=self._busy_slot_s,
            utilisation=self._busy_slot_s / (slots * window_s) if window_s > 0 else 0.0,
            prompt_tokens=self._prompt_tokens,
            output_tokens=self._output_tokens,
            prompt_tokens_per_s=self._prompt_tokens / window_s if window_s > 0 else 0.0,
            output_tokens_per_s=self._output_tokens / window_s if window_s > 0 else 0.0,
            submitted=self._submitted,
            finished=self._finished,
            prefill_steps=self._prefill_steps,
            decode_steps=self._decode_steps,
            busy_slots=self.busy_slots,
            waiting=self.waiting,
        )

    def reset_window(self) -> None:
        """Start a new measured window at :attr:`now`, with every counter at zero."""
        self._reset_counters(self._now)

    # --- internals ----------------------------------------------------------------

    def _reset_counters(self, start: float) -> None:
        self._window_start = start
        self._accounted_at = start
        self._busy_slot_s = 0.0
        self._prompt_tokens = 0
        self._output_tokens = 0
        self._submitted = 0
        self._finished = 0
        self._prefill_steps = 0
        self._decode_steps = 0

    def _account_until(self, time: float) -> None:
        """Add the busy slot-seconds since the last change and move ``now`` to ``time``."""
        self._busy_slot_s += self.busy_slots * (time - self._accounted_at)
        self._accounted_at = time
        self._now = time

    def _decode_step_s(self, batch: int) -> float:
        duration = self._decode_s.get(batch)
        if duration is None:
            duration = self.config.latency.decode_step_s(batch)
            self._decode_s[batch] = duration
        return duration

    def _start_step(self, time: float) -> None:
        """Decide the step that starts at boundary ``time``."""
        admitted: list[_Request] = []
        free = self.config.slots - len(self._running)
        budget = self.config.max_prefill_tokens
        prompt_tokens = 0
        while self._waiting and len(admitted) < free:
            head = self._waiting[0]
            if budget is not None and admitted and prompt_tokens + head.prompt_tokens > budget:
                break
            self._waiting.popleft()
            head.admitted_at = time
            admitted.append(head)
            prompt_tokens += head.prompt_tokens

        if admitted:
            ends_at = time + self.config.latency.prefill_s(prompt_tokens)
            self._step = _Step("prefill", ends_at, admitted=admitted)
        elif self._running:
            batch = len(self._running)
            self._step = _Step("decode", time + self._decode_step_s(batch), batch=batch)
        else:
            self._step = None
        assert self.busy_slots <= self.config.slots, "admission never exceeds the slots"

    def _finish_step(
        self, step: _Step, first_tokens: list[FirstToken], finished: list[FinishedRequest]
    ) -> None:
        time = step.ends_at
        self._account_until(time)

        if step.kind == "prefill":
            self._prefill_steps += 1
            self._output_tokens += len(step.admitted)
            for request in step.admitted:
                self._prompt_tokens += request.prompt_tokens
                request.first_token_at = time
                first_tokens.append(FirstToken(request.request_id, time))
                if request.output_tokens == 1:
                    finished.append(self._finish(request, time))
                else:
                    request.last_decode_step = self._decode_steps_done + request.output_tokens - 1
                    self._running[request.request_id] = request
                    heapq.heappush(
                        self._finish_order, (request.last_decode_step, request.request_id)
                    )
            # The admitted requests now count as running or finished.
            step.admitted = []
        else:
            self._decode_steps_done += 1
            self._decode_steps += 1
            self._output_tokens += step.batch
            while self._finish_order and self._finish_order[0][0] == self._decode_steps_done:
                _, request_id = heapq.heappop(self._finish_order)
                finished.append(self._finish(self._running.pop(request_id), time))

        self._start_step(time)

    def _finish(self, request: _Request, time: float) -> FinishedRequest:
        self._finished += 1
        return FinishedRequest(
            request_id=request.request_id,
            prompt_tokens=request.prompt_tokens,
            output_tokens=request.output_tokens,
            arrived_at=request.arrived_at,
            admitted_at=request.admitted_at,
            first_token_at=request.first_token_at,
            finished_at=time,
        )
