"""The monitor M(t): windowed statistics per endpoint and per role.

:class:`Monitor` collects two streams and keeps the recent part of each:

- every model-call attempt, from the endpoints' ``attempt_listeners``
  (:class:`~dyntaskmas.llm.attempts.AttemptRecord`: latency, time to first
  token when streamed, tokens, status, Retry-After), so 429s and retries are
  seen, not only finished calls;
- the run's events, from its :class:`~dyntaskmas.observe.events.EventBus`:
  which tasks are ready or running per role, and how long each took.

:meth:`Monitor.snapshot` summarises the last ``window_s`` seconds of the
injected :class:`~dyntaskmas.clock.Clock` into frozen dataclasses, so it
works the same on the virtual clock of the simulator. It does not decide
anything; the allocator reads it. The summaries are computed by pure
functions (:func:`percentile`, :func:`summarize_attempts`) that the tests
check against plain definitions.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from dyntaskmas.clock import Clock
from dyntaskmas.engine.agent_pool import AgentPool
from dyntaskmas.llm.attempts import AttemptRecord, FlowControl
from dyntaskmas.observe.events import (
    Event,
    EventBus,
    GraphChanged,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)

DEFAULT_WINDOW_S = 10.0
DEFAULT_RETENTION_S = 120.0

_T = TypeVar("_T")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Return the nearest-rank ``q`` percentile (0 < q <= 100) of ``values``, None if empty.

    Nearest rank: the smallest value such that at least ``q`` % of the
    values are at or below it. It is always one of the values.
    """
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(rank, 1) - 1]


@dataclass(frozen=True)
class AttemptSummary:
    """Attempt counts and rates over a window of ``window_s`` seconds."""

    window_s: float
    requests: int
    successes: int
    rate_limited: int
    timeouts: int
    errors: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    #: Median of latency divided by completion tokens, which does not grow with
    #: request size the way latency does.
    latency_per_token_p50_s: float | None
    completion_tokens: int
    peak_in_flight: int
    #: The maximum in-flight count (each attempt's own count at its start)
    #: of an attempt that got a 429, or 0 when none did.
    peak_limited_in_flight: int = 0
    #: Time to first token of successful streamed attempts; None when none streamed.
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None

    @property
    def rate_429(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0

    @property
    def error_rate(self) -> float:
        """Failed attempts of any kind, 429s included, over all attempts."""
        return (self.requests - self.successes) / self.requests if self.requests else 0.0

    @property
    def throughput_per_s(self) -> float:
        """Successful calls per second."""
        return self.successes / self.window_s if self.window_s > 0 else 0.0

    @property
    def tokens_per_s(self) -> float:
        """Completion tokens per second of successful calls."""
        return self.completion_tokens / self.window_s if self.window_s > 0 else 0.0


def summarize_attempts(records: Iterable[AttemptRecord], window_s: float) -> AttemptSummary:
    """Summarise ``records`` (already chosen for the window) over ``window_s`` seconds.

    Latency percentiles are over successful attempts only, because a 429
    returns at once and would make an overloaded server look fast. The
    time-to-first-token percentiles are over successful streamed attempts.
    """
    latencies: list[float] = []
    per_token: list[float] = []
    first_token: list[float] = []
    requests = successes = rate_limited = timeouts = tokens = peak = 0
    peak_limited = 0
    for record in records:
        requests += 1
        peak = max(peak, record.in_flight)
        if record.status == "ok":
            successes += 1
            latencies.append(record.latency_s)
            if record.time_to_first_token_s is not None:
                first_token.append(record.time_to_first_token_s)
            per_token.append(record.latency_s / max(1, record.completion_tokens))
            tokens += record.completion_tokens
        elif record.status == "rate_limited":
            rate_limited += 1
            peak_limited = max(peak_limited, record.in_flight)
        elif record.status == "timeout":
            timeouts += 1
    return AttemptSummary(
        window_s=window_s,
        requests=requests,
        successes=successes,
        rate_limited=rate_limited,
        timeouts=timeouts,
        errors=requests - successes - rate_limited - timeouts,
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        latency_per_token_p50_s=percentile(per_token, 50),
        completion_tokens=tokens,
        peak_in_flight=peak,
        peak_limited_in_flight=peak_limited,
        ttft_p50_s=percentile(first_token, 50),
        ttft_p95_s=percentile(first_token, 95),
    )


@dataclass(frozen=True)
class LoadSplit:
    """Attempts and 429s sent with fewer than ``in_flight`` requests in flight, and with more.

    Each attempt counts by its own in-flight count at its start, itself
    included; ``in_flight`` itself counts as above.
    """

    in_flight: int
    requests_below: int
    limited_below: int
    requests_above: int
    limited_above: int


def split_by_load(records: Iterable[AttemptRecord], in_flight: int) -> LoadSplit:
    """Count the attempts and 429s of ``records`` below and from ``in_flight`` in flight."""
    counts = [0, 0, 0, 0]
    for record in records:
        side = 2 if record.in_flight >= in_flight else 0
        counts[side] += 1
        if record.status == "rate_limited":
            counts[side + 1] += 1
    return LoadSplit(in_flight, *counts)


@dataclass(frozen=True)
class EndpointStats:
    """One endpoint over the window: its attempts, and its limit and queue now."""

    endpoint: str
    attempts: AttemptSummary
    limit: int
    in_flight: int
    #: Callers waiting for a slot of the endpoint's limiter now.
    waiting: int
    #: Seconds until the endpoint's backoff gate opens; 0 when open.
    gate_closed_s: float


@dataclass(frozen=True)
class RoleStats:
    """One role over the window: its queue and agents now, and the tasks it finished."""

    role: str
    #: Ready tasks of this role that wait for an agent.
    ready: int
    running: int
    agents: int
    tasks_finished: int
    tasks_failed: int
    task_p50_s: float | None
    task_p95_s: float | None
    #: Busy agent-seconds of tasks finished in the window over agents times the window.
    utilisation: float


@dataclass(frozen=True)
class MonitorSnapshot:
    """M(t): every endpoint and role at clock time ``at`` over ``window_s`` seconds."""

    at: float
    window_s: float
    endpoints: tuple[EndpointStats, ...]
    roles: tuple[RoleStats, ...]

    def endpoint(self, name: str) -> EndpointStats:
        """Return the statistics of endpoint ``name``."""
        for stats in self.endpoints:
            if stats.endpoint == name:
                return stats
        known = ", ".join(s.endpoint for s in self.endpoints) or "none"
        raise KeyError(f"endpoint {name!r} is not monitored; monitored: {known}")

    def role(self, name: str) -> RoleStats:
        """Return the statistics of role ``name``."""
        for stats in self.roles:
            if stats.role == name:
                return stats
        known = ", ".join(s.role for s in self.roles) or "none"
        raise KeyError(f"role {name!r} is not monitored; monitored: {known}")


@dataclass(frozen=True)
class _TaskSample:
    finished_at: float
    duration_s: float
    failed: bool


class Monitor:
    """Keeps the last ``retention_s`` seconds of attempts and task outcomes, and summarises them.

    Snapshots cover the last ``window_s`` seconds.

    Attach it to the endpoints with :meth:`watch` and to the run's events
    with :meth:`attach`; give it the agent pool for agent counts.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        retention_s: float = DEFAULT_RETENTION_S,
        pool: AgentPool | None = None,
    ) -> None:
        if not (math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"monitor window must be a finite number > 0 seconds, got {window_s}")
        self.clock = clock
        self.window_s = window_s
        # Kept longer than the window, so that the allocator can gather
        # enough calls of a slow endpoint over several intervals.
        self.retention_s = max(window_s, retention_s)
        self.pool = pool
        self._flows: dict[str, FlowControl] = {}
        self._attempts: dict[str, deque[AttemptRecord]] = {}
        self._role_of: dict[str, str] = {}
        self._ready: dict[str, set[str]] = {}
        self._running: dict[str, set[str]] = {}
        self._task_samples: dict[str, deque[_TaskSample]] = {}

    # --- inputs -----------------------------------------------------------------

    def watch(self, flow: FlowControl) -> Callable[[], None]:
        """Record every attempt made to ``flow``'s endpoint; return the function that stops."""
        self._flows[flow.name] = flow
        self._attempts.setdefault(flow.name, deque())
        flow.attempt_listeners.append(self.record_attempt)

        def stop() -> None:
            if self.record_attempt in flow.attempt_listeners:
                flow.attempt_listeners.remove(self.record_attempt)

        return stop

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Follow the run events on ``bus``; return the function that unsubscribes."""
        return bus.subscribe(self.record_event)

    def record_attempt(self, record: AttemptRecord) -> None:
        """Add one attempt; attempts arrive in the order they finish."""
        records = self._attempts.setdefault(record.endpoint, deque())
        records.append(record)
        self._prune(records, lambda r: r.finished_at)

    def record_event(self, event: Event) -> None:
        """Update the per-role queues from one run event."""
        if isinstance(event, RunStarted):
            self._ready.clear()
            self._running.clear()
            self._role_of.clear()
        elif isinstance(event, GraphChanged):
            for spec in event.added:
                self._role_of[spec.id] = spec.role
            self._forget(event.cancelled)
        elif isinstance(event, TaskReady):
            self._ready.setdefault(self._role(event.task_id), set()).add(event.task_id)
        elif isinstance(event, TaskStarted):
            role = self._role(event.task_id)
            self._ready.get(role, set()).discard(event.task_id)
            if event.agent is not None:
                self._running.setdefault(role, set()).add(event.task_id)
        elif isinstance(event, TaskFinished):
            self._finish(event.task_id, event.duration_s, failed=False)
        elif isinstance(event, TaskFailed):
            self._finish(event.task_id, None, failed=True)
            self._forget(event.cancelled)

    # --- outputs ----------------------------------------------------------------

    def attempt_summary(
        self, endpoint: str, *, window_s: float | None = None, started_after: float | None = None
    ) -> AttemptSummary:
        """Summarise the attempts to ``endpoint`` that finished in the last ``window_s``.

        ``window_s`` defaults to the monitor's window and is capped by its
        retention.
        ``started_after`` keeps only attempts that started after that clock
        time, such as those sent under a new limit.
        """
        span = self.window_s if window_s is None else min(window_s, self.retention_s)
        cutoff = self.clock.now() - span
        records = self._attempts.get(endpoint, deque())
        self._prune(records, lambda r: r.finished_at)
        chosen = (
            r
            for r in records
            if r.finished_at >= cutoff and (started_after is None or r.started_at > started_after)
        )
        return summarize_attempts(chosen, span)

    def load_split(self, endpoint: str, in_flight: int, *, window_s: float) -> LoadSplit:
        """Split the attempts to ``endpoint`` of the last ``window_s`` at ``in_flight``."""
        cutoff = self.clock.now() - min(window_s, self.retention_s)
        records = self._attempts.get(endpoint, deque())
        self._prune(records, lambda r: r.finished_at)
        return split_by_load((r for r in records if r.finished_at >= cutoff), in_flight)

    def snapshot(self) -> MonitorSnapshot:
        """Return M(t) now, over the monitor's window."""
        now = self.clock.now()
        endpoints = []
        for name in sorted(self._attempts):
            flow = self._flows.get(name)
            endpoints.append(
                EndpointStats(
                    endpoint=name,
                    attempts=self.attempt_summary(name),
                    limit=flow.limiter.limit if flow is not None else 0,
                    in_flight=flow.limiter.in_flight if flow is not None else 0,
                    waiting=flow.limiter.waiting if flow is not None else 0,
                    gate_closed_s=flow.gate.remaining_s() if flow is not None else 0.0,
                )
            )
        return MonitorSnapshot(
            at=now, window_s=self.window_s, endpoints=tuple(endpoints), roles=self._role_stats()
        )

    def ready_tasks(self) -> int:
        """Return the ready tasks of every role that wait for an agent now."""
        return sum(len(ids) for ids in self._ready.values())

    # --- internals --------------------------------------------------------------

    def _role_stats(self) -> tuple[RoleStats, ...]:
        roles = set(self._ready) | set(self._running) | set(self._task_samples)
        agents: dict[str, int] = {}
        if self.pool is not None:
            for agent in self.pool.agents:
                for role in agent.roles:
                    agents[role] = agents.get(role, 0) + 1
            roles |= set(agents)
        stats = []
        for role in sorted(roles):
            kept = self._task_samples.get(role, deque())
            self._prune(kept, lambda s: s.finished_at)
            cutoff = self.clock.now() - self.window_s
            samples = [sample for sample in kept if sample.finished_at >= cutoff]
            durations = [s.duration_s for s in samples if not s.failed]
            count = agents.get(role, 0)
            busy_s = sum(durations)
            stats.append(
                RoleStats(
                    role=role,
                    ready=len(self._ready.get(role, ())),
                    running=len(self._running.get(role, ())),
                    agents=count,
                    tasks_finished=len(durations),
                    tasks_failed=sum(1 for s in samples if s.failed),
                    task_p50_s=percentile(durations, 50),
                    task_p95_s=percentile(durations, 95),
                    utilisation=min(1.0, busy_s / (count * self.window_s)) if count else 0.0,
                )
            )
        return tuple(stats)

    def _role(self, task_id: str) -> str:
        return self._role_of.get(task_id, "?")

    def _finish(self, task_id: str, duration_s: float | None, *, failed: bool) -> None:
        role = self._role(task_id)
        was_running = task_id in self._running.get(role, set())
        self._running.get(role, set()).discard(task_id)
        self._ready.get(role, set()).discard(task_id)
        if not was_running:
            return  # joins and recovered tasks use no agent
        samples = self._task_samples.setdefault(role, deque())
        samples.append(_TaskSample(self.clock.now(), duration_s or 0.0, failed))
        self._prune(samples, lambda s: s.finished_at)

    def _forget(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            role = self._role(task_id)
            self._ready.get(role, set()).discard(task_id)

    def _prune(self, items: deque[_T], finished_at: Callable[[_T], float]) -> None:
        cutoff = self.clock.now() - self.retention_s
        while items and finished_at(items[0]) < cutoff:
            items.popleft()
