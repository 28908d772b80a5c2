"""The workflow optimiser's pure parts: granularity, overhead measurement, merges."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.engine.optimiser import (
    MERGED_FROM,
    OverheadEstimate,
    choose_granularity,
    merge_count,
    merge_tiny_siblings,
    merged_makespan,
    predicted_makespan,
    splits_gain,
)
from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.graph.delta import GraphDelta
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.graph.weights import TransferModel

COSTS = st.floats(min_value=0.0, max_value=200.0)
OVERHEADS = st.floats(min_value=0.0, max_value=10.0)


@given(
    cost=COSTS,
    overhead=OVERHEADS,
    plan=st.floats(min_value=0.0, max_value=20.0),
    transfer=st.floats(min_value=0.0, max_value=2.0),
    idle=st.integers(min_value=0, max_value=64),
    limit=st.integers(min_value=2, max_value=50),
)
def test_granularity_picks_the_least_predicted_split(
    cost: float, overhead: float, plan: float, transfer: float, idle: int, limit: int
) -> None:
    choice = choose_granularity(
        cost_s=cost,
        overhead_s=overhead,
        plan_s=plan,
        transfer_s=transfer,
        idle_agents=idle,
        max_subtasks=limit,
    )
    assert 2 <= choice.max_subtasks <= limit
    predicted = {
        n: predicted_makespan(
            n, cost_s=cost, overhead_s=overhead, plan_s=plan, transfer_s=transfer, agents=idle
        )
        for n in range(2, limit + 1)
    }
    assert choice.predicted_s == min(predicted.values())
    assert choice.max_subtasks == min(
        n for n, value in predicted.items() if value == min(predicted.values())
    )
    assert choice.decompose == splits_gain(choice.predicted_s, cost + overhead)


@given(cost=COSTS, overhead=OVERHEADS, plan=st.floats(min_value=0.0, max_value=20.0))
def test_one_idle_agent_never_gains_from_a_split(cost: float, overhead: float, plan: float) -> None:
    choice = choose_granularity(
        cost_s=cost, overhead_s=overhead, plan_s=plan, transfer_s=0.0, idle_agents=1, max_subtasks=8
    )
    assert not choice.decompose


def test_large_work_on_idle_agents_is_split_and_small_work_is_not() -> None:
    large = choose_granularity(
        cost_s=30.0, overhead_s=1.0, plan_s=2.0, transfer_s=0.1, idle_agents=4, max_subtasks=6
    )
    small = choose_granularity(
        cost_s=2.0, overhead_s=1.0, plan_s=2.0, transfer_s=0.1, idle_agents=4, max_subtasks=6
    )
    assert (large.decompose, large.max_subtasks) == (True, 4)
    assert math.isclose(large.predicted_s, 2.0 + 30.0 / 4 + 1.0 + 0.4)
    assert not small.decompose


@given(
    overhead=st.floats(min_value=0.0, max_value=5.0),
    per_token=st.floats(min_value=0.0001, max_value=0.05),
    tokens=st.lists(st.integers(min_value=1, max_value=500), min_size=3, max_size=20, unique=True),
)
def test_overhead_estimate_recovers_the_intercept(
    overhead: float, per_token: float, tokens: list[int]
) -> None:
    estimate = OverheadEstimate(default_s=99.0)
    for count in tokens:
        estimate.add(overhead + per_token * count, count)
    assert math.isclose(estimate.overhead_s, overhead, abs_tol=1e-6)


def test_overhead_estimate_uses_the_default_until_enough_samples() -> None:
    estimate = OverheadEstimate(default_s=0.7, min_samples=3)
    estimate.add(2.0, 10)
    estimate.add(3.0, 20)
    assert estimate.overhead_s == 0.7


# --- merges ------------------------------------------------------------------

ROLES = ("a", "b")


@st.composite
def sibling_graphs(draw: st.DrawFn) -> TaskGraph:
    """A graph of planned subtasks, many of them siblings, some already started or done."""
    count = draw(st.integers(min_value=1, max_value=12))
    specs = [TaskSpec(id="root", description="Root", cost_s=1.0)]
    for k in range(count):
        earlier = [s.id for s in specs]
        depends_on = tuple(sorted(draw(st.sets(st.sampled_from(earlier), max_size=2)))) or ("root",)
        specs.append(
            TaskSpec(
                id=f"t{k}",
                description=f"Do part {k}",
                role=draw(st.sampled_from(ROLES)),
                depends_on=depends_on,
                cost_s=draw(st.sampled_from([0.01, 0.1, 5.0])),
                output_tokens=draw(st.sampled_from([8, 64, 2000])),
                parent=draw(st.sampled_from(["p1", "p2"])),
                depth=1,
            )
        )
    graph = TaskGraph(transfer=TransferModel(prefill_s_per_token=0.0005))
    graph.apply(GraphDelta(add=tuple(specs)))
    # Run some ready tasks, so merges meet every state.
    for step in range(draw(st.integers(min_value=0, max_value=4))):
        ready = graph.ids_in_state("ready")
        if not ready:
            break
        task_id = draw(st.sampled_from(ready))
        graph.mark_running(task_id, agent="x", now=float(step))
        if draw(st.booleans()):
            graph.mark_done(task_id, "out", now=float(step))
    return graph


@given(
    count=st.integers(min_value=1, max_value=40),
    work=st.floats(min_value=0.0, max_value=30.0),
    overhead=OVERHEADS,
    agents=st.integers(min_value=0, max_value=64),
    max_merge=st.integers(min_value=2, max_value=8),
)
def test_merge_count_never_predicts_a_slower_run(
    count: int, work: float, overhead: float, agents: int, max_merge: int
) -> None:
    tasks = merge_count(count, work_s=work, overhead_s=overhead, agents=agents, max_merge=max_merge)

    assert math.ceil(count / max_merge) <= tasks <= count
    apart = merged_makespan(count, count, work_s=work, overhead_s=overhead, agents=agents)
    merged = merged_makespan(count, tasks, work_s=work, overhead_s=overhead, agents=agents)
    assert merged <= apart
    if tasks < count:
        assert splits_gain(merged, apart)
    # With an idle agent per sibling, merging only lengthens a task.
    if count <= max(1, agents) and work > 0:
        assert tasks == count


def test_merge_count_matches_worked_cases() -> None:
    """Twelve siblings of 2 s with h = 0.5 s, by idle agents."""
    cases = {1: 3, 2: 4, 8: 6, 12: 12, 32: 12}
    for agents, expected in cases.items():
        tasks = merge_count(12, work_s=2.0, overhead_s=0.5, agents=agents, max_merge=4)
        assert tasks == expected, agents


@settings(max_examples=150)
@given(
    graph=sibling_graphs(),
    overhead=st.sampled_from([0.0, 0.5, 2.0]),
    max_merge=st.integers(2, 4),
    agents=st.integers(1, 6),
    tiny_ratio=st.sampled_from([1.0, 4.0]),
)
def test_merges_keep_the_graph_valid_and_every_dependency(
    graph: TaskGraph, overhead: float, max_merge: int, agents: int, tiny_ratio: float
) -> None:
    before_preds = {t.id: graph.predecessors(t.id) for t in graph}
    before_succs = {t.id: graph.successors(t.id) for t in graph}
    before_states = {t.id: t.state for t in graph}
    active_before = sum(1 for t in graph if t.state not in ("failed", "cancelled"))

    delta = merge_tiny_siblings(
        graph, overhead_s=overhead, max_merge=max_merge, agents=agents, tiny_ratio=tiny_ratio
    )
    result = graph.apply(delta)  # raises if the delta breaks an invariant

    graph.topological_order()  # acyclic
    merged = [graph.task(task_id).spec for task_id in result.added]
    originals = [o for spec in merged for o in spec.meta[MERGED_FROM]]
    assert sorted(result.cancelled) == sorted(originals)
    assert len(originals) == len(set(originals))
    for spec in merged:
        group = spec.meta[MERGED_FROM]
        assert 2 <= len(group) <= max_merge
        for original in group:
            assert before_states[original] in ("pending", "ready")
            assert before_preds[original] == graph.predecessors(spec.id)
            assert before_succs[original] == graph.successors(spec.id)
            assert graph.successors(original) == frozenset()
            assert spec.role == graph.task(original).spec.role
    # Nothing active depends on a cancelled task; the active count fell by the merges.
    for task in graph:
        if task.state not in ("failed", "cancelled"):
            assert all(graph.task(p).state != "cancelled" for p in graph.predecessors(task.id))
    active_after = sum(1 for t in graph if t.state not in ("failed", "cancelled"))
    assert active_after == active_before - len(originals) + len(merged)
    # A second pass never merges a merged task again.
    again = merge_tiny_siblings(
        graph, overhead_s=overhead, max_merge=max_merge, agents=agents, tiny_ratio=tiny_ratio
    )
    assert not set(again.cancel) & set(result.added)


def test_tiny_siblings_merge_and_large_ones_stay() -> None:
    """tiny1, tiny2 and big share root and end; the tiny ones merge.

    root --> tiny1, tiny2, big --> end
    """
    graph = TaskGraph(transfer=TransferModel(prefill_s_per_token=0.001))
    graph.apply(
        GraphDelta(
            add=(
                TaskSpec(id="root", description="Root"),
                *(
                    TaskSpec(
                        id=name,
                        description=f"Do {name}",
                        depends_on=("root",),
                        cost_s=cost,
                        output_tokens=100,
                        parent="p",
                    )
                    for name, cost in (("tiny1", 0.05), ("tiny2", 0.05), ("big", 20.0))
                ),
                TaskSpec(id="end", description="End", depends_on=("tiny1", "tiny2", "big")),
            )
        )
    )
    delta = merge_tiny_siblings(graph, overhead_s=0.5, max_merge=4)
    graph.apply(delta)

    assert [spec.id for spec in delta.add] == ["tiny1.m"]
    assert graph.predecessors("end") == {"tiny1.m", "big"}
    assert "(1) Do tiny1 (2) Do tiny2" in graph.task("tiny1.m").spec.description
    assert graph.task("tiny1").state == "cancelled"


def test_merges_match_idle_agents() -> None:
    """Four tiny siblings of root on two idle agents become two tasks of two.

    root --> t1, t2, t3, t4 --> end
    """
    siblings = [
        TaskSpec(id=f"t{k}", description=f"Do t{k}", depends_on=("root",), cost_s=1.0, parent="p")
        for k in range(1, 5)
    ]
    graph = TaskGraph()
    graph.apply(
        GraphDelta(
            add=(
                TaskSpec(id="root", description="Root"),
                *siblings,
                TaskSpec(id="end", description="End", depends_on=tuple(s.id for s in siblings)),
            )
        )
    )
    delta = merge_tiny_siblings(graph, overhead_s=0.5, max_merge=4, agents=2, tiny_ratio=4.0)

    assert [spec.meta[MERGED_FROM] for spec in delta.add] == [("t1", "t2"), ("t3", "t4")]
    assert merge_tiny_siblings(graph, overhead_s=0.5, max_merge=4, agents=4, tiny_ratio=4.0).empty


def test_neighbouring_groups_merge_only_once() -> None:
    """Both pairs are tiny siblings, but b1 and b2 depend on a1 and a2; only the a pair merges.

    root --> a1, a2 --> b1, b2 --> end
    """
    graph = TaskGraph()
    graph.apply(
        GraphDelta(
            add=(
                TaskSpec(id="root", description="Root"),
                *(
                    TaskSpec(id=a, description=f"Do {a}", depends_on=("root",), parent="p")
                    for a in ("a1", "a2")
                ),
                *(
                    TaskSpec(id=b, description=f"Do {b}", depends_on=("a1", "a2"), parent="p")
                    for b in ("b1", "b2")
                ),
                TaskSpec(id="end", description="End", depends_on=("b1", "b2")),
            )
        )
    )
    delta = merge_tiny_siblings(graph, overhead_s=0.5, max_merge=4, agents=1, tiny_ratio=4.0)
    result = graph.apply(delta)

    assert [spec.id for spec in delta.add] == ["a1.m"]
    assert sorted(result.cancelled) == ["a1", "a2"]
    assert graph.predecessors("b1") == {"a1.m"}
    assert graph.task("b2").state == "pending"


def test_optimiser_config_rejects_bad_values() -> None:
    from dyntaskmas.engine.optimiser import OptimiserConfig

    with pytest.raises(ValueError, match="max_merge must be >= 2"):
        OptimiserConfig(max_merge=1)
    with pytest.raises(ValueError, match="tiny_ratio must be >= 0"):
        OptimiserConfig(tiny_ratio=-1.0)
