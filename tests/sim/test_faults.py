"""Fault rates: validation, the mapping of draws to faults, and counts."""

from __future__ import annotations

import random

import pytest

from dyntaskmas.errors import ConfigError
from dyntaskmas.sim.faults import FAULTS, Fault, FaultConfig, FaultInjector


class FixedDraws(random.Random):
    """A Random whose ``random()`` returns given numbers in turn."""

    def __init__(self, *draws: float) -> None:
        super().__init__(0)
        self._draws = list(draws)

    def random(self) -> float:
        return self._draws.pop(0)


def test_draws_map_to_faults_by_cumulative_rate() -> None:
    # Thresholds: 429 below 0.1, 500 below 0.3, slow below 0.6, malformed
    # below 0.7, truncated below 0.8, no fault from 0.8.
    config = FaultConfig(
        rate_429=0.1, rate_500=0.2, rate_slow=0.3, rate_malformed=0.1, rate_truncated=0.1
    )
    injector = FaultInjector(config, FixedDraws(0.05, 0.1, 0.59, 0.65, 0.75, 0.85, 0.99))

    faults = [injector.draw() for _ in range(7)]

    assert faults == [
        "rate_limited",
        "server_error",
        "slow",
        "malformed",
        "truncated",
        None,
        None,
    ]


@pytest.mark.parametrize("fault", FAULTS)
def test_rate_one_always_injects(fault: Fault) -> None:
    name = {
        "rate_limited": "rate_429",
        "server_error": "rate_500",
        "slow": "rate_slow",
        "malformed": "rate_malformed",
        "truncated": "rate_truncated",
    }[fault]
    injector = FaultInjector(FaultConfig(**{name: 1.0}), random.Random(5))

    drawn = [injector.draw() for _ in range(50)]

    assert drawn == [fault] * 50
    assert injector.counts[fault] == 50


def test_no_rates_use_no_draws() -> None:
    rng = random.Random(5)
    injector = FaultInjector(FaultConfig(), rng)

    assert injector.draw() is None
    assert rng.random() == random.Random(5).random()


def test_observed_rate_is_near_configured() -> None:
    injector = FaultInjector(FaultConfig(rate_500=0.25), random.Random(11))

    drawn = [injector.draw() for _ in range(4000)]

    assert drawn.count("server_error") / 4000 == pytest.approx(0.25, abs=0.03)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate_429": 1.5}, "rate_429 must be between 0 and 1"),
        ({"rate_500": -0.1}, "rate_500 must be between 0 and 1"),
        ({"rate_slow": float("nan")}, "rate_slow must be between 0 and 1"),
        ({"rate_429": 0.6, "rate_truncated": 0.6}, "add up to 1.2"),
        ({"retry_after_s": -1.0}, "retry_after_s must be"),
        ({"slow_s": float("inf")}, "slow_s must be"),
    ],
)
def test_invalid_config_is_rejected(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FaultConfig(**options)


def test_rates_summing_to_one_are_accepted() -> None:
    config = FaultConfig(rate_429=0.1, rate_500=0.2, rate_truncated=0.7)

    assert config.rate_of("truncated") == 0.7
