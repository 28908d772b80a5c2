"""Fixed concurrency limits against the allocator on the hidden-capacity server.

One run: ``agents`` agents share one endpoint, an in-process
:class:`~dyntaskmas.sim.capacity.CapacityServer` behind the same retry loop,
backoff gate and limiter as an HTTP endpoint
(:class:`~dyntaskmas.llm.attempts.RetryingChatModel`). The engine runs a
flat graph of independent tasks, more than the run can finish, on the
virtual clock, and the run is stopped after ``duration_s`` simulated
seconds. A policy is a fixed limit or the allocator from a starting limit.

Measured from the attempt records and the finished tasks: throughput in
tasks per second, the share of attempts that got a 429, and the p95
latency of successful attempts, over ``[warmup_s, duration_s)``, plus a
series per ``bucket_s`` for the plot.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass

from dyntaskmas.adapt.allocator import Allocator
from dyntaskmas.adapt.controller import ControllerConfig
from dyntaskmas.adapt.monitor import Monitor, percentile
from dyntaskmas.engine.agent_pool import Agent, AgentPool
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.attempts import AttemptRecord, LocalFlow, RetryingChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.observe.events import Event, EventBus, TaskFinished
from dyntaskmas.sim.capacity import CapacityChatModel, CapacityProfile, CapacityServer
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

ENDPOINT = "capacity"
ROLE = "worker"


@dataclass(frozen=True)
class AdaptivePolicy:
    """A fixed limit (``adaptive`` false) or the allocator starting from ``limit``."""

    limit: int
    adaptive: bool

    @property
    def name(self) -> str:
        return f"auto from {self.limit}" if self.adaptive else f"fixed {self.limit}"


@dataclass(frozen=True)
class SeriesPoint:
    """One bucket of the time series: its start, tasks per second, 429 share, mean limit."""

    start_s: float
    throughput_tasks_per_s: float
    rate_429: float
    limit: float


@dataclass(frozen=True)
class AdaptiveRun:
    """The measurements of one policy over ``[warmup_s, duration_s)``, and its series."""

    policy: AdaptivePolicy
    throughput_tasks_per_s: float
    rate_429: float
    p95_latency_s: float
    requests: int
    series: tuple[SeriesPoint, ...]


def run_policy(
    policy: AdaptivePolicy,
    *,
    agents: int = 128,
    duration_s: float = 180.0,
    warmup_s: float = 60.0,
    bucket_s: float = 5.0,
    profile: CapacityProfile | None = None,
    seed: int = 7,
    interval_s: float = 1.0,
) -> AdaptiveRun:
    """Run one policy on a fresh virtual-time loop and measure it."""
    if not 0 <= warmup_s < duration_s:
        raise ValueError(f"warmup_s must be in [0, duration_s), got {warmup_s} and {duration_s}")
    attempts: list[AttemptRecord] = []
    finished: list[float] = []
    limits: list[tuple[float, int]] = []

    async def main() -> None:
        clock = EventLoopClock()
        rng = random.Random(seed)
        server = CapacityServer(profile, rng=random.Random(seed + 2))
        flow = LocalFlow(ENDPOINT, concurrency=policy.limit, clock=clock)
        flow.attempt_listeners.append(attempts.append)
        # Output lengths of 60 to 140 tokens: base latencies of about 0.6 to 1.3 s.
        sizes = [rng.randint(60, 140) for _ in range(997)]
        model = RetryingChatModel(
            CapacityChatModel(server, output_tokens=sizes),
            flow,
            # Enough attempts that no task fails while a fixed limit keeps
            # the server overloaded for the whole run.
            policy=RetryPolicy(max_attempts=50, base_delay_s=0.5, max_delay_s=8.0),
            rng=random.Random(seed + 1),
        )
        pool = AgentPool(
            [
                Agent(
                    name=f"agent-{index + 1}",
                    roles=frozenset({ROLE}),
                    model=model,
                    endpoint=ENDPOINT,
                )
                for index in range(agents)
            ],
            limits={ENDPOINT: flow.limiter},
        )
        bus = EventBus()
        started = clock.now()

        def on_event(event: Event) -> None:
            if isinstance(event, TaskFinished) and event.agent is not None:
                finished.append(clock.now() - started)

        bus.subscribe(on_event)
        monitor = Monitor(clock, pool=pool)
        monitor.watch(flow)
        monitor.attach(bus)
        allocator = Allocator(
            monitor,
            [(flow, ControllerConfig(max_limit=agents))],
            clock=clock,
            events=bus,
            pool=pool,
            interval_s=interval_s,
            adjust=policy.adaptive,
        )
        engine = Engine(
            pool,
            config=EngineConfig(roles={ROLE: "does the task"}, work_max_tokens=140),
            clock=clock,
            events=bus,
        )
        # More tasks than any policy finishes, so the server never runs dry:
        # at most reject_above requests run at once, each for at least 0.5 s.
        tasks = int(duration_s * server.profile.reject_above * 2) + 1
        specs = [TaskSpec(id=f"t{index}", description="work", role=ROLE) for index in range(tasks)]

        async def record_limits() -> None:
            while True:
                limits.append((clock.now() - started, flow.limiter.limit))
                await clock.sleep(1.0)

        async with allocator.running(), asyncio.TaskGroup() as group:
            recorder = group.create_task(record_limits())
            try:
                async with asyncio.timeout(duration_s):
                    await engine.run_graph(specs)
            except TimeoutError:
                pass
            recorder.cancel()

    run_virtual(main())
    return _measure(policy, attempts, finished, limits, warmup_s, duration_s, bucket_s)


def _measure(
    policy: AdaptivePolicy,
    attempts: Sequence[AttemptRecord],
    finished: Sequence[float],
    limits: Sequence[tuple[float, int]],
    warmup_s: float,
    duration_s: float,
    bucket_s: float,
) -> AdaptiveRun:
    # The virtual clock starts at 0 with the run.
    origin = 0.0

    def in_span(start: float, end: float) -> list[AttemptRecord]:
        return [a for a in attempts if start <= a.finished_at - origin < end]

    measured = in_span(warmup_s, duration_s)
    span = duration_s - warmup_s
    done = sum(1 for t in finished if warmup_s <= t < duration_s)
    latencies = [a.latency_s for a in measured if a.status == "ok"]
    series = []
    start = 0.0
    while start < duration_s:
        end = min(duration_s, start + bucket_s)
        bucket = in_span(start, end)
        bucket_limits = [limit for at, limit in limits if start <= at < end]
        series.append(
            SeriesPoint(
                start_s=start,
                throughput_tasks_per_s=sum(1 for t in finished if start <= t < end) / (end - start),
                rate_429=_rate_429(bucket),
                limit=sum(bucket_limits) / len(bucket_limits) if bucket_limits else 0.0,
            )
        )
        start = end
    return AdaptiveRun(
        policy=policy,
        throughput_tasks_per_s=done / span,
        rate_429=_rate_429(measured),
        p95_latency_s=percentile(latencies, 95) or 0.0,
        requests=len(measured),
        series=tuple(series),
    )


def _rate_429(records: Sequence[AttemptRecord]) -> float:
    if not records:
        return 0.0
    return sum(1 for r in records if r.status == "rate_limited") / len(records)
