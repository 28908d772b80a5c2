"""Example tests of TaskGraph: validation, state transitions, failures, priorities."""

from __future__ import annotations

import pytest

from dyntaskmas.errors import (
    CycleError,
    DuplicateTaskError,
    EmptyDescriptionError,
    GraphError,
    UnknownDependencyError,
    UnknownTaskError,
)
from dyntaskmas.graph import TaskGraph, TaskSpec, TransferModel

NO_TRANSFER = TransferModel(prefill_s_per_token=0.0)


def spec(task_id: str, *depends_on: str, cost_s: float = 1.0, tokens: int = 100) -> TaskSpec:
    return TaskSpec(
        id=task_id,
        description=f"do {task_id}",
        depends_on=depends_on,
        cost_s=cost_s,
        output_tokens=tokens,
    )


def run(graph: TaskGraph, task_id: str, now: float = 1.0) -> list[str]:
    """Start and finish a ready task; return the tasks that became ready."""
    graph.mark_running(task_id, agent="agent", now=now)
    return graph.mark_done(task_id, f"output of {task_id}", now=now + 1.0)


# --- validation -------------------------------------------------------------------


def test_cycle_rejected_with_its_ids() -> None:
    with pytest.raises(CycleError) as caught:
        TaskGraph.from_specs([spec("a", "c"), spec("b", "a"), spec("c", "b"), spec("d")])

    assert set(caught.value.cycle) == {"a", "b", "c"}
    for task_id in ("a", "b", "c"):
        assert task_id in str(caught.value)
    assert "d" not in caught.value.cycle


def test_dependent_listed_first_is_accepted() -> None:
    graph = TaskGraph.from_specs([spec("c", "b"), spec("b", "a"), spec("a")])

    assert graph.predecessors("c") == {"b"}
    assert graph.ids_in_state("ready") == ["a"]


def test_self_dependency_is_cycle() -> None:
    with pytest.raises(CycleError) as caught:
        TaskGraph.from_specs([spec("a", "a")])

    assert caught.value.cycle == ("a",)
    assert "a -> a" in str(caught.value)


def test_unknown_dependency_rejected() -> None:
    with pytest.raises(UnknownDependencyError) as caught:
        TaskGraph.from_specs([spec("summarize", "fetch")])

    assert caught.value.task_id == "summarize"
    assert caught.value.dependency == "fetch"
    assert "'summarize'" in str(caught.value)
    assert "'fetch'" in str(caught.value)


def test_duplicate_id_in_specs_rejected() -> None:
    with pytest.raises(DuplicateTaskError) as caught:
        TaskGraph.from_specs([spec("a"), spec("b"), spec("a", "b")])

    assert caught.value.task_id == "a"
    assert "'a'" in str(caught.value)


def test_empty_description_rejected() -> None:
    blank = TaskSpec(id="blank", description="  \t")

    with pytest.raises(EmptyDescriptionError) as caught:
        TaskGraph.from_specs([spec("a"), blank])

    assert caught.value.task_id == "blank"
    assert "'blank'" in str(caught.value)


def test_empty_id_rejected_as_empty() -> None:
    nameless = TaskSpec(id="", description="fetch the page")

    with pytest.raises(GraphError) as caught:
        TaskGraph.from_specs([nameless])

    assert not isinstance(caught.value, DuplicateTaskError)
    assert "empty id" in str(caught.value)
    assert "fetch the page" in str(caught.value)


def test_non_finite_cost_rejected() -> None:
    for cost_s in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="cost_s"):
            spec("a", cost_s=cost_s)


def test_negative_tolerance_rejected() -> None:
    for tolerance in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="renormalize_tolerance"):
            TaskGraph(renormalize_tolerance=tolerance)


def test_unknown_task_query_raises() -> None:
    graph = TaskGraph.from_specs([spec("a")])

    with pytest.raises(UnknownTaskError) as caught:
        graph.descendants("missing")

    assert caught.value.task_id == "missing"
    with pytest.raises(UnknownTaskError):
        graph.priority("missing")
    with pytest.raises(UnknownTaskError):
        graph.predecessors("missing")


# --- state transitions ------------------------------------------------------------


def test_sources_ready_after_build() -> None:
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a"), spec("c")])

    assert graph.ids_in_state("ready") == ["a", "c"]
    assert graph.ids_in_state("pending") == ["b"]


def test_mark_running_records_agent_and_time() -> None:
    graph = TaskGraph.from_specs([spec("a")])

    graph.mark_running("a", agent="writer-1", now=3.0)

    task = graph.task("a")
    assert task.state == "running"
    assert task.agent == "writer-1"
    assert task.started_at == 3.0


def test_mark_done_readies_dependents_once_all_done() -> None:
    """a and b both feed c:

    a --> c
    b --/
    """
    graph = TaskGraph.from_specs([spec("a"), spec("b"), spec("c", "a", "b")])

    after_a = run(graph, "a")
    after_b = run(graph, "b")

    assert after_a == []
    assert after_b == ["c"]
    assert graph.task("c").state == "ready"
    assert graph.task("a").output == "output of a"
    assert graph.task("a").finished_at == 2.0


def test_mark_running_rejects_pending_task() -> None:
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a")])

    with pytest.raises(GraphError, match="'b' is pending, expected ready"):
        graph.mark_running("b", agent="agent", now=0.0)

    assert graph.task("b").state == "pending"


def test_mark_done_rejects_ready_task() -> None:
    graph = TaskGraph.from_specs([spec("a")])

    with pytest.raises(GraphError, match="'a' is ready, expected running"):
        graph.mark_done("a", "too early", now=0.0)

    assert graph.task("a").output is None


def test_mark_failed_rejects_done_task() -> None:
    graph = TaskGraph.from_specs([spec("a")])
    run(graph, "a")

    with pytest.raises(GraphError, match="'a' is done"):
        graph.mark_failed("a", "late failure", now=5.0)

    assert graph.task("a").state == "done"


def test_failure_cancels_only_descendants() -> None:
    """fetch fails; its branch is cancelled, the other branch goes on:

    fetch --> parse --> summarize
    lookup --> answer
    """
    graph = TaskGraph.from_specs(
        [
            spec("fetch"),
            spec("parse", "fetch"),
            spec("summarize", "parse"),
            spec("lookup"),
            spec("answer", "lookup"),
        ]
    )
    graph.mark_running("fetch", agent="agent", now=1.0)

    cancelled = graph.mark_failed("fetch", "HTTP 500", now=2.0)

    assert cancelled == ["parse", "summarize"]
    assert graph.task("fetch").state == "failed"
    assert graph.task("fetch").error == "HTTP 500"
    for task_id in cancelled:
        assert graph.task(task_id).state == "cancelled"
        assert "'fetch'" in (graph.task(task_id).error or "")
        assert graph.task(task_id).finished_at == 2.0
    assert graph.task("lookup").state == "ready"
    assert graph.task("answer").state == "pending"
    assert run(graph, "lookup") == ["answer"]


def test_failure_cancels_despite_done_branch() -> None:
    """A task that also depends on a healthy branch is still cancelled:

    a --> c
    b --/
    """
    graph = TaskGraph.from_specs([spec("a"), spec("b"), spec("c", "a", "b")])
    run(graph, "b")

    cancelled = graph.mark_failed("a", "no agent", now=3.0)

    assert cancelled == ["c"]
    assert graph.task("b").state == "done"
    assert graph.finished


def test_graph_finished_only_when_all_tasks_finished() -> None:
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a")])

    run(graph, "a")
    finished_before_b = graph.finished
    run(graph, "b")

    assert not finished_before_b
    assert graph.finished


# --- structure --------------------------------------------------------------------


def test_topological_order_ties_by_insertion() -> None:
    """c and b are independent; c was added first:

    a --> c --> d
     \\--> b --/
    """
    graph = TaskGraph.from_specs([spec("a"), spec("c", "a"), spec("b", "a"), spec("d", "b", "c")])

    assert graph.topological_order() == ["a", "c", "b", "d"]


def test_descendants_are_transitive() -> None:
    """a --> b --> c,  d --> c,  e alone."""
    graph = TaskGraph.from_specs(
        [spec("a"), spec("b", "a"), spec("d"), spec("c", "b", "d"), spec("e")]
    )

    assert graph.descendants("a") == {"b", "c"}
    assert graph.descendants("c") == set()


def test_sinks_skip_failed_dependents() -> None:
    """b fails, so a becomes a sink:

    a --> b
    c
    """
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a"), spec("c")])
    sinks_before = graph.sinks()
    run(graph, "a")

    graph.mark_failed("b", "gave up", now=4.0)

    assert sinks_before == ["b", "c"]
    assert graph.sinks() == ["a", "c"]


# --- priorities -------------------------------------------------------------------


def test_diamond_priorities_in_seconds() -> None:
    """Each task costs 1 s and moves no data:

    a --> b --> d
     \\--> c --/

    D(d) = 0, D(b) = D(c) = C(d) = 1, D(a) = C(b) + D(b) = 2, P = C + D.
    """
    graph = TaskGraph.from_specs(
        [spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "b", "c")],
        weighting="seconds",
        transfer=NO_TRANSFER,
    )

    assert graph.downstream("d") == 0.0
    assert graph.downstream("b") == 1.0
    assert graph.downstream("c") == 1.0
    assert graph.downstream("a") == 2.0
    assert graph.priority("a") == 3.0
    assert graph.priority("d") == 1.0


def test_longer_chain_gets_higher_priority() -> None:
    """Two sources; x heads the longer chain:

    x --> y --> z
    w --> v
    """
    graph = TaskGraph.from_specs(
        [spec("x"), spec("y", "x"), spec("z", "y"), spec("w"), spec("v", "w")],
        weighting="seconds",
    )

    assert graph.priority("x") > graph.priority("w")


def test_seconds_priority_counts_transfer_time() -> None:
    """a sends 1000 tokens to b; each costs 2 s:

    a --> b

    D(a) = C(b) + I(a, b), with I = tokens * prefill + network.
    """
    transfer = TransferModel(prefill_s_per_token=0.001, network_s=0.5)
    graph = TaskGraph.from_specs(
        [spec("a", cost_s=2.0, tokens=1000), spec("b", "a", cost_s=2.0)],
        weighting="seconds",
        transfer=transfer,
    )
    expected_transfer_s = 1000 * 0.001 + 0.5

    assert graph.transfer_s("a") == pytest.approx(expected_transfer_s)
    assert graph.downstream("a") == pytest.approx(2.0 + expected_transfer_s)
    assert graph.priority("a") == pytest.approx(2.0 + 2.0 + expected_transfer_s)


def test_normalized_priority_uses_mean_costs() -> None:
    """A chain whose costs differ, with alpha = 1 / mean cost, beta = 1 / mean transfer:

    a (1 s) --> b (2 s) --> c (6 s)
    """
    graph = TaskGraph.from_specs(
        [
            spec("a", cost_s=1.0, tokens=100),
            spec("b", "a", cost_s=2.0, tokens=300),
            spec("c", "b", cost_s=6.0),
        ],
        weighting="normalized",
        renormalize_tolerance=0.0,
    )
    alpha = 1 / ((1.0 + 2.0 + 6.0) / 3)
    transfer_a = graph.transfer.transfer_s(100)
    transfer_b = graph.transfer.transfer_s(300)
    beta = 1 / ((transfer_a + transfer_b) / 2)
    down_b = alpha * 6.0 + beta * transfer_b
    down_a = alpha * 2.0 + beta * transfer_a + down_b

    assert graph.scale.alpha == pytest.approx(alpha)
    assert graph.scale.beta == pytest.approx(beta)
    assert graph.downstream("b") == pytest.approx(down_b)
    assert graph.downstream("a") == pytest.approx(down_a)
    assert graph.priority("a") == pytest.approx(alpha * 1.0 + down_a)


def test_failure_lowers_ancestor_priority() -> None:
    """b fails while ready, so a no longer leads anywhere through it:

    r --> a --> b
    """
    graph = TaskGraph.from_specs([spec("r"), spec("a", "r"), spec("b", "a")], weighting="seconds")
    run(graph, "r")
    run(graph, "a")
    downstream_before = graph.downstream("a")

    graph.mark_failed("b", "no agent", now=9.0)

    assert downstream_before > 0.0
    assert graph.downstream("a") == 0.0


def test_update_estimate_refreshes_dependency_priority() -> None:
    """b's cost rises from 1 s to 5 s:

    a --> b
    """
    graph = TaskGraph.from_specs(
        [spec("a"), spec("b", "a")], weighting="seconds", transfer=NO_TRANSFER
    )

    graph.update_estimate("b", cost_s=5.0)

    assert graph.task("b").spec.cost_s == 5.0
    assert graph.downstream("a") == 5.0
    assert graph.priority("b") == 5.0
