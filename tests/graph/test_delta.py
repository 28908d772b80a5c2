"""Example tests of graph deltas: adding, rewiring and cancelling tasks."""

from __future__ import annotations

import pytest

from dyntaskmas.errors import (
    CycleError,
    DuplicateTaskError,
    GraphError,
    ImmutableTaskError,
    UnknownDependencyError,
    UnknownTaskError,
)
from dyntaskmas.graph import GraphDelta, TaskGraph, TaskSpec, TransferModel

from .reference import Snapshot


def spec(task_id: str, *depends_on: str, cost_s: float = 1.0) -> TaskSpec:
    return TaskSpec(id=task_id, description=f"do {task_id}", depends_on=depends_on, cost_s=cost_s)


def run(graph: TaskGraph, task_id: str) -> None:
    graph.mark_running(task_id, agent="agent", now=1.0)
    graph.mark_done(task_id, f"output of {task_id}", now=2.0)


def chain() -> TaskGraph:
    """a --> b --> c, with a done, b ready and c pending."""
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a"), spec("c", "b")])
    run(graph, "a")
    return graph


# --- adding tasks -----------------------------------------------------------------


def test_task_on_done_dependency_ready_at_once() -> None:
    graph = chain()

    result = graph.apply(GraphDelta(add=(spec("check", "a"),)), now=7.0)

    assert result.added == ("check",)
    assert result.ready == ("check",)
    assert graph.task("check").state == "ready"
    assert graph.task("check").ready_at == 7.0


def test_task_on_unfinished_dependency_waits() -> None:
    graph = chain()

    result = graph.apply(GraphDelta(add=(spec("review", "c"),)))

    assert result.ready == ()
    assert graph.task("review").state == "pending"


def test_new_tasks_may_depend_on_each_other() -> None:
    """second is listed before the task it depends on:

    a (done) --> first --> second
    """
    graph = chain()

    result = graph.apply(GraphDelta(add=(spec("second", "first"), spec("first", "a"))))

    assert result.added == ("second", "first")
    assert result.ready == ("first",)
    assert graph.predecessors("second") == {"first"}
    assert graph.successors("first") == {"second"}


def test_task_on_running_dependency_waits() -> None:
    graph = chain()
    graph.mark_running("b", agent="agent", now=3.0)

    graph.apply(GraphDelta(add=(spec("follow_up", "b"),)))

    assert graph.task("follow_up").state == "pending"
    assert graph.task("b").state == "running"


def test_task_on_failed_dependency_rejected() -> None:
    graph = chain()
    graph.mark_failed("b", "timed out", now=3.0)

    with pytest.raises(GraphError) as caught:
        graph.apply(GraphDelta(add=(spec("retry_of_c", "b"),)))

    assert "'retry_of_c'" in str(caught.value)
    assert "'b'" in str(caught.value)
    assert "failed" in str(caught.value)
    assert "retry_of_c" not in graph


def test_task_on_cancelled_dependency_rejected() -> None:
    graph = chain()
    graph.apply(GraphDelta(cancel=("c",)))

    with pytest.raises(GraphError) as caught:
        graph.apply(GraphDelta(add=(spec("after_c", "c"),)))

    assert "'c'" in str(caught.value)
    assert "cancelled" in str(caught.value)


def test_duplicate_of_existing_id_rejected() -> None:
    graph = chain()

    with pytest.raises(DuplicateTaskError) as caught:
        graph.apply(GraphDelta(add=(spec("b"),)))

    assert caught.value.task_id == "b"
    assert graph.task("b").spec.depends_on == ("a",)


def test_unknown_edge_dependency_rejected() -> None:
    graph = chain()

    with pytest.raises(UnknownDependencyError) as caught:
        graph.apply(GraphDelta(add_edges=(("ghost", "c"),)))

    assert caught.value.task_id == "c"
    assert caught.value.dependency == "ghost"


# --- rewiring ---------------------------------------------------------------------


def test_new_edge_sends_ready_task_back() -> None:
    """b was ready; it now also waits for the new task x:

    a (done) --> b --> c
    x ----------/
    """
    graph = chain()

    result = graph.apply(GraphDelta(add=(spec("x"),), add_edges=(("x", "b"),)))

    assert result.unready == ("b",)
    assert result.ready == ("x",)
    assert graph.task("b").state == "pending"
    assert graph.task("b").ready_at is None


def test_edge_from_done_task_keeps_ready() -> None:
    graph = TaskGraph.from_specs([spec("a"), spec("b")])
    run(graph, "a")

    result = graph.apply(GraphDelta(add_edges=(("a", "b"),)))

    assert result.unready == ()
    assert graph.task("b").state == "ready"
    assert graph.predecessors("b") == {"a"}


def test_removed_edge_readies_pending_task() -> None:
    graph = chain()

    result = graph.apply(GraphDelta(remove_edges=(("b", "c"),)))

    assert result.ready == ("c",)
    assert graph.task("c").state == "ready"
    assert graph.successors("b") == frozenset()


def test_edge_removed_and_added_stays() -> None:
    """The same edge in remove_edges and add_edges is kept, as the cycle check assumes:

    a (ready) --> b
    """
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a")])

    result = graph.apply(GraphDelta(add_edges=(("a", "b"),), remove_edges=(("a", "b"),)))

    assert graph.predecessors("b") == {"a"}
    assert graph.task("b").state == "pending"
    assert result.ready == ()


def test_rewire_can_reverse_an_edge() -> None:
    """Removing a --> b lets the same delta add b --> a:

    a --> b   becomes   b --> a
    """
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a")])

    result = graph.apply(GraphDelta(add_edges=(("b", "a"),), remove_edges=(("a", "b"),)))

    assert graph.predecessors("a") == {"b"}
    assert graph.predecessors("b") == frozenset()
    assert result.ready == ("b",)
    assert result.unready == ("a",)


def test_edge_closing_cycle_rejected() -> None:
    graph = chain()

    with pytest.raises(CycleError) as caught:
        graph.apply(GraphDelta(add_edges=(("c", "b"),)))

    assert set(caught.value.cycle) == {"b", "c"}
    assert "b" in str(caught.value)
    assert "c" in str(caught.value)
    assert graph.predecessors("b") == {"a"}


def test_removing_missing_edge_rejected() -> None:
    graph = chain()

    with pytest.raises(GraphError) as caught:
        graph.apply(GraphDelta(remove_edges=(("a", "c"),)))

    assert "'c' does not depend on 'a'" in str(caught.value)


# --- cancelling -------------------------------------------------------------------


def test_cancel_cascades_to_descendants() -> None:
    """Cancelling b ends c and d but not the independent e:

    a (done) --> b --> c --> d
    e
    """
    graph = TaskGraph.from_specs(
        [spec("a"), spec("b", "a"), spec("c", "b"), spec("d", "c"), spec("e")]
    )
    run(graph, "a")

    result = graph.apply(GraphDelta(cancel=("b",), reason="the user narrowed the request"), now=5.0)

    assert result.cancelled == ("b", "c", "d")
    for task_id in result.cancelled:
        assert graph.task(task_id).state == "cancelled"
        assert "the user narrowed the request" in (graph.task(task_id).error or "")
        assert graph.task(task_id).finished_at == 5.0
    assert graph.task("a").state == "done"
    assert graph.task("e").state == "ready"


def test_cancel_lowers_ancestor_priority() -> None:
    """a leads nowhere once b is cancelled:

    a --> b
    """
    graph = TaskGraph.from_specs([spec("a"), spec("b", "a", cost_s=4.0)], weighting="seconds")
    downstream_before = graph.downstream("a")

    graph.apply(GraphDelta(cancel=("b",)))

    assert downstream_before >= 4.0
    assert graph.downstream("a") == 0.0


def test_cancel_unknown_task_rejected() -> None:
    graph = chain()

    with pytest.raises(UnknownTaskError) as caught:
        graph.apply(GraphDelta(cancel=("ghost",)))

    assert caught.value.task_id == "ghost"


# --- started tasks are immutable --------------------------------------------------


@pytest.mark.parametrize(
    ("state", "delta"),
    [
        ("running", GraphDelta(cancel=("b",))),
        ("done", GraphDelta(cancel=("b",))),
        ("running", GraphDelta(add=(spec("x"),), add_edges=(("x", "b"),))),
        ("done", GraphDelta(add=(spec("x"),), add_edges=(("x", "b"),))),
        ("running", GraphDelta(remove_edges=(("a", "b"),))),
        ("done", GraphDelta(remove_edges=(("a", "b"),))),
        ("failed", GraphDelta(cancel=("b",))),
    ],
    ids=[
        "cancel-running",
        "cancel-done",
        "add-edge-running",
        "add-edge-done",
        "remove-edge-running",
        "remove-edge-done",
        "cancel-failed",
    ],
)
def test_started_task_cannot_change(state: str, delta: GraphDelta) -> None:
    graph = chain()
    graph.mark_running("b", agent="agent", now=3.0)
    if state == "done":
        graph.mark_done("b", "output of b", now=4.0)
    if state == "failed":
        graph.mark_failed("b", "crashed", now=4.0)
    before = Snapshot.of(graph)

    with pytest.raises(ImmutableTaskError) as caught:
        graph.apply(delta)

    assert caught.value.task_id == "b"
    assert caught.value.state == state
    assert f"'b' is {state}" in str(caught.value)
    assert before.differences(Snapshot.of(graph)) == {}


def test_rejected_delta_adds_nothing() -> None:
    """The valid part of a rejected delta (new task, cancel) is not applied either."""
    graph = chain()
    graph.mark_running("b", agent="agent", now=3.0)
    before = Snapshot.of(graph)
    delta = GraphDelta(add=(spec("extra", "a"),), cancel=("c", "b"))

    with pytest.raises(ImmutableTaskError):
        graph.apply(delta)

    assert "extra" not in graph
    assert graph.task("c").state == "pending"
    assert before.differences(Snapshot.of(graph)) == {}


def test_delta_may_extend_running_task() -> None:
    """A running plan task gains dependents, as a decomposition does:

    a (done) --> plan (running) --> step1 --> join
    """
    graph = TaskGraph.from_specs([spec("a"), spec("plan", "a"), spec("join", "plan")])
    run(graph, "a")
    graph.mark_running("plan", agent="planner", now=3.0)

    result = graph.apply(GraphDelta(add=(spec("step1", "plan"),), add_edges=(("step1", "join"),)))

    assert result.added == ("step1",)
    assert graph.task("plan").state == "running"
    assert graph.predecessors("join") == {"plan", "step1"}


def test_empty_delta_changes_nothing() -> None:
    graph = chain()
    before = Snapshot.of(graph)

    result = graph.apply(GraphDelta())

    assert GraphDelta().empty
    assert result.added == ()
    assert result.cancelled == ()
    assert before.differences(Snapshot.of(graph)) == {}


def test_delta_adds_respect_transfer_model() -> None:
    """A new dependent of a done task raises that task's downstream value:

    a (done) --> n
    """
    transfer = TransferModel(prefill_s_per_token=0.01)
    graph = TaskGraph.from_specs([spec("a")], weighting="seconds", transfer=transfer)
    run(graph, "a")

    graph.apply(GraphDelta(add=(spec("n", "a", cost_s=3.0),)))

    assert graph.downstream("a") == pytest.approx(3.0 + graph.task("a").spec.output_tokens * 0.01)
