"""Whole runs of workloads under each policy, on the virtual clock."""

from __future__ import annotations

import pytest

from dyntaskmas.bench.harness import POLICIES, RunSettings, engine_config, run_workload
from dyntaskmas.bench.metrics import makespan_lower_bound
from dyntaskmas.bench.workloads import (
    WORKER_ROLES,
    BenchTask,
    Workload,
    describe,
    layered_dag,
    travel_request,
)
from dyntaskmas.sim.latency import LatencyModel

FLAT = LatencyModel.linear(
    prefill_base_s=0.5, prefill_s_per_token=0.0, decode_base_s=0.25, decode_s_per_request=0.0
)


def durations(*tasks: tuple[str, float, tuple[str, ...]]) -> Workload:
    return Workload(
        "durations",
        tuple(BenchTask(i, f"Step {i}", "worker", deps, duration_s=d) for i, d, deps in tasks),
    )


def test_duration_tasks_take_their_durations() -> None:
    """a (3 s) and b (1 s) in parallel, then c (2 s): 5 s on two agents."""
    workload = durations(("a", 3.0, ()), ("b", 1.0, ()), ("c", 2.0, ("a", "b")))

    result = run_workload(workload, "critical_path", RunSettings(agents=2, layout="per_agent"))

    assert result.makespan_s == 5.0
    assert result.tasks == 3
    assert result.agents == 2


def test_sequential_uses_one_agent() -> None:
    workload = durations(("a", 3.0, ()), ("b", 1.0, ()))

    result = run_workload(workload, "sequential", RunSettings(agents=4, layout="per_agent"))

    assert result.agents == 1
    assert result.makespan_s == 4.0


def test_one_agent_matches_cost_estimates() -> None:
    """Alone on the server, each task takes exactly its estimated cost."""
    workload = travel_request("simple")

    result = run_workload(workload, "sequential", RunSettings(agents=1, latency=FLAT))

    assert result.makespan_s == pytest.approx(describe(workload, FLAT).total_work_s)


def test_shared_server_reports_utilisation() -> None:
    workload = layered_dag(layers=2, width=8, seed=3)

    result = run_workload(workload, "critical_path", RunSettings(agents=8, slots=8))

    assert 0.5 < result.utilisation <= 1.0
    assert 0.0 < result.saturated_utilisation <= 1.0
    assert 0.0 < result.saturated_share <= 1.0


def test_per_agent_layout_has_no_utilisation() -> None:
    workload = layered_dag(layers=2, width=4, seed=3)

    result = run_workload(workload, "fifo", RunSettings(agents=2, layout="per_agent"))

    assert result.utilisation == 0.0


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_never_beats_lower_bound(policy: str) -> None:
    workload = durations(
        ("a", 4.0, ()), ("b", 1.0, ()), ("c", 2.0, ("a",)), ("d", 3.0, ("b",)), ("e", 1.0, ())
    )
    shape = describe(workload)

    result = run_workload(workload, policy, RunSettings(agents=2, layout="per_agent"))  # type: ignore[arg-type]

    assert result.makespan_s >= makespan_lower_bound(shape.critical_path_s, shape.total_work_s, 2)


def test_policy_settings_change_one_thing() -> None:
    assert engine_config("level_sync", WORKER_ROLES).level_sync
    assert engine_config("fifo", WORKER_ROLES).priority == "fifo"
    assert engine_config("paper_summary", WORKER_ROLES).priority == "paper_summary"
    assert engine_config("critical_path_seconds", WORKER_ROLES).weighting == "seconds"
    assert engine_config("critical_path", WORKER_ROLES).weighting == "normalized"


def test_settings_reject_zero_agents() -> None:
    with pytest.raises(ValueError, match="agents must be >= 1"):
        RunSettings(agents=0)
