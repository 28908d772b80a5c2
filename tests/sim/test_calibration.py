"""Calibration from SplitwiseSim's measurements, against the shipped defaults.

The tests that read ``perf_model.csv`` skip when the shared data is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dyntaskmas.errors import ConfigError
from dyntaskmas.sim.calibration import (
    PerfRow,
    calibrate,
    calibrate_from_splitwise,
    read_perf_model,
)
from dyntaskmas.sim.latency import DEFAULT_DECODE_POINTS, DEFAULT_PREFILL_POINTS
from shared_paths import SHARED_DATA

PERF_MODEL = SHARED_DATA / "splitwise_perf_model" / "perf_model.csv"

needs_perf_model = pytest.mark.skipif(
    not PERF_MODEL.is_file(), reason=f"SplitwiseSim data not found at {PERF_MODEL}"
)


def row(prompt_size: int, batch_size: int, prompt_ms: float, token_ms: float) -> PerfRow:
    return PerfRow(
        model="m",
        hardware="gpu",
        tensor_parallel=2,
        prompt_size=prompt_size,
        batch_size=batch_size,
        prompt_time_ms=prompt_ms,
        token_time_ms=token_ms,
    )


def test_calibrate_averages_and_scales_rows() -> None:
    rows = [
        row(512, 1, 100.0, 20.0),
        row(512, 1, 300.0, 40.0),
        row(512, 2, 400.0, 50.0),
        row(2048, 1, 1000.0, 99.0),
    ]

    # Scale: (4 / 8) * (2 / 1) = 1, so means stay as they are, in seconds.
    result = calibrate(
        rows,
        model="m",
        hardware="gpu",
        tensor_parallel=2,
        source_params_b=8.0,
        target_params_b=4.0,
    )

    assert result.scale_factor == 1.0
    assert result.rows_used == 4
    # Prefill by total tokens: 512 -> mean(100, 300); 1024 (2 x 512) -> 400.
    assert result.latency.prefill.points == ((512.0, 0.2), (1024.0, 0.4), (2048.0, 1.0))
    # Decode only from the batch sweep at 512 prompt tokens.
    assert result.latency.decode.points == ((1.0, 0.03), (2.0, 0.05))


def test_calibrate_keeps_decode_times_non_decreasing() -> None:
    rows = [row(512, 1, 10.0, 30.0), row(512, 2, 20.0, 29.0), row(512, 4, 40.0, 35.0)]

    result = calibrate(rows, model="m", hardware="gpu", tensor_parallel=2, target_params_b=35.0)

    # Scale (35 / 70) * 2 = 1; the batch-2 mean is raised to the batch-1 mean.
    assert result.latency.decode.points == ((1.0, 0.03), (2.0, 0.03), (4.0, 0.035))


def test_calibrate_rejects_missing_configuration() -> None:
    with pytest.raises(ConfigError, match="no rows"):
        calibrate([row(512, 1, 1.0, 1.0)], model="other")


def test_read_perf_model_names_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "perf_model.csv"

    with pytest.raises(ConfigError, match="does not exist"):
        read_perf_model(missing)


def test_read_perf_model_names_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "perf_model.csv"
    path.write_text(
        "model,hardware,prompt_size,batch_size,prompt_time,token_time,tensor_parallel\n"
        "m,gpu,512,1,10.0,2.0,2\n"
        "m,gpu,many,1,10.0,2.0,2\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError, match="line 3"):
        read_perf_model(path)


@needs_perf_model
def test_defaults_match_recomputed_calibration() -> None:
    result = calibrate_from_splitwise(PERF_MODEL)

    assert result.rows_used == 105
    assert result.scale_factor == pytest.approx(8 / 70 * 4)
    assert len(result.latency.prefill.points) == len(DEFAULT_PREFILL_POINTS)
    for (x, y), (default_x, default_y) in zip(
        result.latency.prefill.points, DEFAULT_PREFILL_POINTS, strict=True
    ):
        assert x == default_x
        assert y == pytest.approx(default_y, rel=1e-5)
    for (x, y), (default_x, default_y) in zip(
        result.latency.decode.points, DEFAULT_DECODE_POINTS, strict=True
    ):
        assert x == default_x
        assert y == pytest.approx(default_y, rel=1e-5)


@needs_perf_model
def test_calibration_reports_linear_prefill_rate() -> None:
    result = calibrate_from_splitwise(PERF_MODEL)

    # About 20,000 prompt tokens per second for the scaled 8B model.
    assert 1 / result.prefill_s_per_token == pytest.approx(20_000, rel=0.05)
