"""The continuous-batching state machine against hand-computed timelines.

Every test uses the latency model ``LATENCY``, whose parameters are
binary fractions so that the sums below are exact in floating point:

    prefill_s(p)      = 0.5 + p / 64
    decode_step_s(b)  = 0.25 + 0.125 * b   (0.375, 0.5, 0.625 for b = 1, 2, 3)
"""

from __future__ import annotations

import pytest

from dyntaskmas.errors import LLMRequestError
from dyntaskmas.sim.latency import LatencyModel
from dyntaskmas.sim.server_model import (
    ContextLengthError,
    FinishedRequest,
    ServerConfig,
    ServerModel,
    output_budget,
)

LATENCY = LatencyModel.linear(
    prefill_base_s=0.5, prefill_s_per_token=1 / 64, decode_base_s=0.25, decode_s_per_request=0.125
)


def server(slots: int = 4, **options: int) -> ServerModel:
    return ServerModel(ServerConfig(slots=slots, latency=LATENCY, **options))


def run_until_idle(model: ServerModel) -> dict[int, FinishedRequest]:
    """Advance from event to event until the server is idle; return what finished."""
    finished: dict[int, FinishedRequest] = {}
    while (event := model.next_event_time()) is not None:
        for request in model.advance(event).finished:
            finished[request.request_id] = request
    return finished


def test_single_request_takes_prefill_plus_decode_steps() -> None:
    model = server()

    request_id = model.submit(prompt_tokens=64, output_tokens=5, now=0.0)
    finished = run_until_idle(model)[request_id]

    # prefill_s(64) = 1.5, then 4 decode steps of decode_step_s(1) = 0.375.
    assert finished.first_token_at == 1.5
    assert finished.finished_at == 1.5 + 4 * 0.375
    assert finished.latency_s == 3.0


def test_one_token_request_ends_with_its_prefill() -> None:
    model = server()

    request_id = model.submit(prompt_tokens=32, output_tokens=1, now=2.0)
    finished = run_until_idle(model)[request_id]

    assert finished.finished_at == 3.0
    assert model.stats().decode_steps == 0


def test_two_requests_follow_documented_example() -> None:
    """The example in the module docstring: prefill 0.5, decode 0.25 * b, 2 slots."""
    latency = LatencyModel.linear(
        prefill_base_s=0.5, prefill_s_per_token=0.0, decode_base_s=0.0, decode_s_per_request=0.25
    )
    model = ServerModel(ServerConfig(slots=2, latency=latency))

    a = model.submit(10, 3, now=0.0)
    model.advance(0.1)
    b = model.submit(10, 2, now=0.1)
    finished = run_until_idle(model)

    assert finished[b].admitted_at == 0.5
    assert finished[b].first_token_at == 1.0
    assert finished[b].finished_at == 1.5
    assert finished[a].first_token_at == 0.5
    assert finished[a].finished_at == 1.75
    assert model.stats().busy_slot_s == 2.75
    assert model.stats().utilisation == 2.75 / (2 * 1.75)


def test_three_staggered_requests_batch() -> None:
    """A at 0 (32 prompt, 3 out), B at 0.25 (64, 2), C at 0.75 (0, 4).

    0     prefill [A]     until 1.0  (0.5 + 32/64)
    1.0   prefill [B, C]  until 2.5  (0.5 + 64/64); A stalls
    2.5   decode [A B C]  until 3.125 (0.625): B has 2 tokens, finishes
    3.125 decode [A C]    until 3.625 (0.5): A has 3 tokens, finishes
    3.625 decode [C]      until 4.0 (0.375): C has 4 tokens, finishes
    """
    model = server(slots=4)

    a = model.submit(32, 3, now=0.0)
    model.advance(0.25)
    b = model.submit(64, 2, now=0.25)
    model.advance(0.75)
    c = model.submit(0, 4, now=0.75)
    finished = run_until_idle(model)

    assert finished[b].admitted_at == 1.0
    assert finished[c].admitted_at == 1.0
    assert finished[b].first_token_at == 2.5
    assert finished[b].finished_at == 3.125
    assert finished[a].finished_at == 3.625
    assert finished[c].finished_at == 4.0


def test_three_staggered_requests_utilisation() -> None:
    """Busy slots over time for the previous timeline, 4 slots, window 0 to 4.

    1 x 1.0 + 3 x 1.5 + 3 x 0.625 + 2 x 0.5 + 1 x 0.375 = 8.75 slot-seconds.
    """
    model = server(slots=4)
    model.submit(32, 3, now=0.0)
    model.advance(0.25)
    model.submit(64, 2, now=0.25)
    model.advance(0.75)
    model.submit(0, 4, now=0.75)
    run_until_idle(model)

    stats = model.stats()

    assert stats.window_s == 4.0
    assert stats.busy_slot_s == 8.75
    assert stats.utilisation == 8.75 / 16
    assert stats.output_tokens == 9
    assert stats.output_tokens_per_s == 9 / 4
    assert stats.prompt_tokens == 96
    assert stats.prefill_steps == 2
    assert stats.decode_steps == 3


def test_requests_beyond_slots_queue_fifo() -> None:
    """2 slots, A, B, C at 0, each 0 prompt tokens and 2 output tokens.

    0    prefill [A] until 0.5; B and C wait
    0.5  prefill [B] until 1.0; C waits, both slots are held
    1.0  decode [A B] until 1.5: both finish
    1.5  prefill [C] until 2.0, decode [C] until 2.375
    """
    model = server(slots=2)

    a = model.submit(0, 2, now=0.0)
    b = model.submit(0, 2, now=0.0)
    c = model.submit(0, 2, now=0.0)
    waiting_at_start = model.waiting
    finished = run_until_idle(model)

    assert waiting_at_start == 2
    assert finished[a].finished_at == 1.5
    assert finished[b].admitted_at == 0.5
    assert finished[b].finished_at == 1.5
    assert finished[c].admitted_at == 1.5
    assert finished[c].queued_s == 1.5
    assert finished[c].finished_at == 2.375


def test_arrival_during_decode_waits_for_step_end() -> None:
    """A (0 prompt, 10 out) alone; B (0, 3) arrives at 1.0, mid decode step.

    A: prefill until 0.5, decode steps end 0.875, 1.25 (3 tokens).
    B: prefill 1.25 to 1.75 (A stalls), then [A B] steps of 0.5 end at
    2.25 and 2.75, when B has 3 tokens. A has 5 and needs 5 more steps
    of 0.375: it finishes at 2.75 + 5 * 0.375 = 4.625.
    """
    model = server(slots=4)

    a = model.submit(0, 10, now=0.0)
    model.advance(1.0)
    b = model.submit(0, 3, now=1.0)
    finished = run_until_idle(model)

    assert finished[b].admitted_at == 1.25
    assert finished[b].finished_at == 2.75
    assert finished[a].finished_at == 4.625


def test_next_event_skips_to_finish_of_long_decode() -> None:
    model = server()
    model.submit(0, 1000, now=0.0)
    model.advance(model.next_event_time() or 0.0)

    next_event = model.next_event_time()

    assert next_event == 0.5 + 999 * 0.375
    assert model.advance(next_event).finished[0].finished_at == next_event


def test_utilisation_covers_idle_time_in_window() -> None:
    model = server(slots=4)
    model.submit(0, 3, now=0.0)
    run_until_idle(model)

    model.advance(2.0)
    stats = model.stats()

    # One slot busy from 0 to 1.25 (prefill 0.5, two steps of 0.375).
    assert stats.busy_slot_s == 1.25
    assert stats.utilisation == 1.25 / (4 * 2.0)


def test_utilisation_counts_partial_step() -> None:
    model = server(slots=4)
    model.submit(0, 3, now=0.0)

    model.advance(0.25)
    stats = model.stats()

    assert stats.busy_slot_s == 0.25
    assert stats.utilisation == 0.25
    assert stats.output_tokens == 0


def test_reset_window_starts_counters_at_now() -> None:
    model = server(slots=4)
    model.submit(0, 3, now=0.0)
    run_until_idle(model)
    model.advance(2.0)

    model.reset_window()
    model.advance(3.0)
    stats = model.stats()

    assert stats.window_s == 1.0
    assert stats.busy_slot_s == 0.0
    assert stats.utilisation == 0.0
    assert stats.output_tokens == 0
    assert stats.submitted == 0


def test_empty_window_has_zero_utilisation() -> None:
    stats = server().stats()

    assert stats.window_s == 0.0
    assert stats.utilisation == 0.0
    assert stats.output_tokens_per_s == 0.0


def test_prefill_token_budget_splits_admission() -> None:
    """Budget 64: A (8 prompt) alone; B (48) and C (32) wait, then go one step each.

    A: prefill 0.5 + 8/64 = 0.625. B: 0.625 to 0.625 + 0.5 + 48/64 = 1.875.
    C: from 1.875, because 48 + 32 exceeds the budget.
    """
    model = server(slots=4, max_prefill_tokens=64)

    model.submit(8, 2, now=0.0)
    model.advance(0.125)
    b = model.submit(48, 2, now=0.125)
    c = model.submit(32, 2, now=0.125)
    finished = run_until_idle(model)

    assert finished[b].admitted_at == 0.625
    assert finished[c].admitted_at == 1.875
    assert finished[c].first_token_at == 2.875


def test_prompt_over_budget_still_runs() -> None:
    model = server(max_prefill_tokens=16)

    request_id = model.submit(64, 1, now=0.0)
    finished = run_until_idle(model)

    assert finished[request_id].finished_at == 1.5


def test_context_limit_rejects_oversize_request() -> None:
    model = server(max_context_tokens=100)

    with pytest.raises(ContextLengthError) as raised:
        model.submit(90, 11, now=0.0)

    assert raised.value.status_code == 400
    assert isinstance(raised.value, LLMRequestError)
    assert model.stats().submitted == 0


def test_output_budget_caps_by_context() -> None:
    config = ServerConfig(max_context_tokens=100)

    assert output_budget(config, 90, 50) == 10
    assert output_budget(config, 10, 50) == 50
    assert output_budget(ServerConfig(), 10**6, 50) == 50


def test_output_budget_rejects_full_context() -> None:
    with pytest.raises(ContextLengthError, match="100 tokens"):
        output_budget(ServerConfig(max_context_tokens=100), 100, 5)


def test_submit_requires_processed_events() -> None:
    model = server()
    model.submit(0, 5, now=0.0)

    with pytest.raises(ValueError, match=r"call advance\(1.0\) first"):
        model.submit(0, 5, now=1.0)


def test_time_cannot_go_backwards() -> None:
    model = server()
    model.advance(2.0)

    with pytest.raises(ValueError, match="backwards"):
        model.advance(1.0)
    with pytest.raises(ValueError, match="backwards"):
        model.submit(0, 1, now=1.0)


@pytest.mark.parametrize(("prompt_tokens", "output_tokens"), [(-1, 1), (0, 0)])
def test_submit_rejects_invalid_sizes(prompt_tokens: int, output_tokens: int) -> None:
    with pytest.raises(ValueError):
        server().submit(prompt_tokens, output_tokens, now=0.0)
