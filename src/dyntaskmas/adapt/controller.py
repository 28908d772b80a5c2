"""The concurrency controller: one endpoint's next limit from its last interval (pure).

R(t+1) = R(t) + ΔR(t), where R is the endpoint's limit of requests in flight
and ΔR comes from the interval's :class:`Observation`. Each call of
:func:`decide` applies the first rule that matches:

1. **Overload.** A timeout, or a 429 that load explains: R ← max(min,
   ⌊R · backoff⌋), and the latency baseline is no longer trusted, because
   it may have been measured on an overloaded server. The allocator splits
   recent requests at the in-flight count of the interval's most loaded
   429 (a :class:`LoadSample`). 429s count as load when they were more
   frequent at or above that count than below it, by Fisher's exact test,
   one-sided, at level ``load_evidence``. They also count as load when
   they were more than ``limited_tolerance`` of an interval of at least
   ``limited_min_requests`` requests. Other 429s are sporadic, such as a
   provider's token quota or a flaky gateway: fewer requests in flight
   would have got them as well, so they do not lower R, and the rules
   below apply. The backoff gate still pauses every caller for their
   Retry-After.
2. **Probe.** The controller lowers R to ⌈R · probe_factor⌉ for
   ``probe_intervals`` intervals and reads the latency of requests sent
   under the lower limit. If it is below baseline / tolerance, the old
   level was inflated: the probe's latency becomes the baseline and R grows
   again from the probe's level. Otherwise the baseline is confirmed and R
   returns to where it was. A probe runs when the baseline is untrusted and
   every ``probe_every`` intervals, so a baseline first measured on a busy
   server (a run that starts with a high limit) is corrected.
3. **Latency inflation.** The interval's median latency exceeds
   tolerance · baseline: R ← max(min, ⌊R · latency_backoff⌋).
4. **Growth.** Latency holds and the limit was binding (requests in flight
   reached R, or work waited): in slow start R ← ⌈R · growth⌉ up to the
   slow-start ceiling, otherwise R ← R + step every ``increase_every``
   intervals, or every ``plateau_every`` intervals when R + step would reach
   the limit at which latency last inflated. A limit that was not binding
   does not grow, since more room would change nothing that can be measured.
5. Otherwise R stays.

The baseline starts at the first median measured and then follows the
lowest one. An interval whose median is higher raises it by
``baseline_drift`` times the difference, so it follows tasks that really
got longer. R always stays within [min_limit, max_limit].

The same shape as TCP's congestion control with a latency signal (TCP
Vegas, and the probe of BBR's ProbeRTT state): slow start, additive
increase, multiplicative decrease.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from dyntaskmas.errors import ConfigError

DecisionReason = Literal[
    "rate_limited",
    "timeout",
    "probe_start",
    "probing",
    "probe_lowered_baseline",
    "probe_confirmed_baseline",
    "latency",
    "slow_start",
    "grow",
    "hold",
    "no_data",
]


@dataclass(frozen=True)
class ControllerConfig:
    """Parameters of :func:`decide`; see the module docstring for how each is used."""

    min_limit: int = 1
    max_limit: int = 256
    #: A p50 above tolerance times the baseline counts as inflated.
    tolerance: float = 1.5
    #: Factor on the limit after a 429 or a timeout.
    backoff: float = 0.5
    #: A share of 429s above this counts as overload whatever the load...
    limited_tolerance: float = 0.5
    #: ...in an interval of at least this many requests.
    limited_min_requests: int = 10
    #: 429s count as load when, were they as frequent at lower loads, as
    #: many at the interval's load would have had less than this chance.
    load_evidence: float = 0.001
    #: Factor on the limit after latency inflation.
    latency_backoff: float = 0.95
    #: Factor on the limit per interval in slow start.
    growth: float = 2.0
    #: Requests added per increase after slow start.
    step: int = 1
    #: Intervals between additive increases after slow start.
    increase_every: int = 2
    #: Intervals between increases that would reach the limit at which
    #: latency last inflated, so the controller spends little time past it.
    plateau_every: int = 10
    #: Fraction of the limit kept during a probe.
    probe_factor: float = 0.5
    #: Intervals a probe lasts; the last one is measured.
    probe_intervals: int = 3
    #: Intervals between probes while the baseline is trusted.
    probe_every: int = 60
    #: Successful requests an interval needs for its latency to count.
    min_samples: int = 5
    #: Relative rise of the baseline towards the current p50 per interval.
    baseline_drift: float = 0.01

    def __post_init__(self) -> None:
        if self.min_limit < 1 or self.max_limit < self.min_limit:
            raise ConfigError(
                f"limits must satisfy 1 <= min_limit <= max_limit, got "
                f"{self.min_limit} and {self.max_limit}"
            )
        factors = {
            "backoff": self.backoff,
            "latency_backoff": self.latency_backoff,
            "probe_factor": self.probe_factor,
        }
        for name, value in factors.items():
            if not 0 < value < 1:
                raise ConfigError(f"{name} must be between 0 and 1 (exclusive), got {value}")
        if not (math.isfinite(self.tolerance) and self.tolerance > 1):
            raise ConfigError(f"tolerance must be a finite factor > 1, got {self.tolerance}")
        if not (math.isfinite(self.growth) and self.growth > 1):
            raise ConfigError(f"growth must be a finite factor > 1, got {self.growth}")
        counts = {
            "step": self.step,
            "increase_every": self.increase_every,
            "plateau_every": self.plateau_every,
            "probe_intervals": self.probe_intervals,
            "probe_every": self.probe_every,
            "min_samples": self.min_samples,
            "limited_min_requests": self.limited_min_requests,
        }
        for name, count in counts.items():
            if count < 1:
                raise ConfigError(f"{name} must be >= 1, got {count}")
        if not 0 < self.load_evidence < 1:
            raise ConfigError(f"load_evidence must be between 0 and 1, got {self.load_evidence}")
        if not 0 <= self.limited_tolerance < 1:
            raise ConfigError(f"limited_tolerance must be in [0, 1), got {self.limited_tolerance}")
        if not 0 <= self.baseline_drift < 1:
            raise ConfigError(f"baseline_drift must be in [0, 1), got {self.baseline_drift}")

    def clamp(self, limit: int) -> int:
        """Return ``limit`` within [min_limit, max_limit]."""
        return max(self.min_limit, min(self.max_limit, limit))


@dataclass(frozen=True)
class LoadSample:
    """Recent attempts split at the most requests in flight under which an interval's 429 was sent.

    ``*_above`` counts attempts sent with at least that many in flight,
    ``*_below`` those sent with fewer. A server that refuses load gives
    429s above and none below; one that refuses at random, alike on both.
    """

    requests_below: int
    limited_below: int
    requests_above: int
    limited_above: int


@dataclass(frozen=True)
class Observation:
    """What one control interval measured on one endpoint.

    ``latency_s`` is the median latency of the interval's successful
    requests, or for a probe of those sent under the probe's limit. Any
    unit that does not grow with request size works, and the allocator
    passes seconds per completion token. ``binding`` tells
    whether the limit held work back: requests in flight reached it, or
    callers or ready tasks waited.

    ``requests`` counts every attempt; a smaller value is read as
    successes + rate_limited + timeouts. ``load`` compares 429s by load
    when the interval had any; None means every 429 counts as overload.
    """

    successes: int
    latency_s: float | None
    rate_limited: int = 0
    timeouts: int = 0
    binding: bool = True
    requests: int = 0
    load: LoadSample | None = None


@dataclass(frozen=True)
class ControllerState:
    """The controller's memory between intervals."""

    limit: int
    baseline_s: float | None = None
    trusted: bool = False
    slow_start: bool = True
    #: Slow start stops at this limit; None means at max_limit.
    ceiling: int | None = None
    #: Intervals left in the current probe; 0 when not probing.
    probe_left: int = 0
    #: The limit to return to when a probe confirms the baseline.
    probe_return: int = 0
    since_probe: int = 0
    since_increase: int = 0
    #: The limit at which latency last inflated; None before it ever did.
    inflated_at: int | None = None


@dataclass(frozen=True)
class Decision:
    """The next state, whose ``limit`` is R(t+1), and the rule that produced it."""

    state: ControllerState
    reason: DecisionReason

    @property
    def limit(self) -> int:
        return self.state.limit


def initial_state(config: ControllerConfig, limit: int) -> ControllerState:
    """Return the state of a controller that starts at ``limit`` (clamped)."""
    return ControllerState(limit=config.clamp(limit))


def decide(config: ControllerConfig, state: ControllerState, seen: Observation) -> Decision:
    """Return R(t+1) and the controller's next state after observing ``seen``."""
    limit = state.limit
    state = replace(state, since_probe=state.since_probe + 1)

    # 1. Overload: multiplicative decrease, and distrust the baseline.
    overloaded = seen.rate_limited > 0 and _load_explains(config, seen)
    if overloaded or seen.timeouts:
        lowered = config.clamp(math.floor(limit * config.backoff))
        reason: DecisionReason = "rate_limited" if overloaded else "timeout"
        return Decision(
            replace(
                state,
                limit=lowered,
                trusted=False,
                slow_start=False,
                ceiling=lowered,
                probe_left=0,
                since_increase=0,
            ),
            reason,
        )

    measured = seen.latency_s if seen.successes >= config.min_samples else None

    # 2. Probe in progress: hold the lowered limit, then judge the baseline.
    if state.probe_left > 1:
        return Decision(replace(state, probe_left=state.probe_left - 1), "probing")
    if state.probe_left == 1:
        return _end_probe(config, state, measured)

    if measured is None:
        return Decision(state, "no_data")

    if state.baseline_s is None:
        state = replace(state, baseline_s=measured)
    due = not state.trusted or state.since_probe >= config.probe_every
    if due and limit > config.min_limit:
        probe_limit = config.clamp(math.ceil(limit * config.probe_factor))
        if probe_limit < limit:
            return Decision(
                replace(
                    state,
                    limit=probe_limit,
                    probe_left=config.probe_intervals,
                    probe_return=limit,
                    since_probe=0,
                ),
                "probe_start",
            )

    assert state.baseline_s is not None
    baseline = _drift(config, state.baseline_s, measured)
    state = replace(state, baseline_s=baseline)

    # 3. Latency inflation: gentle multiplicative decrease.
    if measured > config.tolerance * baseline:
        lowered = config.clamp(math.floor(limit * config.latency_backoff))
        return Decision(
            replace(
                state,
                limit=lowered,
                slow_start=False,
                ceiling=lowered,
                since_increase=0,
                inflated_at=limit,
            ),
            "latency",
        )

    # 4. Growth, only where the limit held work back.
    if not seen.binding:
        return Decision(state, "hold")
    ceiling = config.max_limit if state.ceiling is None else state.ceiling
    if state.slow_start and limit < ceiling:
        grown = min(ceiling, config.clamp(math.ceil(limit * config.growth)))
        return Decision(replace(state, limit=grown, since_increase=0), "slow_start")
    since_increase = state.since_increase + 1
    near_inflation = state.inflated_at is not None and limit + config.step >= state.inflated_at
    wait = config.plateau_every if near_inflation else config.increase_every
    if since_increase >= wait and limit < config.max_limit:
        grown = config.clamp(limit + config.step)
        return Decision(replace(state, limit=grown, slow_start=False, since_increase=0), "grow")
    return Decision(replace(state, slow_start=False, since_increase=since_increase), "hold")


def _load_explains(config: ControllerConfig, seen: Observation) -> bool:
    """Tell whether the interval's 429s are better explained by load than by chance.

    429s that come as often at lower loads would come at a lower limit too;
    lowering the limit would only cost throughput. Unless 429s are so many
    that the server is refusing most of the work.
    """
    load = seen.load
    if load is None:
        return True
    requests = max(seen.requests, seen.successes + seen.rate_limited + seen.timeouts)
    many = seen.rate_limited > config.limited_tolerance * requests
    if many and requests >= config.limited_min_requests:
        return True
    return load_tail(load) < config.load_evidence


def load_tail(load: LoadSample) -> float:
    """Return the p-value of Fisher's exact test, one-sided, for more 429s above than below.

    If the 429s seen fell at random among all the attempts, this is the
    chance that the attempts above would get ``limited_above`` or more.
    Neither side's share is taken as known, so a few requests below
    without a 429 prove little.
    """
    total = load.requests_below + load.requests_above
    limited = load.limited_below + load.limited_above
    drawn = load.requests_above
    if load.limited_above <= 0:
        return 1.0
    denominator = _log_comb(total, drawn)
    tail = 0.0
    for k in range(load.limited_above, min(limited, drawn) + 1):
        log_term = _log_comb(limited, k) + _log_comb(total - limited, drawn - k) - denominator
        tail += math.exp(log_term)
    return min(1.0, tail)


def _log_comb(n: int, k: int) -> float:
    if k < 0 or k > n:
        return -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def _end_probe(
    config: ControllerConfig, state: ControllerState, measured: float | None
) -> Decision:
    """Judge the baseline from the probe's last interval and leave the probe."""
    done = replace(state, probe_left=0, since_probe=0, since_increase=0)
    back = config.clamp(state.probe_return)
    if measured is None:
        # Too few requests under the probe's limit to judge. At so low a
        # load the server is unlikely to be overloaded, so the baseline
        # counts as trusted rather than probing again and again.
        return Decision(replace(done, limit=back, trusted=True), "no_data")
    baseline = state.baseline_s
    if baseline is None or measured * config.tolerance < baseline:
        # The level before the probe was inflated: grow again from the
        # probe's level, quickly up to just below where the inflation was.
        ceiling = max(state.limit, config.clamp(math.floor(back * config.latency_backoff)))
        return Decision(
            replace(done, baseline_s=measured, trusted=True, slow_start=True, ceiling=ceiling),
            "probe_lowered_baseline",
        )
    return Decision(
        replace(
            done,
            limit=back,
            baseline_s=min(baseline, measured),
            trusted=True,
        ),
        "probe_confirmed_baseline",
    )


def _drift(config: ControllerConfig, baseline: float, measured: float) -> float:
    if measured <= baseline:
        return measured
    return baseline + config.baseline_drift * (measured - baseline)
