"""The optimiser experiment: planned runs with the workflow optimiser off and on."""

from __future__ import annotations

from pathlib import Path

import pytest

from dyntaskmas.bench.experiments import QUICK, run_experiment
from dyntaskmas.bench.granularity import planned_workloads, run_planned
from dyntaskmas.bench.plots import plot_result


def test_optimiser_rows_cover_workloads_and_policies() -> None:
    result = run_experiment("optimiser", data_dir=None, sizes=QUICK)

    assert len(result.rows) == 3 * len(QUICK.optimiser_agents) * 2
    assert set(result.rows[0]) == set(result.columns)
    assert {row["workload"] for row in result.rows} == {
        "tiny_siblings",
        "large_subtasks",
        "nested",
    }
    assert {row["policy"] for row in result.rows} == {"off", "on"}
    off_rows = [row for row in result.rows if row["policy"] == "off"]
    assert all(row["merged"] == row["skipped_decompositions"] == 0 for row in off_rows)


def test_optimiser_is_never_slower_than_off() -> None:
    result = run_experiment("optimiser", data_dir=None, sizes=QUICK)

    makespans = {
        (row["workload"], row["agents"], row["policy"]): row["makespan_s"] for row in result.rows
    }
    for (workload, agents, policy), makespan in makespans.items():
        if policy == "on":
            assert makespan <= makespans[(workload, agents, "off")], (workload, agents)


def test_tiny_merges_shorten_two_agent_run() -> None:
    tiny = next(w for w in planned_workloads() if w.name == "tiny_siblings")

    off = run_planned(tiny, agents=2, optimise=False)
    on = run_planned(tiny, agents=2, optimise=True)

    assert on.makespan_s < off.makespan_s
    assert on.merged == 12
    assert on.llm_calls < off.llm_calls
    assert off.llm_calls == 14  # the plan, 12 subtasks and the answer


def test_nested_plans_skipped_on_two_agents() -> None:
    nested = next(w for w in planned_workloads() if w.name == "nested")

    off = run_planned(nested, agents=2, optimise=False)
    on = run_planned(nested, agents=2, optimise=True)

    assert on.skipped_decompositions == 4
    assert on.makespan_s < off.makespan_s


def test_runs_are_repeatable() -> None:
    tiny = planned_workloads()[0]

    first = run_planned(tiny, agents=8, optimise=True)
    second = run_planned(tiny, agents=8, optimise=True)

    assert first == second


def test_optimiser_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = run_experiment("optimiser", data_dir=None, sizes=QUICK)
    path = tmp_path / "optimiser.png"

    plot_result(result, path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
