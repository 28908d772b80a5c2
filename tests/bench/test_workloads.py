"""Workload shapes: the trip requests, random graphs and no-op graphs."""

from __future__ import annotations

import pytest

from dyntaskmas.bench.workloads import (
    COMPLEXITIES,
    BenchTask,
    Workload,
    describe,
    estimate_cost_s,
    layered_dag,
    noop_graph,
    scaled_durations,
    to_specs,
    travel_batch,
    travel_request,
)
from dyntaskmas.sim.latency import LatencyModel

FLAT = LatencyModel.linear(
    prefill_base_s=0.5, prefill_s_per_token=0.0, decode_base_s=0.25, decode_s_per_request=0.0
)


@pytest.mark.parametrize(
    ("complexity", "tasks", "width"), [("simple", 11, 5), ("medium", 18, 9), ("complex", 25, 13)]
)
def test_travel_request_shape(complexity: str, tasks: int, width: int) -> None:
    shape = describe(travel_request(complexity))  # type: ignore[arg-type]

    assert shape.tasks == tasks
    assert shape.width == width
    assert shape.depth == 4


def test_travel_request_lists_dependencies_first() -> None:
    for complexity in COMPLEXITIES:
        seen: set[str] = set()
        for task in travel_request(complexity).tasks:
            assert set(task.depends_on) <= seen
            seen.add(task.id)


def test_travel_prompt_includes_predecessor_outputs() -> None:
    tasks = {task.id: task for task in travel_request("simple").tasks}
    plan = tasks["plan"]

    inputs = sum(tasks[d].output_tokens for d in plan.depends_on)

    assert plan.prompt_tokens == 150 + inputs
    assert plan.output_tokens == 300


def test_travel_days_take_their_legs() -> None:
    tasks = {task.id: task for task in travel_request("medium").tasks}

    assert "leg1.transport" in tasks["day1"].depends_on
    assert "leg2.transport" in tasks["day4"].depends_on
    assert "leg3.transport" in tasks["day5"].depends_on
    assert not any(d.startswith("leg") for d in tasks["day2"].depends_on)


def test_travel_request_rejects_unknown_complexity() -> None:
    with pytest.raises(ValueError, match="complexity must be one of"):
        travel_request("huge")  # type: ignore[arg-type]


def test_travel_batch_prefixes_ids() -> None:
    batch = travel_batch(3)

    assert len(batch.tasks) == 11 + 18 + 25
    assert batch.tasks[0].id.startswith("r0.")
    assert len({task.id for task in batch.tasks}) == len(batch.tasks)


def test_layered_dag_is_seeded() -> None:
    first = layered_dag(layers=3, width=5, seed=1)
    again = layered_dag(layers=3, width=5, seed=1)
    other = layered_dag(layers=3, width=5, seed=2)

    assert first == again
    assert first != other
    assert describe(first).width == 5
    assert describe(first).depth == 3


def test_noop_graph_has_zero_costs() -> None:
    shape = describe(noop_graph(250, width=100))

    assert shape.tasks == 250
    assert shape.depth == 3
    assert shape.total_work_s == 0.0


def test_cost_estimate_is_prefill_plus_decodes() -> None:
    task = BenchTask("a", "A", "worker", prompt_tokens=100, output_tokens=5)

    assert estimate_cost_s(task, FLAT) == 0.5 + 4 * 0.25


def test_specs_carry_estimates() -> None:
    workload = Workload("w", (BenchTask("a", "A", "worker", duration_s=3.0),))

    spec = to_specs(workload)[0]

    assert spec.cost_s == 3.0
    assert spec.output_tokens == 0


def test_scaled_durations_hit_mean() -> None:
    workload = Workload(
        "w",
        (
            BenchTask("a", "A", "worker", duration_s=100.0),
            BenchTask("b", "B", "worker", ("a",), duration_s=300.0),
        ),
    )

    scaled = scaled_durations(workload, 10.0)

    assert [t.duration_s for t in scaled.tasks] == [5.0, 15.0]
    assert scaled.tasks[1].depends_on == ("a",)
