"""AsyncHow plans: parsing, conversion to workloads, and the real file when present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dyntaskmas.bench.asynchow import ASYNC_FILE, parse_plan, plan_workload, read_plans
from dyntaskmas.bench.workloads import describe
from dyntaskmas.errors import ConfigError
from shared_paths import SHARED_DATA

ASYNCHOW = SHARED_DATA / "asynchow" / ASYNC_FILE

PLAN = {
    "id": "p1",
    "title": "How to test",
    "steps": {"1": "one", "2": "two", "3": "three"},
    "step_deps": [["2", "1"], ["2", "3"]],
    "durations_s": {"1": [100.0, 100.0], "2": [300.0, 300.0], "3": [200.0, 400.0]},
}


def test_plan_takes_low_durations() -> None:
    plan = parse_plan(PLAN)

    assert plan.durations_s == {"1": 100.0, "2": 300.0, "3": 200.0}
    assert plan.edges == (("2", "1"), ("2", "3"))


def test_plan_workload_orders_dependencies_first() -> None:
    workload = plan_workload(parse_plan(PLAN))

    assert [task.id for task in workload.tasks] == ["s2", "s1", "s3"]
    assert workload.tasks[1].depends_on == ("s2",)


def test_plan_workload_scales_mean_step() -> None:
    workload = plan_workload(parse_plan(PLAN), mean_step_s=10.0)

    assert describe(workload).total_work_s == pytest.approx(30.0)
    assert describe(workload).critical_path_s == pytest.approx(25.0)


def test_plan_without_duration_is_rejected() -> None:
    broken = {**PLAN, "durations_s": {"1": [1.0, 1.0]}}

    with pytest.raises(ConfigError, match="no duration for steps"):
        parse_plan(broken)


def test_plan_missing_field_names_fields() -> None:
    with pytest.raises(ConfigError, match="expected the fields id, title"):
        parse_plan({"id": "x"})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_plans(tmp_path / "absent.json")


def test_file_must_hold_list(tmp_path: Path) -> None:
    path = tmp_path / "plans.json"
    path.write_text(json.dumps({"plans": []}), encoding="utf-8")

    with pytest.raises(ConfigError, match="JSON list of plans"):
        read_plans(path)


@pytest.mark.skipif(not ASYNCHOW.is_file(), reason=f"AsyncHow data not found at {ASYNCHOW}")
def test_critical_paths_match_published_optimum() -> None:
    items = json.loads(ASYNCHOW.read_text(encoding="utf-8"))[:50]
    for item in items:
        plan = parse_plan(item)
        workload = plan_workload(plan, mean_step_s=1.0)
        factor = sum(plan.durations_s.values()) / len(plan.durations_s)

        critical_path = describe(workload).critical_path_s * factor

        assert critical_path == pytest.approx(item["optimal_time_s"][0], rel=1e-9)
