"""Cost calibration: C(v) and I(u, v) estimates from measured latencies and tokens.

Two estimators, both exponentially weighted so that they follow a server
whose speed changes during a run:

- :class:`Ewma`: per role, the ratio of a task's measured duration to its
  planned cost ``cost_s``, and per role and endpoint the seconds per task.
  A task's C(v) becomes its planned cost times its role's ratio, so the
  planner's relative hints survive while their scale is corrected.
- :class:`TokenCostEstimator`: per endpoint, a least-squares fit of
  ``latency ≈ prefill_s_per_token · prompt_tokens + decode_s_per_token ·
  completion_tokens`` over successful attempts. Its prefill rate is what
  I(u, v) needs (the tokens of u's output times the prefill time per token).

:class:`CostCalibrator` collects both from the run's events and the
endpoints' attempt records, and :meth:`CostCalibrator.recalibrate` writes
the new estimates into the graph of tasks not yet started, which refreshes
their critical-path priorities. It writes only when an estimate moved by
more than ``min_change`` since it was last written, so a steady run does
not pay for a priority update after every task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.llm.attempts import AttemptRecord, FlowControl
from dyntaskmas.observe.events import (
    Event,
    EventBus,
    GraphChanged,
    RunStarted,
    TaskFinished,
    TaskStarted,
)

#: Task kinds whose cost is a model call that an agent runs.
_CALIBRATED_KINDS = frozenset({"work", "synthesize"})


class Ewma:
    """An exponentially weighted mean: each new value gets weight ``alpha``.

    The first value is taken as it is, so the mean does not start biased
    towards 0.
    """

    def __init__(self, alpha: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.value: float | None = None
        self.count = 0

    def update(self, sample: float) -> float:
        """Fold ``sample`` in and return the new mean."""
        if self.value is None:
            self.value = sample
        else:
            self.value += self.alpha * (sample - self.value)
        self.count += 1
        return self.value


class TokenCostEstimator:
    """Exponentially weighted least squares of latency on prompt and completion tokens.

    The model has no intercept: ``latency = a · prompt + b · completion``.
    Each sample multiplies the old sums by ``1 - alpha`` first. Returns no
    fit while the two token counts are collinear over the samples (for
    example when every request has the same sizes), because then ``a`` and
    ``b`` cannot be separated.
    """

    def __init__(self, alpha: float = 0.05) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.count = 0
        self._pp = self._pc = self._cc = self._py = self._cy = 0.0

    def update(self, prompt_tokens: int, completion_tokens: int, latency_s: float) -> None:
        """Fold in one successful call."""
        keep = 1.0 - self.alpha
        p, c, y = float(prompt_tokens), float(completion_tokens), latency_s
        self._pp = keep * self._pp + p * p
        self._pc = keep * self._pc + p * c
        self._cc = keep * self._cc + c * c
        self._py = keep * self._py + p * y
        self._cy = keep * self._cy + c * y
        self.count += 1

    def fit(self) -> tuple[float, float] | None:
        """Return ``(prefill_s_per_token, decode_s_per_token)``, each >= 0, or None."""
        det = self._pp * self._cc - self._pc * self._pc
        # Relative test: det is a difference of products of the sums, so its
        # rounding error scales with them.
        if self._pp <= 0 or self._cc <= 0 or det <= 1e-9 * self._pp * self._cc:
            return None
        prefill = (self._py * self._cc - self._cy * self._pc) / det
        decode = (self._cy * self._pp - self._py * self._pc) / det
        if prefill < 0:
            # The best fit without a prefill term.
            return 0.0, max(0.0, self._cy / self._cc)
        if decode < 0:
            return max(0.0, self._py / self._pp), 0.0
        return prefill, decode


@dataclass(frozen=True)
class CostEstimates:
    """The calibrator's current estimates.

    ``cost_ratio`` maps a role to measured duration over planned cost.
    ``seconds_per_task`` maps ``(role, endpoint)`` to the mean task
    duration. ``token_costs`` maps an endpoint to its fitted
    ``(prefill_s_per_token, decode_s_per_token)``.
    """

    cost_ratio: dict[str, float]
    seconds_per_task: dict[tuple[str, str], float]
    token_costs: dict[str, tuple[float, float]]


class CostCalibrator:
    """Learns C(v) and I(u, v) from a run and writes them into its graph.

    Attach it to the run's events (:meth:`attach`) and to each endpoint
    (:meth:`watch`), and give it to the engine as ``calibrator``.
    """

    def __init__(
        self, *, alpha: float = 0.2, min_change: float = 0.1, min_samples: int = 3
    ) -> None:
        if not (math.isfinite(min_change) and min_change >= 0):
            raise ValueError(f"min_change must be a finite number >= 0, got {min_change}")
        if min_samples < 1:
            raise ValueError(f"min_samples must be >= 1, got {min_samples}")
        self.alpha = alpha
        self.min_change = min_change
        self.min_samples = min_samples
        self._planned: dict[str, tuple[str, float]] = {}
        self._endpoint_of: dict[str, str] = {}
        self._ratio: dict[str, Ewma] = {}
        self._per_task: dict[tuple[str, str], Ewma] = {}
        self._tokens: dict[str, TokenCostEstimator] = {}
        # What was last written into the graph.
        self._applied_ratio: dict[str, float] = {}
        self._applied_prefill: float | None = None

    # --- inputs -----------------------------------------------------------------

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Follow the run events on ``bus``; return the function that unsubscribes."""
        return bus.subscribe(self.record_event)

    def watch(self, flow: FlowControl) -> None:
        """Fit the token costs of ``flow``'s endpoint from its attempts."""
        flow.attempt_listeners.append(self.record_attempt)

    def record_event(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._planned.clear()
            self._endpoint_of.clear()
            self._applied_ratio.clear()
        elif isinstance(event, GraphChanged):
            for spec in event.added:
                if spec.kind in _CALIBRATED_KINDS:
                    self._planned[spec.id] = (spec.role, spec.cost_s)
        elif isinstance(event, TaskStarted) and event.endpoint is not None:
            self._endpoint_of[event.task_id] = event.endpoint
        elif isinstance(event, TaskFinished) and event.agent is not None:
            planned = self._planned.get(event.task_id)
            if planned is None:
                return
            role, cost_s = planned
            if cost_s > 0:
                self._ratio.setdefault(role, Ewma(self.alpha)).update(event.duration_s / cost_s)
            endpoint = self._endpoint_of.get(event.task_id, "?")
            self._per_task.setdefault((role, endpoint), Ewma(self.alpha)).update(event.duration_s)

    def record_attempt(self, record: AttemptRecord) -> None:
        if record.status != "ok":
            return
        estimator = self._tokens.setdefault(record.endpoint, TokenCostEstimator())
        estimator.update(record.prompt_tokens, record.completion_tokens, record.latency_s)

    # --- outputs ----------------------------------------------------------------

    def estimates(self) -> CostEstimates:
        """Return the current estimates, leaving out those with too few samples."""
        token_costs = {}
        for endpoint, estimator in self._tokens.items():
            fit = estimator.fit() if estimator.count >= self.min_samples else None
            if fit is not None:
                token_costs[endpoint] = fit
        return CostEstimates(
            cost_ratio={
                role: mean.value
                for role, mean in self._ratio.items()
                if mean.value is not None and mean.count >= self.min_samples
            },
            seconds_per_task={
                key: mean.value
                for key, mean in self._per_task.items()
                if mean.value is not None and mean.count >= self.min_samples
            },
            token_costs=token_costs,
        )

    def recalibrate(self, graph: TaskGraph) -> bool:
        """Write estimates that moved by more than ``min_change`` into ``graph``.

        Only pending and ready tasks change. Returns whether any estimate
        was written, that is whether priorities may have changed.
        """
        estimates = self.estimates()
        changed = False

        moved_roles = {
            role: ratio
            for role, ratio in estimates.cost_ratio.items()
            if _moved(self._applied_ratio.get(role), ratio, self.min_change)
        }
        if moved_roles:
            costs = {}
            for task_id in _unstarted(graph):
                planned = self._planned.get(task_id)
                if planned is not None and planned[0] in moved_roles:
                    costs[task_id] = planned[1] * moved_roles[planned[0]]
            graph.update_costs(costs)
            self._applied_ratio.update(moved_roles)
            changed = True

        prefill = _mean_prefill(estimates.token_costs.values())
        if prefill is not None and _moved(self._applied_prefill, prefill, self.min_change):
            graph.set_transfer(replace(graph.transfer, prefill_s_per_token=prefill))
            self._applied_prefill = prefill
            changed = True
        return changed


def _unstarted(graph: TaskGraph) -> Iterable[str]:
    return graph.ids_in_state("pending", "ready")


def _moved(old: float | None, new: float, tolerance: float) -> bool:
    if old is None:
        return True
    if old == 0:
        return new != 0
    return abs(new - old) / abs(old) > tolerance


def _mean_prefill(fits: Iterable[tuple[float, float]]) -> float | None:
    # NOTE: a task's endpoint is not known before it runs, so I(u, v) uses
    # the mean prefill rate over the endpoints rather than the one it will use.
    rates = [prefill for prefill, _ in fits]
    return sum(rates) / len(rates) if rates else None
