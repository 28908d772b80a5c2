"""The latency model: piecewise-linear curves, straight lines and the defaults."""

from __future__ import annotations

import pytest

from dyntaskmas.errors import ConfigError
from dyntaskmas.sim.latency import (
    DEFAULT_DECODE_POINTS,
    DEFAULT_LATENCY,
    DEFAULT_PREFILL_POINTS,
    LatencyModel,
    PiecewiseLinear,
)


def test_curve_interpolates_between_points() -> None:
    curve = PiecewiseLinear(((1.0, 2.0), (3.0, 4.0), (7.0, 12.0)))

    assert curve(1) == 2.0
    assert curve(2) == 3.0
    assert curve(5) == 8.0


def test_curve_extends_end_segments() -> None:
    curve = PiecewiseLinear(((2.0, 4.0), (4.0, 5.0), (6.0, 9.0)))

    # Below the first point the first segment's slope (0.5) continues;
    # above the last, the last segment's slope (2).
    assert curve(0) == 3.0
    assert curve(8) == 13.0


def test_curve_never_goes_below_zero() -> None:
    curve = PiecewiseLinear(((10.0, 1.0), (20.0, 3.0)))

    assert curve(0) == 0.0


def test_single_point_curve_is_constant() -> None:
    curve = PiecewiseLinear(((5.0, 0.25),))

    assert curve(0) == 0.25
    assert curve(100) == 0.25


@pytest.mark.parametrize(
    "points",
    [
        (),
        ((1.0, 1.0), (1.0, 2.0)),
        ((2.0, 1.0), (1.0, 2.0)),
        ((1.0, 2.0), (2.0, 1.0)),
        ((1.0, -1.0),),
        ((float("nan"), 1.0),),
    ],
)
def test_curve_rejects_invalid_points(points: tuple[tuple[float, float], ...]) -> None:
    with pytest.raises(ConfigError):
        PiecewiseLinear(points)


def test_linear_model_is_base_plus_slope() -> None:
    model = LatencyModel.linear(
        prefill_base_s=0.5, prefill_s_per_token=0.25, decode_base_s=1.0, decode_s_per_request=0.5
    )

    assert model.prefill_s(0) == 0.5
    assert model.prefill_s(8) == 2.5
    assert model.decode_step_s(1) == 1.5
    assert model.decode_step_s(32) == 17.0


def test_linear_model_rejects_negative_parameters() -> None:
    with pytest.raises(ConfigError, match="decode_s_per_request"):
        LatencyModel.linear(
            prefill_base_s=0.0,
            prefill_s_per_token=0.0,
            decode_base_s=1.0,
            decode_s_per_request=-0.5,
        )


def test_model_rejects_free_decode_steps() -> None:
    with pytest.raises(ConfigError, match="more than 0 seconds"):
        LatencyModel.linear(
            prefill_base_s=0.0, prefill_s_per_token=0.0, decode_base_s=0.0, decode_s_per_request=0.0
        )


def test_decode_step_needs_a_request() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        DEFAULT_LATENCY.decode_step_s(0)


def test_scaled_model_multiplies_every_duration() -> None:
    model = LatencyModel.linear(
        prefill_base_s=0.5, prefill_s_per_token=0.25, decode_base_s=1.0, decode_s_per_request=0.5
    )

    halved = model.scaled(0.5)

    assert halved.prefill_s(8) == 1.25
    assert halved.decode_step_s(2) == 1.0


def test_default_tables_pass_through_their_points() -> None:
    for tokens, seconds in DEFAULT_PREFILL_POINTS:
        assert DEFAULT_LATENCY.prefill_s(int(tokens)) == seconds
    for batch, seconds in DEFAULT_DECODE_POINTS:
        assert DEFAULT_LATENCY.decode_step_s(int(batch)) == seconds


def test_default_decode_step_grows_with_batch() -> None:
    steps = [DEFAULT_LATENCY.decode_step_s(batch) for batch in range(1, 65)]

    assert steps == sorted(steps)
    assert steps[-1] > steps[0]
