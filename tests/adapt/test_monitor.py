"""The monitor's windowed statistics, on a manual clock."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.adapt.monitor import Monitor, percentile, split_by_load, summarize_attempts
from dyntaskmas.clock import ManualClock
from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.attempts import AttemptRecord, LocalFlow
from dyntaskmas.observe.events import (
    EventBus,
    GraphChanged,
    RunStarted,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)


def attempt(
    started: float,
    finished: float,
    status: str = "ok",
    *,
    tokens: int = 10,
    in_flight: int = 1,
    endpoint: str = "e",
    ttft: float | None = None,
) -> AttemptRecord:
    return AttemptRecord(
        endpoint=endpoint,
        started_at=started,
        finished_at=finished,
        status=status,  # type: ignore[arg-type]
        status_code=429 if status == "rate_limited" else None,
        completion_tokens=tokens if status == "ok" else 0,
        in_flight=in_flight,
        time_to_first_token_s=ttft if status == "ok" else None,
    )


@given(st.lists(st.floats(0, 1e6), min_size=1, max_size=200), st.floats(0.5, 100))
def test_percentile_matches_nearest_rank(values: list[float], q: float) -> None:
    result = percentile(values, q)

    assert result in values
    at_or_below = sum(1 for v in values if v <= result)
    assert at_or_below >= q / 100 * len(values) - 1e-9
    strictly_below = sum(1 for v in values if v < result)
    assert strictly_below < q / 100 * len(values)


def test_percentile_of_nothing_is_none() -> None:
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 0)


@given(
    st.lists(
        st.tuples(
            st.floats(0, 10),
            st.floats(0, 5),
            st.sampled_from(["ok", "rate_limited", "timeout", "server_error"]),
            st.integers(1, 500),
        ),
        max_size=60,
    )
)
def test_summary_counts_add_up(rows: list[tuple[float, float, str, int]]) -> None:
    records = [attempt(s, s + d, status, tokens=t) for s, d, status, t in rows]

    summary = summarize_attempts(records, window_s=10.0)

    assert summary.requests == len(records)
    assert summary.successes + summary.rate_limited + summary.timeouts + summary.errors == len(
        records
    )
    assert summary.rate_429 == (summary.rate_limited / len(records) if records else 0.0)
    ok = [r for r in records if r.status == "ok"]
    assert summary.latency_p50_s == percentile([r.latency_s for r in ok], 50)
    assert summary.throughput_per_s == pytest.approx(len(ok) / 10.0)
    assert summary.tokens_per_s == pytest.approx(sum(r.completion_tokens for r in ok) / 10.0)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ok", "rate_limited", "server_error"]),
            st.one_of(st.none(), st.floats(0, 5)),
        ),
        max_size=60,
    )
)
def test_ttft_percentiles_of_streamed_successes(rows: list[tuple[str, float | None]]) -> None:
    records = [attempt(0.0, 6.0, status, ttft=ttft) for status, ttft in rows]
    measured = [r.time_to_first_token_s for r in records if r.time_to_first_token_s is not None]

    summary = summarize_attempts(records, window_s=10.0)

    assert summary.ttft_p50_s == percentile(measured, 50)
    assert summary.ttft_p95_s == percentile(measured, 95)


def test_snapshot_and_sample_carry_ttft() -> None:
    """Unstreamed calls leave the percentiles to the streamed ones."""
    clock = ManualClock(start=5.0)
    flow = LocalFlow("e", concurrency=4, clock=clock)
    monitor = Monitor(clock)
    monitor.watch(flow)
    for ttft in (0.1, 0.2, 0.3, None):
        for listener in flow.attempt_listeners:
            listener(attempt(1.0, 4.0, ttft=ttft))

    summary = monitor.snapshot().endpoint("e").attempts

    assert summary.successes == 4
    assert summary.ttft_p50_s == 0.2
    assert summary.ttft_p95_s == 0.3
    assert summary.latency_p50_s == 3.0


def test_window_drops_old_attempts() -> None:
    clock = ManualClock()
    monitor = Monitor(clock, window_s=10.0)
    flow = LocalFlow("e", concurrency=4, clock=clock)
    monitor.watch(flow)

    for at in (1.0, 2.0, 3.0):
        clock.advance(at - clock.now())
        for listener in flow.attempt_listeners:
            listener(attempt(at - 0.5, at))
    clock.advance(8.5)  # now 11.5: the attempt that finished at 1.0 is out

    summary = monitor.snapshot().endpoint("e").attempts

    assert summary.requests == 2
    assert summary.latency_p50_s == 0.5


def test_started_after_keeps_newer_attempts() -> None:
    clock = ManualClock(start=10.0)
    monitor = Monitor(clock)
    monitor.record_attempt(attempt(7.0, 9.0))
    monitor.record_attempt(attempt(8.5, 9.5))

    summary = monitor.attempt_summary("e", started_after=8.0)

    assert summary.requests == 1


def test_rates_of_429_and_errors() -> None:
    clock = ManualClock(start=5.0)
    monitor = Monitor(clock, window_s=5.0)
    for status in ("ok", "ok", "rate_limited", "server_error"):
        monitor.record_attempt(attempt(4.0, 4.5, status, in_flight=3))

    summary = monitor.attempt_summary("e")

    assert summary.rate_429 == 0.25
    assert summary.error_rate == 0.5
    assert summary.peak_in_flight == 3


def test_snapshot_reports_limiter_state() -> None:
    clock = ManualClock()
    flow = LocalFlow("e", concurrency=7, clock=clock)
    flow.gate.close_for(3.0)
    monitor = Monitor(clock)
    monitor.watch(flow)

    stats = monitor.snapshot().endpoint("e")

    assert stats.limit == 7
    assert stats.in_flight == 0
    assert stats.gate_closed_s == 3.0
    with pytest.raises(KeyError, match="'other' is not monitored"):
        monitor.snapshot().endpoint("other")


def test_role_queues_follow_events() -> None:
    """Two work tasks and one check task: one work task runs, one is ready."""
    clock = ManualClock()
    pool = AgentPool(build_agents(2, ["work", "check"], {"e": object()}))  # type: ignore[dict-item]
    monitor = Monitor(clock, window_s=10.0, pool=pool)
    bus = EventBus()
    monitor.attach(bus)
    specs = (
        TaskSpec("a", "a", role="work"),
        TaskSpec("b", "b", role="work"),
        TaskSpec("c", "c", role="check"),
    )
    bus.emit(RunStarted("r", 0.0, "request", 2))
    bus.emit(GraphChanged("r", 0.0, specs, (), (), "initial graph"))
    for spec in specs:
        bus.emit(TaskReady("r", 0.0, spec.id, 1.0))
    bus.emit(TaskStarted("r", 0.0, "a", "agent-1", "e"))
    bus.emit(TaskStarted("r", 0.0, "c", "agent-2", "e"))
    clock.advance(4.0)
    bus.emit(TaskFinished("r", 4.0, "c", "agent-2", "out", 4.0, 10, 10))

    work = monitor.snapshot().role("work")
    check = monitor.snapshot().role("check")

    assert (work.ready, work.running, work.agents) == (1, 1, 2)
    assert (check.ready, check.running, check.tasks_finished) == (0, 0, 1)
    assert check.task_p50_s == 4.0
    assert math.isclose(check.utilisation, 4.0 / (2 * 10.0))
    assert monitor.ready_tasks() == 1

    bus.emit(TaskFailed("r", 5.0, "a", "boom", ("b",)))
    work = monitor.snapshot().role("work")
    assert (work.ready, work.running, work.tasks_failed) == (0, 0, 1)


loads = st.lists(
    st.tuples(st.integers(1, 50), st.sampled_from(["ok", "rate_limited", "timeout"])),
    max_size=100,
)


@given(loads, st.integers(1, 60))
def test_split_by_load_counts(records: list[tuple[int, str]], at: int) -> None:
    attempts = [attempt(0.0, 1.0, status, in_flight=load) for load, status in records]

    split = split_by_load(attempts, at)

    above = [status for load, status in records if load >= at]
    below = [status for load, status in records if load < at]
    assert (split.requests_above, split.requests_below) == (len(above), len(below))
    assert split.limited_above == above.count("rate_limited")
    assert split.limited_below == below.count("rate_limited")


@given(loads)
def test_peak_limited_in_flight(
    records: list[tuple[int, str]],
) -> None:
    attempts = [attempt(0.0, 1.0, status, in_flight=load) for load, status in records]

    summary = summarize_attempts(attempts, 1.0)

    limited = [load for load, status in records if status == "rate_limited"]
    assert summary.peak_limited_in_flight == (max(limited) if limited else 0)


def test_load_split_reads_only_the_window() -> None:
    clock = ManualClock()
    monitor = Monitor(clock, window_s=10.0)
    monitor.record_attempt(attempt(0.0, 1.0, "rate_limited", in_flight=9))
    clock.advance(40.0)
    monitor.record_attempt(attempt(39.0, 40.0, "ok", in_flight=2))
    monitor.record_attempt(attempt(39.5, 40.0, "rate_limited", in_flight=5))

    split = monitor.load_split("e", 5, window_s=30.0)

    assert (split.requests_below, split.limited_below) == (1, 0)
    assert (split.requests_above, split.limited_above) == (1, 1)
