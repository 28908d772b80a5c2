"""The concurrency controller: pure rules, checked by examples and by hypothesis."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.adapt.controller import (
    ControllerConfig,
    ControllerState,
    LoadSample,
    Observation,
    decide,
    initial_state,
    load_tail,
)
from dyntaskmas.errors import ConfigError

CONFIG = ControllerConfig(min_limit=1, max_limit=100)
CLEAN = Observation(successes=20, latency_s=0.01)
#: A trusted state in congestion avoidance with a baseline of 0.01 s per token.
STEADY = ControllerState(limit=20, baseline_s=0.01, trusted=True, slow_start=False)

configs = st.builds(
    ControllerConfig,
    min_limit=st.integers(1, 4),
    max_limit=st.integers(4, 300),
    tolerance=st.floats(1.1, 3.0),
    backoff=st.floats(0.1, 0.9),
    latency_backoff=st.floats(0.5, 0.95),
    growth=st.floats(1.1, 3.0),
    step=st.integers(1, 4),
    increase_every=st.integers(1, 3),
    probe_factor=st.floats(0.2, 0.9),
    probe_intervals=st.integers(1, 4),
    probe_every=st.integers(1, 50),
    min_samples=st.integers(1, 10),
)
observations = st.builds(
    Observation,
    successes=st.integers(0, 100),
    latency_s=st.none() | st.floats(0.001, 1.0),
    rate_limited=st.integers(0, 3),
    timeouts=st.integers(0, 2),
    binding=st.booleans(),
)
states = st.builds(
    ControllerState,
    limit=st.integers(1, 300),
    baseline_s=st.none() | st.floats(0.001, 1.0),
    trusted=st.booleans(),
    slow_start=st.booleans(),
    ceiling=st.none() | st.integers(1, 300),
    probe_left=st.integers(0, 3),
    probe_return=st.integers(1, 300),
    since_probe=st.integers(0, 100),
    since_increase=st.integers(0, 5),
)


@given(configs, states, st.lists(observations, max_size=30))
def test_limit_stays_within_bounds(
    config: ControllerConfig, state: ControllerState, seen: list[Observation]
) -> None:
    state = replace(state, limit=config.clamp(state.limit))
    for observation in seen:
        state = decide(config, state, observation).state
        assert config.min_limit <= state.limit <= config.max_limit


@given(configs, states, observations)
def test_overload_never_raises_limit(
    config: ControllerConfig, state: ControllerState, seen: Observation
) -> None:
    state = replace(state, limit=config.clamp(state.limit))
    overloaded = replace(seen, rate_limited=max(1, seen.rate_limited))

    decision = decide(config, state, overloaded)

    assert decision.reason == "rate_limited"
    assert decision.limit <= state.limit
    if state.limit > config.min_limit:
        assert decision.limit < state.limit
    assert not decision.state.trusted


@given(configs, states, observations)
def test_limit_not_binding_never_grows(
    config: ControllerConfig, state: ControllerState, seen: Observation
) -> None:
    state = replace(state, limit=config.clamp(state.limit), probe_left=0)
    idle = replace(seen, binding=False, rate_limited=0, timeouts=0)

    decision = decide(config, state, idle)

    assert decision.limit <= state.limit


@given(st.integers(2, 100), st.floats(1.6, 10.0))
def test_inflated_latency_lowers_limit(limit: int, ratio: float) -> None:
    state = replace(STEADY, limit=limit)

    decision = decide(CONFIG, state, Observation(successes=20, latency_s=0.01 * ratio))

    assert decision.reason == "latency"
    assert decision.limit == max(1, int(limit * CONFIG.latency_backoff))


def test_slow_start_doubles_up_to_ceiling() -> None:
    state = replace(STEADY, limit=8, slow_start=True, ceiling=20)

    first = decide(CONFIG, state, CLEAN)
    second = decide(CONFIG, first.state, CLEAN)

    assert (first.reason, first.limit) == ("slow_start", 16)
    assert (second.reason, second.limit) == ("slow_start", 20)


def test_additive_increase_every_other_interval() -> None:
    limits = []
    state = STEADY
    for _ in range(4):
        state = decide(CONFIG, state, CLEAN).state
        limits.append(state.limit)

    assert limits == [20, 21, 21, 22]


def test_untrusted_baseline_starts_probe() -> None:
    state = ControllerState(limit=30)

    decision = decide(CONFIG, state, CLEAN)

    assert decision.reason == "probe_start"
    assert decision.limit == 15
    assert decision.state.probe_return == 30


def test_probe_lowers_inflated_baseline() -> None:
    """A baseline measured at 2x latency is replaced by the probe's lower one."""
    state = ControllerState(limit=30, baseline_s=0.02)
    state = decide(CONFIG, state, Observation(successes=20, latency_s=0.02)).state
    for _ in range(CONFIG.probe_intervals - 1):
        state = decide(CONFIG, state, Observation(successes=20, latency_s=0.015)).state

    decision = decide(CONFIG, state, Observation(successes=20, latency_s=0.01))

    assert decision.reason == "probe_lowered_baseline"
    assert decision.state.baseline_s == 0.01
    assert decision.state.trusted
    assert decision.limit == 15
    assert decision.state.slow_start
    assert decision.state.ceiling == 28


def test_probe_confirming_baseline_restores_limit() -> None:
    state = ControllerState(limit=30, baseline_s=0.01)
    state = decide(CONFIG, state, CLEAN).state
    for _ in range(CONFIG.probe_intervals - 1):
        state = decide(CONFIG, state, CLEAN).state

    decision = decide(CONFIG, state, Observation(successes=20, latency_s=0.0099))

    assert decision.reason == "probe_confirmed_baseline"
    assert decision.limit == 30
    assert decision.state.trusted


def test_too_few_samples_hold_limit() -> None:
    decision = decide(CONFIG, STEADY, Observation(successes=2, latency_s=0.05))

    assert decision.reason == "no_data"
    assert decision.limit == STEADY.limit


def test_timeout_counts_as_overload() -> None:
    decision = decide(CONFIG, STEADY, Observation(successes=20, latency_s=0.01, timeouts=1))

    assert decision.reason == "timeout"
    assert decision.limit == 10


def test_initial_state_clamps_limit() -> None:
    assert initial_state(CONFIG, 500).limit == 100
    assert initial_state(CONFIG, 0).limit == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_limit": 0}, "min_limit"),
        ({"min_limit": 5, "max_limit": 4}, "max_limit"),
        ({"backoff": 1.0}, "backoff"),
        ({"latency_backoff": 0.0}, "latency_backoff"),
        ({"tolerance": 1.0}, "tolerance"),
        ({"growth": 1.0}, "growth"),
        ({"probe_intervals": 0}, "probe_intervals"),
        ({"baseline_drift": 1.0}, "baseline_drift"),
        ({"load_evidence": 0.0}, "load_evidence"),
        ({"limited_tolerance": 1.0}, "limited_tolerance"),
        ({"limited_min_requests": 0}, "limited_min_requests"),
    ],
)
def test_invalid_config_rejected(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ControllerConfig(**options)  # type: ignore[arg-type]


def test_growth_slows_near_last_inflation() -> None:
    """After latency inflated at 24, the step back to 24 waits plateau_every intervals."""
    state = decide(CONFIG, replace(STEADY, limit=24), Observation(20, 0.02)).state
    assert (state.limit, state.inflated_at) == (22, 24)

    limits = []
    for _ in range(2 + CONFIG.plateau_every):
        state = decide(CONFIG, state, CLEAN).state
        limits.append(state.limit)

    assert limits[:2] == [22, 23]  # far from 24: every other interval
    assert limits[2 : 2 + CONFIG.plateau_every - 1] == [23] * (CONFIG.plateau_every - 1)
    assert limits[-1] == 24


# --- 429s that load does not explain ---------------------------------------------


@st.composite
def even_loads(draw: st.DrawFn) -> LoadSample:
    """Samples whose 429 share above the split is no higher than below it."""
    below = draw(st.integers(1, 400))
    limited_below = draw(st.integers(0, below))
    above = draw(st.integers(1, 400))
    limited_above = draw(st.integers(0, (above * limited_below) // below))
    return LoadSample(below, limited_below, above, limited_above)


@given(configs, states, observations, even_loads())
def test_even_429s_never_overload(
    config: ControllerConfig, state: ControllerState, seen: Observation, load: LoadSample
) -> None:
    state = replace(state, limit=config.clamp(state.limit))
    # A minority of the interval's requests, so the share rule does not apply.
    sporadic = replace(
        seen,
        rate_limited=max(1, seen.rate_limited),
        timeouts=0,
        requests=seen.successes + 2 * max(1, seen.rate_limited) + config.limited_min_requests,
        load=load,
    )

    decision = decide(config, state, sporadic)

    assert decision.reason != "rate_limited"


@given(configs, states, st.integers(20, 400), st.integers(3, 50))
def test_429s_only_above_overload(
    config: ControllerConfig, state: ControllerState, below: int, limited: int
) -> None:
    """A server that refuses past its capacity: every 429 above, none below."""
    state = replace(state, limit=config.clamp(state.limit))
    seen = Observation(
        successes=below, latency_s=0.01, rate_limited=1, load=LoadSample(below, 0, limited, limited)
    )

    decision = decide(config, state, seen)

    assert decision.reason == "rate_limited"
    assert decision.limit <= state.limit


@given(st.integers(10, 200), st.data())
def test_majority_of_429s_overloads(requests: int, data: st.DataObject) -> None:
    limited = data.draw(st.integers(requests // 2 + 1, requests))
    seen = Observation(
        successes=requests - limited,
        latency_s=0.01,
        rate_limited=limited,
        requests=requests,
        load=LoadSample(100, 50, 100, 50),
    )

    assert decide(CONFIG, STEADY, seen).reason == "rate_limited"


@given(
    st.integers(0, 300),
    st.integers(0, 300),
    st.integers(0, 300),
    st.integers(0, 300),
)
def test_load_tail_falls_with_429s_above(
    below: int, limited_below: int, above: int, limited_above: int
) -> None:
    limited_below = min(limited_below, below)
    limited_above = min(limited_above, above)
    sample = LoadSample(below, limited_below, above, limited_above)

    tail = load_tail(sample)

    assert 0.0 <= tail <= 1.0
    if limited_above == 0:
        assert tail == 1.0
    if limited_above < above:
        more = LoadSample(below, limited_below, above, limited_above + 1)
        assert load_tail(more) <= tail + 1e-12


def test_load_tail_matches_fisher() -> None:
    """2 of 4 attempts above refused, none of 4 below: C(4,2) / C(8,2) = 6 / 28."""
    assert load_tail(LoadSample(4, 0, 4, 2)) == pytest.approx(6 / 28)


def test_random_429s_keep_growing() -> None:
    """A 429 in one request of ten, at every load: the limit still grows."""
    state = STEADY
    reasons = []
    for _ in range(10):
        seen = Observation(
            successes=18,
            latency_s=0.01,
            rate_limited=2,
            requests=20,
            load=LoadSample(200, 20, 100, 10),
        )
        decision = decide(CONFIG, state, seen)
        state = decision.state
        reasons.append(decision.reason)

    assert "rate_limited" not in reasons
    assert state.limit == STEADY.limit + 5
    assert state.trusted
