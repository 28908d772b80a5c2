"""The hidden-capacity profile (pure) and its in-process server on virtual time."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest

from dyntaskmas.errors import ConfigError, TransientLLMError
from dyntaskmas.sim.capacity import CapacityProfile, CapacityServer, Rejection, ThrottleWindow
from dyntaskmas.sim.virtual_time import run_virtual


@pytest.mark.parametrize(
    ("in_flight", "expected"),
    [(0, 1.0), (23, 1.0), (24, 2.0), (39, 2.0)],
)
def test_latency_doubles_past_24(in_flight: int, expected: float) -> None:
    assert CapacityProfile().admit(in_flight, 0.0) == expected


def test_rejects_past_40() -> None:
    decision = CapacityProfile().admit(40, 0.0)

    assert isinstance(decision, Rejection)
    assert decision.retry_after_s == 1.0


def test_throttle_window_rejects_everything_inside() -> None:
    profile = CapacityProfile(throttle=ThrottleWindow(start_s=1.0, duration_s=5.0))

    assert profile.admit(0, 0.5) == 1.0
    inside = profile.admit(0, 1.0)
    assert isinstance(inside, Rejection) and inside.retry_after_s == 2.0
    assert isinstance(profile.admit(0, 5.99), Rejection)
    assert profile.admit(0, 6.0) == 1.0


def test_random_429s_whatever_the_load() -> None:
    profile = CapacityProfile(rate_429=0.1, random_retry_after_s=0.5)

    drawn = profile.admit(0, 0.0, draw=0.05)
    assert isinstance(drawn, Rejection) and drawn.retry_after_s == 0.5
    assert profile.admit(0, 0.0, draw=0.1) == 1.0
    assert profile.admit(30, 0.0, draw=0.5) == 2.0


def test_server_draws_random_429s_from_its_seed() -> None:
    def rejected(seed: int) -> list[bool]:
        server = CapacityServer(
            CapacityProfile(rate_429=0.2, decode_s_per_token=0.0), rng=random.Random(seed)
        )

        async def main() -> None:
            for _ in range(200):
                with contextlib.suppress(TransientLLMError):
                    await server.generate(0, 10)

        run_virtual(main())
        return [arrival.rejected for arrival in server.arrivals]

    first = rejected(1)
    assert first == rejected(1)
    assert 20 <= sum(first) <= 60


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"inflate_above": 0}, "inflate_above"),
        ({"inflate_above": 10, "reject_above": 5}, "reject_above"),
        ({"inflation": 0.5}, "inflation"),
        ({"retry_after_s": -1.0}, "retry_after_s"),
        ({"rate_429": 1.0}, "rate_429"),
        ({"random_retry_after_s": -1.0}, "random_retry_after_s"),
    ],
)
def test_invalid_profile_rejected(options: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CapacityProfile(**options)  # type: ignore[arg-type]


def test_server_inflates_and_rejects_by_load() -> None:
    profile = CapacityProfile(
        inflate_above=2, reject_above=3, prefill_s_per_token=0.0, decode_s_per_token=0.01
    )
    server = CapacityServer(profile)
    outcomes: list[float | str] = []

    async def request() -> None:
        try:
            outcomes.append(await server.generate(0, 100))
        except TransientLLMError as exc:
            assert exc.status_code == 429
            outcomes.append("429")

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(4):
                group.create_task(request())

    run_virtual(main())

    # Requests 1-2 run at base latency, 3 is inflated, 4 is rejected at once.
    assert outcomes == ["429", 1.0, 1.0, 2.0]
    assert [a.rejected for a in server.arrivals] == [False, False, False, True]
    assert server.in_flight == 0
