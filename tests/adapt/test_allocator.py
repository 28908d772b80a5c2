"""The allocator wired to a run: wake-ups, events, the journal and calibration."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from dyntaskmas.adapt.allocator import Allocator
from dyntaskmas.adapt.calibration import CostCalibrator
from dyntaskmas.adapt.controller import ControllerConfig
from dyntaskmas.adapt.monitor import Monitor
from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.journal.codec import decode_event
from dyntaskmas.journal.recorder import JournalRecorder
from dyntaskmas.journal.store import JournalStore
from dyntaskmas.llm.attempts import LocalFlow, RetryingChatModel
from dyntaskmas.observe.events import AllocatorDecision, Event, EventBus, MonitorSample
from dyntaskmas.sim.capacity import CapacityChatModel, CapacityProfile, CapacityServer
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

#: 0.1 s per output token and no prefill: a 100-token task takes 10 s.
SLOW = CapacityProfile(prefill_s_per_token=0.0, decode_s_per_token=0.1)


def test_raised_limit_starts_waiting_task_at_once() -> None:
    """Two 10 s tasks under a limit of 1; the limit becomes 2 at 2 s.

    The second task starts at 2 s, not when the first finishes at 10 s.
    """
    results: list[RunResult] = []

    async def main() -> None:
        clock = EventLoopClock()
        flow = LocalFlow("e", concurrency=1, clock=clock)
        model = RetryingChatModel(CapacityChatModel(CapacityServer(SLOW)), flow)
        pool = AgentPool(build_agents(2, ["worker"], {"e": model}), limits={"e": flow.limiter})
        engine = Engine(
            pool, config=EngineConfig(roles={"worker": "w"}, work_max_tokens=100), clock=clock
        )

        async def raise_limit() -> None:
            await asyncio.sleep(2.0)
            flow.limiter.limit = 2
            pool.capacity_raised()

        async with asyncio.TaskGroup() as group:
            group.create_task(raise_limit())
            results.append(await engine.run_graph([TaskSpec("a", "a"), TaskSpec("b", "b")]))

    run_virtual(main())

    starts = sorted(record.started_at or 0.0 for record in results[0].tasks)
    assert starts == [0.0, 2.0]
    assert results[0].makespan_s == 12.0


def test_decisions_are_events_and_journalled(tmp_path: Path) -> None:
    events: list[Event] = []
    store = JournalStore(tmp_path / "journal")

    async def main() -> None:
        clock = EventLoopClock()
        flow = LocalFlow("e", concurrency=2, clock=clock)
        model = RetryingChatModel(
            CapacityChatModel(CapacityServer(), output_tokens=[60, 90, 140]), flow
        )
        pool = AgentPool(build_agents(16, ["worker"], {"e": model}), limits={"e": flow.limiter})
        bus = EventBus()
        bus.subscribe(events.append)
        JournalRecorder(store).attach(bus)
        monitor = Monitor(clock, pool=pool)
        monitor.watch(flow)
        monitor.attach(bus)
        allocator = Allocator(
            monitor, [(flow, ControllerConfig(max_limit=16))], clock=clock, events=bus, pool=pool
        )
        engine = Engine(
            pool,
            config=EngineConfig(roles={"worker": "w"}, work_max_tokens=140),
            clock=clock,
            events=bus,
        )
        async with allocator.running():
            await engine.run_graph([TaskSpec(f"t{i}", "work") for i in range(200)], run_id="r1")

    run_virtual(main())

    decisions = [e for e in events if isinstance(e, AllocatorDecision)]
    samples = [e for e in events if isinstance(e, MonitorSample)]
    assert decisions and len(samples) == len(decisions)
    assert max(d.new_limit for d in decisions) > 2  # it grew from 2
    assert all(d.run_id == "r1" for d in decisions)
    rows = [row for row in store.events("r1") if row.kind == "AllocatorDecision"]
    assert len(rows) == len(decisions)
    assert decode_event(rows[0].kind, "r1", rows[0].at_s, rows[0].payload) == decisions[0]
    store.close()


def test_fixed_limits_only_sample() -> None:
    flow = LocalFlow("e", concurrency=5)
    monitor = Monitor(flow.clock)
    monitor.watch(flow)
    allocator = Allocator(monitor, [(flow, ControllerConfig())], clock=flow.clock, adjust=False)

    decisions = allocator.step()

    assert [(d.reason, d.old_limit, d.new_limit) for d in decisions] == [("fixed", 5, 5)]
    assert flow.limiter.limit == 5


def test_calibrator_learns_costs_during_run() -> None:
    """Tasks planned at 1 s take 0.6 to 1.3 s; the token costs are the server's own."""
    calibrator = CostCalibrator()
    recalibrations: list[bool] = []

    async def main() -> None:
        clock = EventLoopClock()
        flow = LocalFlow("e", concurrency=4, clock=clock)
        rng = random.Random(5)
        sizes = [rng.randint(60, 140) for _ in range(50)]
        model = RetryingChatModel(CapacityChatModel(CapacityServer(), output_tokens=sizes), flow)
        pool = AgentPool(build_agents(4, ["worker"], {"e": model}), limits={"e": flow.limiter})
        bus = EventBus()
        calibrator.attach(bus)
        calibrator.watch(flow)
        original = calibrator.recalibrate

        def counting(graph: object) -> bool:
            changed = original(graph)  # type: ignore[arg-type]
            recalibrations.append(changed)
            return changed

        engine = Engine(
            pool,
            config=EngineConfig(roles={"worker": "w"}, work_max_tokens=140),
            clock=clock,
            events=bus,
            calibrator=calibrator,
        )
        calibrator.recalibrate = counting  # type: ignore[method-assign]
        await engine.run_graph([TaskSpec(f"t{i}", "work", cost_s=1.0) for i in range(40)])

    run_virtual(main())

    estimates = calibrator.estimates()
    assert 0.6 <= estimates.cost_ratio["worker"] <= 1.3
    prefill, decode = estimates.token_costs["e"]
    assert abs(prefill - 0.0005) < 1e-6
    assert abs(decode - 0.009) < 1e-6
    assert any(recalibrations)
