"""The virtual-time event loop and the simulated server driven by it."""

from __future__ import annotations

import asyncio
import time

import pytest

from dyntaskmas.sim.latency import LatencyModel
from dyntaskmas.sim.server import SimulatedServer
from dyntaskmas.sim.server_model import ServerConfig
from dyntaskmas.sim.virtual_time import EventLoopClock, VirtualTimeEventLoop, run_virtual

LATENCY = LatencyModel.linear(
    prefill_base_s=0.5, prefill_s_per_token=1 / 64, decode_base_s=0.25, decode_s_per_request=0.125
)


def test_sleep_jumps_virtual_time() -> None:
    async def sleep_an_hour() -> float:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(3600)
        return loop.time()

    started = time.perf_counter()
    now = run_virtual(sleep_an_hour())

    assert now == 3600.0
    assert time.perf_counter() - started < 1.0


def test_timers_fire_in_deadline_order() -> None:
    async def record() -> list[tuple[str, float]]:
        loop = asyncio.get_running_loop()
        woken: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await asyncio.sleep(seconds)
            woken.append((name, loop.time()))

        async with asyncio.TaskGroup() as group:
            group.create_task(sleeper("late", 3.0))
            group.create_task(sleeper("early", 1.0))
            group.create_task(sleeper("middle", 2.0))
        return woken

    assert run_virtual(record()) == [("early", 1.0), ("middle", 2.0), ("late", 3.0)]


def test_timeout_expires_in_virtual_time() -> None:
    async def wait_too_long() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.sleep(10.0)
        return loop.time()

    assert run_virtual(wait_too_long()) == 2.0


def test_loop_starts_at_given_time() -> None:
    async def now() -> float:
        return EventLoopClock().now()

    assert run_virtual(now(), start=100.0) == 100.0


def test_clock_sleep_uses_loop_time() -> None:
    async def sleep_twice() -> float:
        clock = EventLoopClock()
        await clock.sleep(1.5)
        await clock.sleep(-1.0)
        return clock.now()

    assert run_virtual(sleep_twice()) == 1.5


def test_thread_results_reach_idle_loop() -> None:
    async def call_thread() -> int:
        return await asyncio.to_thread(sum, [1, 2, 3])

    assert run_virtual(call_thread()) == 6


def test_loop_is_an_ordinary_asyncio_loop() -> None:
    loop = VirtualTimeEventLoop()
    try:
        assert isinstance(loop, asyncio.AbstractEventLoop)
        assert loop.time() == 0.0
    finally:
        loop.close()


def test_simulated_server_batches_concurrent_requests() -> None:
    """A (64 prompt, 5 out) at 0, B (0, 2) at 0: B waits for A's prefill.

    0    prefill [A] until 1.5
    1.5  prefill [B] until 2.0
    2.0  decode [A B] until 2.5: B has 2 tokens, finishes
    2.5  3 decode steps of A at 0.375 until 3.625
    """

    async def scenario() -> tuple[float, float, float]:
        server = SimulatedServer(ServerConfig(slots=4, latency=LATENCY))
        loop = asyncio.get_running_loop()
        a = asyncio.ensure_future(server.generate(64, 5))
        b = asyncio.ensure_future(server.generate(0, 2))
        finished_b = await b
        b_seen_at = loop.time()
        finished_a = await a
        assert finished_b.finished_at == 2.5
        return b_seen_at, finished_a.finished_at, loop.time()

    b_seen_at, a_finished_at, a_seen_at = run_virtual(scenario())

    assert b_seen_at == 2.5
    assert a_finished_at == 3.625
    assert a_seen_at == 3.625


def test_first_token_future_resolves_at_prefill_end() -> None:
    async def scenario() -> tuple[float, float]:
        server = SimulatedServer(ServerConfig(latency=LATENCY))
        pending = server.submit(32, 4)
        first_token_at = await pending.first_token
        seen_at = asyncio.get_running_loop().time()
        await pending.finished
        return first_token_at, seen_at

    first_token_at, seen_at = run_virtual(scenario())

    assert first_token_at == 1.0
    assert seen_at == 1.0


def test_speedup_divides_loop_time() -> None:
    async def scenario() -> tuple[float, float]:
        server = SimulatedServer(ServerConfig(latency=LATENCY), speedup=4.0)
        finished = await server.generate(64, 5)
        return finished.latency_s, asyncio.get_running_loop().time()

    model_latency, loop_time = run_virtual(scenario())

    assert model_latency == 3.0
    assert loop_time == 0.75


def test_server_stats_advance_to_now() -> None:
    async def scenario() -> float:
        server = SimulatedServer(ServerConfig(slots=2, latency=LATENCY))
        await server.generate(0, 3)
        await asyncio.sleep(0.75)
        return server.stats().utilisation

    # One of two slots busy for 1.25 s of a 2 s window.
    assert run_virtual(scenario()) == 1.25 / (2 * 2.0)


def test_long_simulation_runs_fast() -> None:
    """Eight agents send 100 requests each of 1000 tokens: about 3 simulated hours."""

    async def scenario() -> float:
        server = SimulatedServer(ServerConfig(slots=4, latency=LATENCY))

        async def agent() -> None:
            for _ in range(100):
                await server.generate(256, 1000)

        async with asyncio.TaskGroup() as group:
            for _ in range(8):
                group.create_task(agent())
        return asyncio.get_running_loop().time()

    started = time.perf_counter()
    simulated_s = run_virtual(scenario())
    wall_s = time.perf_counter() - started

    assert simulated_s > 3 * 3600
    assert wall_s < 10.0
