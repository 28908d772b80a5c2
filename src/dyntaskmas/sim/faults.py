"""Fault injection for the simulated HTTP server: which request fails, and how.

:class:`FaultConfig` gives each fault a rate, the probability that a
request gets it. A request gets at most one fault, so the rates must add up
to at most 1. :class:`FaultInjector` draws one number per request from an
injected, seeded :class:`random.Random` and maps it to a fault by the rates,
in the order of :data:`FAULTS`. The i-th request to arrive gets the i-th
draw, so a seed fixes the sequence of faults. How the server acts on each
fault is in :mod:`dyntaskmas.sim.http_server`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from dyntaskmas.errors import ConfigError

Fault = Literal["rate_limited", "server_error", "slow", "malformed", "truncated"]

#: Every fault, in the order in which the draw is mapped to them.
FAULTS: tuple[Fault, ...] = ("rate_limited", "server_error", "slow", "malformed", "truncated")


@dataclass(frozen=True)
class FaultConfig:
    """Rates of each fault and their parameters; times are wall-clock seconds.

    - ``rate_429``: respond with 429 and ``Retry-After: retry_after_s``;
    - ``rate_500``: respond with 500;
    - ``rate_slow``: wait ``slow_s`` before handling the request;
    - ``rate_malformed``: respond with 200 and a body that is not valid JSON;
    - ``rate_truncated``: close the connection part-way through the body.
    """

    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_500: float = 0.0
    rate_slow: float = 0.0
    slow_s: float = 5.0
    rate_malformed: float = 0.0
    rate_truncated: float = 0.0

    def __post_init__(self) -> None:
        for name, value in self._rates():
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        total = sum(value for _, value in self._rates())
        # A small tolerance, so that rates such as 0.1 + 0.2 + 0.7 pass.
        if total > 1.0 + 1e-9:
            raise ConfigError(
                f"fault rates add up to {total:g}, more than 1; a request gets at most one "
                f"fault, so lower some rates"
            )
        for name, value in (("retry_after_s", self.retry_after_s), ("slow_s", self.slow_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0 seconds, got {value}")

    @property
    def any(self) -> bool:
        """Whether any fault has a rate above 0."""
        return any(value > 0 for _, value in self._rates())

    def rate_of(self, fault: Fault) -> float:
        """Return the rate of ``fault``."""
        return dict(zip(FAULTS, (value for _, value in self._rates()), strict=True))[fault]

    def _rates(self) -> tuple[tuple[str, float], ...]:
        return (
            ("rate_429", self.rate_429),
            ("rate_500", self.rate_500),
            ("rate_slow", self.rate_slow),
            ("rate_malformed", self.rate_malformed),
            ("rate_truncated", self.rate_truncated),
        )


class FaultInjector:
    """Draws the fault of each request in turn and counts them."""

    def __init__(self, config: FaultConfig, rng: random.Random) -> None:
        self.config = config
        self._rng = rng
        self.counts: dict[Fault, int] = dict.fromkeys(FAULTS, 0)

    def draw(self) -> Fault | None:
        """Return the next request's fault, or None for a normal response."""
        if not self.config.any:
            return None
        point = self._rng.random()
        threshold = 0.0
        for fault in FAULTS:
            threshold += self.config.rate_of(fault)
            if point < threshold:
                self.counts[fault] += 1
                return fault
        return None
