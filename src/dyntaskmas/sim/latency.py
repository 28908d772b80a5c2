"""How long the simulated server's prefill and decode steps take.

:class:`LatencyModel` maps a step to its duration in seconds:

- a prefill step processes the prompts of the requests admitted at one step
  boundary and lasts ``prefill_s(total prompt tokens)``;
- a decode step emits one token for each running request and lasts
  ``decode_step_s(batch size)``.

Both are piecewise-linear curves through measured points
(:class:`PiecewiseLinear`), so a calibrated table and a hand-written line
(:meth:`LatencyModel.linear`) are the same kind of object. The defaults,
:data:`DEFAULT_LATENCY`, were calibrated from measured Llama2-70B timings
and scaled to an 8B model; :mod:`dyntaskmas.sim.calibration` recomputes them
and explains the rows and the scaling rule. This module is pure: it reads no
files and keeps no state.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

from dyntaskmas.errors import ConfigError


@dataclass(frozen=True)
class PiecewiseLinear:
    """A non-decreasing piecewise-linear function through ``points``.

    ``points`` are ``(x, y)`` pairs with strictly increasing ``x``. Between
    two points the value is interpolated; beyond the first or last point
    the nearest segment's slope continues, and the result is never below 0.
    A single point gives a constant.

    >>> PiecewiseLinear(((1, 2.0), (3, 4.0)))(2)
    3.0
    >>> PiecewiseLinear(((1, 2.0), (3, 4.0)))(5)
    6.0
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("a piecewise-linear curve needs at least one point")
        for x, y in self.points:
            if not (math.isfinite(x) and math.isfinite(y)) or x < 0 or y < 0:
                raise ConfigError(
                    f"curve point ({x}, {y}) is invalid; both coordinates must be finite "
                    f"numbers >= 0"
                )
        for (x0, y0), (x1, y1) in zip(self.points, self.points[1:], strict=False):
            if x1 <= x0:
                raise ConfigError(
                    f"curve points must have strictly increasing x, got {x0} then {x1}"
                )
            if y1 < y0:
                raise ConfigError(
                    f"curve values must not decrease, got {y0} at {x0} then {y1} at {x1}; "
                    f"a step must not get faster as it gets bigger"
                )

    def __call__(self, x: float) -> float:
        points = self.points
        if len(points) == 1:
            return points[0][1]

        # The segment whose left end is the last point at or before x, with
        # the first and last segments extended beyond the ends.
        index = bisect.bisect_right([px for px, _ in points], x) - 1
        index = min(max(index, 0), len(points) - 2)
        (x0, y0), (x1, y1) = points[index], points[index + 1]
        return max(0.0, y0 + (x - x0) * (y1 - y0) / (x1 - x0))

    def scaled(self, factor: float) -> PiecewiseLinear:
        """Return this curve with every y multiplied by ``factor``."""
        _check_factor(factor)
        return PiecewiseLinear(tuple((x, y * factor) for x, y in self.points))


@dataclass(frozen=True)
class LatencyModel:
    """Durations of prefill and decode steps, in seconds.

    ``prefill`` maps the total prompt tokens of one prefill step to its
    duration. ``decode`` maps the batch size (running requests) to the
    duration of one decode step.
    """

    prefill: PiecewiseLinear
    decode: PiecewiseLinear

    @classmethod
    def linear(
        cls,
        *,
        prefill_base_s: float,
        prefill_s_per_token: float,
        decode_base_s: float,
        decode_s_per_request: float,
    ) -> LatencyModel:
        """Build a model with straight lines: ``base + slope * x`` for both steps.

        >>> model = LatencyModel.linear(prefill_base_s=0.5, prefill_s_per_token=0.25,
        ...     decode_base_s=1.0, decode_s_per_request=0.5)
        >>> model.prefill_s(4), model.decode_step_s(2)
        (1.5, 2.0)
        """
        for name, value in (
            ("prefill_base_s", prefill_base_s),
            ("prefill_s_per_token", prefill_s_per_token),
            ("decode_base_s", decode_base_s),
            ("decode_s_per_request", decode_s_per_request),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
        return cls(
            prefill=_line(prefill_base_s, prefill_s_per_token),
            decode=_line(decode_base_s, decode_s_per_request),
        )

    @classmethod
    def from_tables(
        cls,
        prefill_points: Sequence[tuple[float, float]],
        decode_points: Sequence[tuple[float, float]],
    ) -> LatencyModel:
        """Build a model from ``(tokens, seconds)`` and ``(batch size, seconds)`` points."""
        return cls(
            prefill=PiecewiseLinear(tuple(prefill_points)),
            decode=PiecewiseLinear(tuple(decode_points)),
        )

    def __post_init__(self) -> None:
        # A decode step of zero length would let a request finish without
        # simulated time passing, and the event loop would never advance.
        if self.decode(1) <= 0:
            raise ConfigError("a decode step of one request must take more than 0 seconds")

    def prefill_s(self, prompt_tokens: int) -> float:
        """Return the duration of a prefill step over ``prompt_tokens`` tokens in total."""
        if prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must be >= 0, got {prompt_tokens}")
        return self.prefill(prompt_tokens)

    def decode_step_s(self, batch_size: int) -> float:
        """Return the duration of one decode step with ``batch_size`` running requests."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return self.decode(batch_size)

    def scaled(self, factor: float) -> LatencyModel:
        """Return this model with every duration multiplied by ``factor``."""
        return LatencyModel(prefill=self.prefill.scaled(factor), decode=self.decode.scaled(factor))


def _line(intercept: float, slope: float) -> PiecewiseLinear:
    return PiecewiseLinear(((0.0, intercept), (1.0, intercept + slope)))


def _check_factor(factor: float) -> None:
    if not (math.isfinite(factor) and factor > 0):
        raise ConfigError(f"a scale factor must be a finite number > 0, got {factor}")


# The calibrated defaults: an estimate of an 8B model on one H100-80GB GPU.
# :func:`dyntaskmas.sim.calibration.calibrate` recomputes both tables from
# the Splitwise measurements of Llama2-70B on H100-80GB with tensor
# parallelism 4 and scales them by (8 / 70) * 4 = 0.457; a test checks that
# these rounded constants match the recomputation.
# NOTE: one factor also scales fixed per-step costs, such as the 4-GPU
# run's communication, so a real 8B server may decode small batches faster
# than these tables say. Pass your own LatencyModel to model such a server.

#: Prefill step duration by total prompt tokens in the step, in seconds.
DEFAULT_PREFILL_POINTS: tuple[tuple[float, float], ...] = (
    (128.0, 0.0223493),
    (256.0, 0.0248279),
    (512.0, 0.0279052),
    (1024.0, 0.0479909),
    (2048.0, 0.0909921),
    (4096.0, 0.207648),
    (8192.0, 0.417257),
    (16384.0, 0.789886),
    (32768.0, 1.61478),
)

#: Decode step duration by batch size, in seconds.
DEFAULT_DECODE_POINTS: tuple[tuple[float, float], ...] = (
    (1.0, 0.0134294),
    (2.0, 0.0137107),
    (4.0, 0.0137107),
    (8.0, 0.0143605),
    (16.0, 0.0150109),
    (32.0, 0.0168768),
    (64.0, 0.0237653),
)

DEFAULT_LATENCY = LatencyModel.from_tables(DEFAULT_PREFILL_POINTS, DEFAULT_DECODE_POINTS)
