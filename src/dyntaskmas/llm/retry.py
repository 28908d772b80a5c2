"""Retry policy for model calls: how many attempts, and how long to wait before each.

Pure: the caller passes the attempt number, a seeded :class:`random.Random`
and any Retry-After the server sent. Nothing here sleeps, reads a clock or
logs. The retry loop itself is in :mod:`dyntaskmas.llm.openai_backend`.

Attempts are numbered from 1, so the first retry is attempt 2. The backoff
before attempt ``n`` is drawn below a ceiling that grows exponentially,
``min(max_delay_s, base_delay_s * multiplier ** (n - 2))``, with one of two
jitter modes:

- ``"full"``: uniform in ``[0, ceiling]``.
- ``"decorrelated"``: uniform in ``[base_delay_s, 3 * previous delay]``, then
  clipped to the ceiling, so consecutive delays grow from the last one drawn.

A Retry-After from the server is a lower bound on the delay: the policy may
wait longer than the server asked, never shorter.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from dyntaskmas.errors import ConfigError

JitterMode = Literal["full", "decorrelated"]

_JITTER_MODES: frozenset[str] = frozenset({"full", "decorrelated"})


@dataclass(frozen=True)
class RetryPolicy:
    """Limits and backoff for retrying transient failures of one call."""

    #: Total HTTP attempts per call, the first one included.
    max_attempts: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    multiplier: float = 2.0
    jitter: JitterMode = "full"
    #: A Retry-After longer than this makes the call fail at once, because a
    #: caller blocked for many minutes is worse than an error.
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError(
                f"max_attempts must be at least 1, got {self.max_attempts}; "
                f"use 1 to disable retries"
            )
        if not math.isfinite(self.base_delay_s) or self.base_delay_s < 0:
            raise ConfigError(f"base_delay_s must be a finite number >= 0, got {self.base_delay_s}")
        if not math.isfinite(self.max_delay_s) or self.max_delay_s < self.base_delay_s:
            raise ConfigError(
                f"max_delay_s must be finite and >= base_delay_s ({self.base_delay_s}), "
                f"got {self.max_delay_s}"
            )
        if not math.isfinite(self.multiplier) or self.multiplier < 1:
            raise ConfigError(f"multiplier must be a finite number >= 1, got {self.multiplier}")
        if self.jitter not in _JITTER_MODES:
            raise ConfigError(f"jitter must be one of {sorted(_JITTER_MODES)}, got {self.jitter!r}")
        if math.isnan(self.max_retry_after_s) or self.max_retry_after_s < 0:
            raise ConfigError(f"max_retry_after_s must be >= 0, got {self.max_retry_after_s}")

    def should_retry(self, attempts_made: int, *, retry_after_s: float | None = None) -> bool:
        """Return whether a call that failed transiently may make another attempt.

        ``retry_after_s`` is the wait the server requested, if any. A wait
        above ``max_retry_after_s`` means giving up now.
        """
        if attempts_made >= self.max_attempts:
            return False
        return retry_after_s is None or retry_after_s <= self.max_retry_after_s

    def ceiling_s(self, attempt: int) -> float:
        """Return the maximum backoff before ``attempt`` (2 or more), ignoring Retry-After.

        The ceiling never decreases as ``attempt`` grows and never exceeds
        ``max_delay_s``.
        """
        _check_attempt(attempt)
        try:
            ceiling = self.base_delay_s * self.multiplier ** (attempt - 2)
        except OverflowError:
            return self.max_delay_s
        return min(self.max_delay_s, ceiling)

    def delay_s(
        self,
        attempt: int,
        rng: random.Random,
        *,
        retry_after_s: float | None = None,
        previous_delay_s: float | None = None,
    ) -> float:
        """Draw the delay in seconds before ``attempt`` (2 or more).

        ``previous_delay_s`` is the delay drawn before the previous attempt.
        Only decorrelated jitter uses it, and it defaults to ``base_delay_s``.
        The result is at least ``retry_after_s`` when one is given.
        """
        ceiling = self.ceiling_s(attempt)

        if self.jitter == "full":
            backoff = rng.uniform(0.0, ceiling)
        else:
            previous = self.base_delay_s if previous_delay_s is None else previous_delay_s
            upper = max(self.base_delay_s, 3.0 * previous)
            backoff = min(ceiling, rng.uniform(self.base_delay_s, upper))

        if retry_after_s is not None and retry_after_s > backoff:
            return retry_after_s
        return backoff


def parse_retry_after(value: str, *, now_epoch_s: float) -> float | None:
    """Parse a Retry-After header value into seconds from now.

    The value is either a number of seconds or an HTTP-date, and a date in
    the past gives 0. Returns None for a value that is neither, so that a
    malformed header falls back to the policy's own backoff.
    ``now_epoch_s`` is the current wall-clock time (:func:`time.time`).
    """
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return seconds

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # parsedate_to_datetime returns a naive datetime only for the zone
        # "-0000", which RFC 5322 defines as UTC. HTTP-dates are GMT anyway.
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now_epoch_s)


def retry_after_from_headers(headers: Mapping[str, str], *, now_epoch_s: float) -> float | None:
    """Return the wait in seconds that response headers request, or None.

    ``retry-after-ms`` (sent by OpenAI's API) takes precedence over the
    standard ``retry-after``. ``headers`` must find names given in lower
    case, as the case-insensitive header mappings of httpx and aiohttp do.
    """
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            wait_ms = float(milliseconds)
        except ValueError:
            wait_ms = math.nan
        if math.isfinite(wait_ms) and wait_ms >= 0:
            return wait_ms / 1000.0

    value = headers.get("retry-after")
    if value is None:
        return None
    return parse_retry_after(value, now_epoch_s=now_epoch_s)


def _check_attempt(attempt: int) -> None:
    if attempt < 2:
        raise ValueError(f"a backoff delay exists only before attempt 2 or later, got {attempt}")
