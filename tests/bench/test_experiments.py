"""The experiments' plumbing at quick sizes: rows, columns and JSON shape."""

from __future__ import annotations

import json

import pytest

from dyntaskmas.bench.asynchow import ASYNC_FILE
from dyntaskmas.bench.experiments import (
    EXPERIMENTS,
    QUICK,
    experiment_names,
    run_experiment,
)
from dyntaskmas.bench.harness import POLICIES
from shared_paths import SHARED_DATA

HAS_ASYNCHOW = (SHARED_DATA / "asynchow" / ASYNC_FILE).is_file()


def test_baseline_rows_cover_policies() -> None:
    result = run_experiment("baseline", data_dir=None, sizes=QUICK)

    assert len(result.rows) == 3 * len(POLICIES)
    assert set(result.rows[0]) == set(result.columns)
    sequential = [row for row in result.rows if row["policy"] == "sequential"]
    assert all(row["reduction_vs_sequential"] == 0.0 for row in sequential)
    assert all(row["reduction_vs_sequential"] > 0 for row in result.rows if row["agents"] > 1)


def test_scaling_efficiency_starts_at_one() -> None:
    result = run_experiment("scaling", data_dir=None, sizes=QUICK)

    first = [row for row in result.rows if row["agents"] == 1]
    assert len(result.rows) == 2 * len(QUICK.scaling_agents)
    assert [row["efficiency"] for row in first] == [1.0, 1.0]
    assert {row["server"] for row in result.rows} == {"one per agent", "shared"}


def test_utilisation_rows_are_fractions() -> None:
    result = run_experiment("utilisation", data_dir=None, sizes=QUICK)

    assert len(result.rows) == 2 * len(POLICIES)
    assert all(0.0 <= row["utilisation"] <= 1.0 for row in result.rows)
    assert all(0.0 <= row["utilisation_when_saturated"] <= 1.0 for row in result.rows)


def test_overhead_rows_per_size() -> None:
    result = run_experiment("overhead", data_dir=None, sizes=QUICK)

    assert [row["tasks"] for row in result.rows] == list(QUICK.overhead_tasks)
    assert all(row["cpu_us_per_task"] > 0 for row in result.rows)


def test_adaptive_rows_and_series() -> None:
    result = run_experiment("adaptive", data_dir=None, sizes=QUICK)

    hidden = [row for row in result.rows if row["server"] == "hidden capacity"]
    names = [row["policy"] for row in hidden]
    assert names == ["fixed 4", "fixed 32", "auto from 4"]
    assert result.columns == (
        "server",
        "policy",
        "throughput_tasks_per_s",
        "rate_429",
        "p95_latency_s",
    )
    random_rows = [row for row in result.rows if row["server"] != "hidden capacity"]
    assert [row["policy"] for row in random_rows] == names
    assert all(row["rate_429"] > 0.05 for row in random_rows)
    rows = {row["policy"]: row for row in hidden}
    # Latency doubles past 24 in flight, so 32 in flight are slower than the allocator.
    assert rows["fixed 32"]["p95_latency_s"] > rows["auto from 4"]["p95_latency_s"]
    assert rows["auto from 4"]["throughput_tasks_per_s"] > rows["fixed 4"]["throughput_tasks_per_s"]
    buckets = QUICK.adaptive_duration_s / 5.0
    assert len(result.series) == len(names) * buckets
    assert json.loads(json.dumps(result.to_json()))["series"][0]["policy"] == "fixed 4"


@pytest.mark.skipif(not HAS_ASYNCHOW, reason=f"AsyncHow data not found under {SHARED_DATA}")
def test_asynchow_ratios_at_least_one() -> None:
    result = run_experiment("asynchow", data_dir=SHARED_DATA, sizes=QUICK)

    assert len(result.rows) == 4 * 5
    assert all(row["mean_ratio"] >= 1.0 - 1e-9 for row in result.rows)
    assert all(row["plans"] == QUICK.asynchow_plans for row in result.rows)


def test_asynchow_needs_data_dir() -> None:
    with pytest.raises(ValueError, match="needs the data directory"):
        run_experiment("asynchow", data_dir=None, sizes=QUICK)


def test_unknown_experiment_is_rejected() -> None:
    with pytest.raises(ValueError, match="is unknown"):
        run_experiment("speed", data_dir=None, sizes=QUICK)


def test_json_has_experiment_and_rows() -> None:
    result = run_experiment("baseline", data_dir=None, sizes=QUICK)

    decoded = json.loads(json.dumps(result.to_json()))

    assert decoded["experiment"] == "baseline"
    assert decoded["rows"][0]["complexity"] == "simple"
    assert "travel-complex" in decoded["shapes"]


def test_all_names_every_experiment() -> None:
    assert experiment_names("all") == EXPERIMENTS
    assert experiment_names("scaling") == ("scaling",)
