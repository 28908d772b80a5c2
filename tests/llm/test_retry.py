"""Tests of RetryPolicy delays and Retry-After parsing (pure, property-based)."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.retry import RetryPolicy, parse_retry_after, retry_after_from_headers


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    base = draw(st.floats(min_value=0.0, max_value=10.0))
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=20)),
        base_delay_s=base,
        max_delay_s=base + draw(st.floats(min_value=0.0, max_value=100.0)),
        multiplier=draw(st.floats(min_value=1.0, max_value=10.0)),
        jitter=draw(st.sampled_from(["full", "decorrelated"])),
    )


attempts = st.integers(min_value=2, max_value=500)
seeds = st.integers(min_value=0, max_value=2**32)
retry_afters = st.floats(min_value=0.0, max_value=1000.0)


@given(policies(), attempts, seeds)
def test_delay_within_ceiling(policy: RetryPolicy, attempt: int, seed: int) -> None:
    delay = policy.delay_s(attempt, random.Random(seed))

    assert delay >= 0.0
    assert delay <= policy.ceiling_s(attempt)
    assert delay <= policy.max_delay_s


@given(policies(), attempts, seeds, retry_afters)
def test_delay_never_below_retry_after(
    policy: RetryPolicy, attempt: int, seed: int, retry_after: float
) -> None:
    delay = policy.delay_s(attempt, random.Random(seed), retry_after_s=retry_after)

    assert delay >= retry_after
    assert delay <= max(policy.ceiling_s(attempt), retry_after)


@given(policies(), attempts)
def test_ceiling_monotone_and_capped(policy: RetryPolicy, attempt: int) -> None:
    assert policy.ceiling_s(attempt) <= policy.ceiling_s(attempt + 1)
    assert policy.ceiling_s(attempt + 1) <= policy.max_delay_s
    assert policy.ceiling_s(2) == policy.base_delay_s


@given(policies(), seeds, st.integers(min_value=1, max_value=30))
def test_decorrelated_sequence_stays_in_bounds(
    policy: RetryPolicy, seed: int, retries: int
) -> None:
    decorrelated = RetryPolicy(
        base_delay_s=policy.base_delay_s,
        max_delay_s=policy.max_delay_s,
        multiplier=policy.multiplier,
        jitter="decorrelated",
    )
    rng = random.Random(seed)
    previous: float | None = None

    for attempt in range(2, 2 + retries):
        delay = decorrelated.delay_s(attempt, rng, previous_delay_s=previous)
        assert decorrelated.base_delay_s <= delay <= decorrelated.ceiling_s(attempt)
        previous = delay


@given(policies(), attempts, seeds)
def test_same_seed_same_delay(policy: RetryPolicy, attempt: int, seed: int) -> None:
    first = policy.delay_s(attempt, random.Random(seed), previous_delay_s=1.0)
    second = policy.delay_s(attempt, random.Random(seed), previous_delay_s=1.0)

    assert first == second


def test_ceiling_grows_exponentially() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=30.0, multiplier=2.0)

    ceilings = [policy.ceiling_s(attempt) for attempt in range(2, 10)]

    assert ceilings == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_ceiling_huge_attempt_is_capped() -> None:
    policy = RetryPolicy(multiplier=10.0)

    assert policy.ceiling_s(100_000) == policy.max_delay_s


def test_delay_before_first_attempt_rejected() -> None:
    with pytest.raises(ValueError, match="attempt 2 or later"):
        RetryPolicy().delay_s(1, random.Random(0))


def test_defaults() -> None:
    policy = RetryPolicy()

    assert policy.max_attempts == 6
    assert policy.base_delay_s == 0.5
    assert policy.max_delay_s == 30.0
    assert policy.multiplier == 2.0


def test_should_retry_until_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)

    assert policy.should_retry(1)
    assert policy.should_retry(2)
    assert not policy.should_retry(3)


def test_should_retry_rejects_long_retry_after() -> None:
    policy = RetryPolicy(max_retry_after_s=60.0)

    assert policy.should_retry(1, retry_after_s=60.0)
    assert not policy.should_retry(1, retry_after_s=61.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_attempts", 0),
        ("base_delay_s", -1.0),
        ("base_delay_s", float("nan")),
        ("max_delay_s", 0.1),
        ("max_delay_s", float("inf")),
        ("multiplier", 0.5),
        ("jitter", "none"),
        ("max_retry_after_s", -1.0),
    ],
)
def test_invalid_policy_rejected(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=field):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


NOW = 1_700_000_000.0


def http_date(epoch_s: float) -> str:
    return email.utils.formatdate(epoch_s, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", 1.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        (http_date(NOW + 30), 30.0),
        (http_date(NOW - 30), 0.0),
        ("-1", None),
        ("inf", None),
        ("nan", None),
        ("soon", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now_epoch_s=NOW) == expected


def test_retry_after_minus_zero_zone_is_utc() -> None:
    value = http_date(NOW + 10).replace("GMT", "-0000")

    assert parse_retry_after(value, now_epoch_s=NOW) == 10.0


def test_retry_after_ms_header_wins() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "9"}

    assert retry_after_from_headers(headers, now_epoch_s=NOW) == 1.5


def test_retry_after_ms_invalid_falls_back() -> None:
    headers = {"retry-after-ms": "soon", "retry-after": "9"}

    assert retry_after_from_headers(headers, now_epoch_s=NOW) == 9.0


def test_no_retry_after_header() -> None:
    assert retry_after_from_headers({}, now_epoch_s=NOW) is None
