"""Edge weights W(u, v) = alpha * C(v) + beta * I(u, v), and their scaling.

C(v) is task v's estimated execution time and I(u, v) the estimated time to
move u's output into v's prompt: its tokens times the endpoint's prefill time
per token, plus network time when the two run on different machines. Both are
in seconds.

Two weightings are supported:

``normalized``
    alpha = 1 / T_c and beta = 1 / T_t, where T_c is the mean task cost and
    T_t the mean transfer cost of the current graph, so that both terms weigh
    alike whatever their magnitudes (the DynTaskMAS formulation).
``seconds``
    alpha = beta = 1: weights stay in seconds and the priority is the plain
    critical path to the end of the graph.

This module holds formulas only; :mod:`dyntaskmas.graph.dag` applies them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Weighting = Literal["normalized", "seconds"]
WEIGHTINGS: tuple[Weighting, ...] = ("normalized", "seconds")


@dataclass(frozen=True)
class TransferModel:
    """Estimated cost of moving a task's output into a successor's prompt.

    The default prefill rate, 0.5 ms per token, is an estimate for a small
    model on a GPU server; runs recalibrate it from measured latencies.
    """

    prefill_s_per_token: float = 0.0005
    # Added to every transfer when producer and consumer run on different
    # machines; 0 for a single-process run.
    network_s: float = 0.0

    def __post_init__(self) -> None:
        for name, value in (
            ("prefill_s_per_token", self.prefill_s_per_token),
            ("network_s", self.network_s),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")

    def transfer_s(self, output_tokens: int) -> float:
        """Return I(u, v) in seconds for an output of ``output_tokens`` tokens."""
        return output_tokens * self.prefill_s_per_token + self.network_s


@dataclass(frozen=True)
class Scale:
    """The coefficients alpha (per second of task cost) and beta (per second of transfer)."""

    alpha: float
    beta: float

    def edge_weight(self, successor_cost_s: float, transfer_s: float) -> float:
        """Return W(u, v) = alpha * C(v) + beta * I(u, v)."""
        return self.alpha * successor_cost_s + self.beta * transfer_s


UNIT_SCALE = Scale(alpha=1.0, beta=1.0)


def compute_scale(
    weighting: Weighting, costs_s: Iterable[float], transfers_s: Iterable[float]
) -> Scale:
    """Return the scale for ``weighting`` given the graph's task and transfer costs.

    A mean of zero (no tasks, no edges, or all estimates zero) makes its term
    irrelevant, so its coefficient falls back to 1 instead of dividing by zero.
    """
    if weighting == "seconds":
        return UNIT_SCALE
    mean_cost = _mean(costs_s)
    mean_transfer = _mean(transfers_s)
    alpha = 1.0 / mean_cost if mean_cost > 0 else 1.0
    beta = 1.0 / mean_transfer if mean_transfer > 0 else 1.0
    return Scale(alpha=alpha, beta=beta)


def drifted(old: Scale, new: Scale, tolerance: float) -> bool:
    """Tell whether ``new`` differs from ``old`` by more than ``tolerance`` (relative)."""
    return _relative_change(old.alpha, new.alpha) > tolerance or (
        _relative_change(old.beta, new.beta) > tolerance
    )


def _relative_change(old: float, new: float) -> float:
    return abs(new - old) / old if old > 0 else float("inf")


def _mean(values: Iterable[float]) -> float:
    total = 0.0
    count = 0
    for value in values:
        total += value
        count += 1
    return total / count if count else 0.0
