"""The allocator and the shared backoff against servers that hide their capacity.

The first two run in process on the virtual clock, through the same retry
loop, backoff gate and limiter as an HTTP endpoint. The last two send real
HTTP with the openai SDK to the simulated server on 127.0.0.1, the last
one also on the real clock.
"""

from __future__ import annotations

import asyncio
import math
import random

from dyntaskmas.adapt.allocator import Allocator
from dyntaskmas.adapt.controller import ControllerConfig
from dyntaskmas.adapt.monitor import Monitor
from dyntaskmas.bench.adaptive import AdaptivePolicy, run_policy
from dyntaskmas.clock import MonotonicClock
from dyntaskmas.engine.agent_pool import Agent, AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.attempts import LocalFlow, RetryingChatModel
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.sim.capacity import (
    CapacityChatModel,
    CapacityProfile,
    CapacityServer,
    ThrottleWindow,
)
from dyntaskmas.sim.http_server import SimulatedLLMServer
from dyntaskmas.sim.latency import LatencyModel
from dyntaskmas.sim.server_model import ServerConfig
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

FIXED_LIMITS = (4, 16, 32, 64)


def test_allocator_reaches_best_fixed_throughput() -> None:
    """From 4 and from 100, within 60 simulated seconds, at least 90 % of the best fixed limit.

    The server doubles latency past 24 in flight and responds with 429 past 40.
    Fixed limits reach their steady state at once, so they are measured
    from 20 s; the allocator is measured from 60 s, after its search.
    """
    best_fixed = max(
        run_policy(
            AdaptivePolicy(limit, adaptive=False), agents=80, duration_s=80.0, warmup_s=20.0
        ).throughput_tasks_per_s
        for limit in FIXED_LIMITS
    )

    for start in (4, 100):
        run = run_policy(
            AdaptivePolicy(start, adaptive=True), agents=128, duration_s=120.0, warmup_s=60.0
        )

        assert run.throughput_tasks_per_s >= 0.9 * best_fixed, (start, run, best_fixed)
        assert run.rate_429 < 0.01, (start, run.rate_429)
        assert run.requests > 1000


def test_allocator_under_random_429s() -> None:
    """The same server also rejects 10 % of requests with 429 at random, whatever the load.

    Halving the limit on each of them would hold the allocator near 1; it
    must stay within 15 % of the best fixed limit's throughput after 60 s.
    The backoff gate pauses every caller after each 429, so throughput
    varies from minute to minute; the fixed limits are measured over the
    same span, with the same agents and seed.
    """
    profile = CapacityProfile(rate_429=0.1)
    best_fixed = max(
        run_policy(
            AdaptivePolicy(limit, adaptive=False),
            agents=128,
            duration_s=120.0,
            warmup_s=60.0,
            profile=profile,
        ).throughput_tasks_per_s
        for limit in (*FIXED_LIMITS, 24)
    )

    for start in (4, 100):
        run = run_policy(
            AdaptivePolicy(start, adaptive=True),
            agents=128,
            duration_s=120.0,
            warmup_s=60.0,
            profile=profile,
        )

        assert run.throughput_tasks_per_s >= 0.85 * best_fixed, (start, run, best_fixed)
        assert min(point.limit for point in run.series[12:]) >= 8, (start, run.series)
        assert 0.05 < run.rate_429 < 0.2


def throttled_run(agents: int, tasks: int) -> tuple[CapacityServer, str, int]:
    """Run ``tasks`` tasks on ``agents`` agents against a server throttling from 0 s to 5 s."""
    profile = CapacityProfile(
        inflate_above=1000, reject_above=1000, throttle=ThrottleWindow(0.0, 5.0, 2.0)
    )
    server = CapacityServer(profile)
    outcome: list[tuple[str, int]] = []

    async def main() -> None:
        clock = EventLoopClock()
        flow = LocalFlow("throttled", concurrency=agents, clock=clock)
        model = RetryingChatModel(
            CapacityChatModel(server, output_tokens=[100]), flow, rng=random.Random(3)
        )
        pool = AgentPool(
            [
                Agent(f"agent-{i}", frozenset({"worker"}), model, endpoint="throttled")
                for i in range(agents)
            ],
            limits={"throttled": flow.limiter},
        )
        engine = Engine(pool, config=EngineConfig(roles={"worker": "works"}), clock=clock)
        specs = [TaskSpec(f"t{i}", "work") for i in range(tasks)]
        result = await engine.run_graph(specs)
        done = sum(1 for record in result.tasks if record.state == "done")
        outcome.append((result.status, done))

    run_virtual(main())
    return server, *outcome[0]


def test_ten_agents_do_not_storm_throttled_server() -> None:
    """429 with Retry-After: 2 for 5 s: one probe per pause after the first burst."""
    server, status, done = throttled_run(agents=10, tasks=30)

    during = server.requests_between(0.0, 5.0)
    # The first burst (one request per agent), then one probe per 2 s pause.
    assert during <= 10 + math.ceil(5.0 / 2.0)
    assert status == "succeeded"
    assert done == 30
    assert server.requests_between(5.0, math.inf) >= 30


async def test_throttled_http_one_probe_per_pause() -> None:
    """The same case over HTTP with the openai SDK, scaled to 1 s of 429s with 0.25 s pauses."""
    throttle = ThrottleWindow(0.0, 1.0, 0.25)
    latency = LatencyModel.linear(
        prefill_base_s=0.5, prefill_s_per_token=0.0, decode_base_s=0.1, decode_s_per_request=0.0
    )
    server = SimulatedLLMServer(
        ServerConfig(slots=16, latency=latency),
        speedup=10.0,
        capacity=CapacityProfile(inflate_above=100, reject_above=100, throttle=throttle),
    )
    async with server:
        endpoint = Endpoint(server.base_url, model="sim", concurrency=10)
        policy = RetryPolicy(max_attempts=10, base_delay_s=0.01, max_delay_s=0.05)
        async with OpenAIChatModel(endpoint, policy=policy, rng=random.Random(1)) as model:
            pool = AgentPool(
                build_agents(10, ["worker"], {endpoint.name: model}),
                limits={endpoint.name: endpoint.limiter},
            )
            engine = Engine(pool, config=EngineConfig(roles={"worker": "works"}, work_max_tokens=4))
            async with asyncio.timeout(20):
                result = await engine.run_graph([TaskSpec(f"t{i}", "work") for i in range(20)])

    during = sum(1 for at in server.chat_arrivals if at < throttle.duration_s)
    # Lockstep retries would send 10 per pause, 40 in all.
    assert during <= 10 + math.ceil(throttle.duration_s / throttle.retry_after_s) + 1
    assert result.status == "succeeded"
    assert all(record.state == "done" for record in result.tasks)


async def test_allocator_backs_off_real_http() -> None:
    """Real HTTP and the real clock: a limit of 12 against a server that rejects past 6."""
    latency = LatencyModel.linear(
        prefill_base_s=0.5, prefill_s_per_token=0.0, decode_base_s=0.1, decode_s_per_request=0.0
    )
    server = SimulatedLLMServer(
        ServerConfig(slots=16, latency=latency),
        speedup=20.0,
        capacity=CapacityProfile(inflate_above=4, reject_above=6, retry_after_s=0.05),
    )
    async with server:
        endpoint = Endpoint(server.base_url, model="sim", concurrency=12)
        policy = RetryPolicy(max_attempts=30, base_delay_s=0.01, max_delay_s=0.05)
        async with OpenAIChatModel(endpoint, policy=policy, rng=random.Random(2)) as model:
            pool = AgentPool(
                build_agents(12, ["worker"], {endpoint.name: model}),
                limits={endpoint.name: endpoint.limiter},
            )
            clock = MonotonicClock()
            monitor = Monitor(clock, pool=pool)
            monitor.watch(endpoint)
            allocator = Allocator(
                monitor,
                [(endpoint, ControllerConfig(max_limit=12, min_samples=3))],
                clock=clock,
                pool=pool,
                interval_s=0.1,
            )
            engine = Engine(pool, config=EngineConfig(roles={"worker": "works"}, work_max_tokens=4))
            async with asyncio.timeout(30), allocator.running():
                result = await engine.run_graph([TaskSpec(f"t{i}", "work") for i in range(80)])

    lowered = [d for d in allocator.decisions if d.reason == "rate_limited"]
    assert result.status == "succeeded"
    assert server.stats()["capacity_rejected"] > 0
    assert lowered
    assert all(d.new_limit < d.old_limit for d in lowered)
    assert all(1 <= d.new_limit <= 12 for d in allocator.decisions)
