"""Properties of the continuous-batching state machine on generated workloads.

Arrival gaps and latencies are binary fractions, so every time is exact and
comparisons need no tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.sim.latency import LatencyModel
from dyntaskmas.sim.server_model import FinishedRequest, ServerConfig, ServerModel

LATENCY = LatencyModel.linear(
    prefill_base_s=0.5, prefill_s_per_token=1 / 64, decode_base_s=0.25, decode_s_per_request=0.125
)


@dataclass(frozen=True)
class Arrival:
    gap_s: float
    prompt_tokens: int
    output_tokens: int


arrivals = st.lists(
    st.builds(
        Arrival,
        gap_s=st.integers(0, 24).map(lambda eighths: eighths / 8),
        prompt_tokens=st.integers(0, 128),
        output_tokens=st.integers(1, 24),
    ),
    min_size=1,
    max_size=12,
)
configs = st.builds(
    ServerConfig,
    slots=st.integers(1, 4),
    latency=st.just(LATENCY),
    max_prefill_tokens=st.none() | st.integers(1, 160),
)


@dataclass
class Trace:
    finished: dict[int, FinishedRequest]
    max_busy_slots: int
    model: ServerModel


def drive(config: ServerConfig, workload: list[Arrival], *, grid_s: float | None = None) -> Trace:
    """Run ``workload`` and return every finished request.

    Without ``grid_s`` the driver jumps from event to event, as the asyncio
    driver does; with it, it advances in steps of ``grid_s`` seconds.
    """
    model = ServerModel(config)
    finished: dict[int, FinishedRequest] = {}
    max_busy = 0

    def advance_to(time: float) -> None:
        nonlocal max_busy
        if grid_s is None:
            while (event := model.next_event_time()) is not None and event <= time:
                collect(model.advance(event).finished)
                max_busy = max(max_busy, model.busy_slots)
        else:
            while model.now + grid_s < time:
                collect(model.advance(model.now + grid_s).finished)
                max_busy = max(max_busy, model.busy_slots)
        collect(model.advance(time).finished)
        max_busy = max(max_busy, model.busy_slots)

    def collect(requests: tuple[FinishedRequest, ...]) -> None:
        for request in requests:
            assert request.request_id not in finished, "a request finished twice"
            finished[request.request_id] = request

    time = 0.0
    for arrival in workload:
        time += arrival.gap_s
        advance_to(time)
        model.submit(arrival.prompt_tokens, arrival.output_tokens, now=time)
        max_busy = max(max_busy, model.busy_slots)
    while model.next_event_time() is not None:
        advance_to(model.next_event_time() or time)
    return Trace(finished, max_busy, model)


@given(configs, arrivals)
def test_every_request_finishes_with_its_tokens(
    config: ServerConfig, workload: list[Arrival]
) -> None:
    trace = drive(config, workload)

    assert sorted(trace.finished) == list(range(len(workload)))
    for request_id, arrival in enumerate(workload):
        assert trace.finished[request_id].output_tokens == arrival.output_tokens
    stats = trace.model.stats()
    assert stats.output_tokens == sum(a.output_tokens for a in workload)
    assert stats.prompt_tokens == sum(a.prompt_tokens for a in workload)
    assert stats.finished == len(workload)
    assert trace.model.idle


@given(configs, arrivals)
def test_busy_slots_never_exceed_slots(config: ServerConfig, workload: list[Arrival]) -> None:
    trace = drive(config, workload)

    assert trace.max_busy_slots <= config.slots


@given(configs, arrivals)
def test_utilisation_is_a_fraction(config: ServerConfig, workload: list[Arrival]) -> None:
    stats = drive(config, workload).model.stats()

    assert 0.0 <= stats.utilisation <= 1.0


@given(configs, arrivals)
def test_busy_time_is_sum_of_slot_holding_times(
    config: ServerConfig, workload: list[Arrival]
) -> None:
    trace = drive(config, workload)

    held = sum(r.finished_at - r.admitted_at for r in trace.finished.values())

    assert trace.model.stats().busy_slot_s == held


@given(configs, arrivals)
def test_admission_is_first_come_first_served(
    config: ServerConfig, workload: list[Arrival]
) -> None:
    trace = drive(config, workload)

    admitted = [trace.finished[i].admitted_at for i in range(len(workload))]

    assert admitted == sorted(admitted)


@given(configs, arrivals)
def test_timeline_of_each_request_is_ordered(config: ServerConfig, workload: list[Arrival]) -> None:
    trace = drive(config, workload)

    for request in trace.finished.values():
        assert request.arrived_at <= request.admitted_at
        assert request.admitted_at < request.first_token_at
        assert request.first_token_at <= request.finished_at


@given(configs, arrivals)
def test_no_request_beats_running_alone(config: ServerConfig, workload: list[Arrival]) -> None:
    trace = drive(config, workload)

    for request in trace.finished.values():
        alone = LATENCY.prefill_s(request.prompt_tokens) + (
            request.output_tokens - 1
        ) * LATENCY.decode_step_s(1)
        assert request.finished_at - request.admitted_at >= alone


@given(st.integers(0, 4096), st.integers(1, 2000))
def test_lone_request_latency_is_exact(prompt_tokens: int, output_tokens: int) -> None:
    model = ServerModel(ServerConfig(latency=LATENCY))
    model.submit(prompt_tokens, output_tokens, now=0.0)

    event = model.next_event_time()
    while model.next_event_time() is not None:
        event = model.next_event_time()
        model.advance(event or 0.0)

    expected = 0.5 + prompt_tokens / 64
    for _ in range(output_tokens - 1):
        expected += 0.375
    assert event == expected


@settings(max_examples=50)
@given(configs, arrivals)
def test_event_jumps_match_small_steps(config: ServerConfig, workload: list[Arrival]) -> None:
    by_event = drive(config, workload)
    by_grid = drive(config, workload, grid_s=1 / 16)

    assert by_event.finished == by_grid.finished
    assert by_event.model.stats() == by_grid.model.stats()
