"""Replaying journalled graph changes rebuilds the graph exactly, for every kind of delta."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.graph import GraphDelta, TaskGraph, TaskSpec
from dyntaskmas.journal.codec import decode_event, encode_event
from dyntaskmas.journal.replay import fold_events
from dyntaskmas.observe.events import Event, GraphChanged, TaskFailed, TaskFinished, graph_changed

from .strategies import FreshIds, draw_valid_delta, graph_setups, ids_where

RUN = "r"


def through_journal(event: Event) -> Event:
    """Return ``event`` as the journal reads it back."""
    return decode_event(type(event).__name__, RUN, event.at_s, encode_event(event))


def rebuild(events: list[Event]) -> TaskGraph:
    """Rebuild a graph the way Engine.resume does: every delta, then every finish."""
    state = fold_events(RUN, [through_journal(event) for event in events])
    graph = TaskGraph()
    for delta in state.deltas:
        graph.apply(delta)
    for finished in state.finished:
        graph.mark_running(finished.task_id, agent=finished.agent, now=0.0)
        graph.mark_done(finished.task_id, finished.output, now=0.0)
    return graph


def edges(graph: TaskGraph) -> set[tuple[str, str]]:
    return {(dependency, task.id) for task in graph for dependency in graph.predecessors(task.id)}


@settings(max_examples=150, deadline=None)
@given(setup=graph_setups(), data=st.data())
def test_replay_rebuilds_edges_finishes_and_cancellations(
    setup: object, data: st.DataObject
) -> None:
    specs: tuple[TaskSpec, ...] = setup.specs  # type: ignore[attr-defined]
    graph = TaskGraph()
    initial = GraphDelta(add=specs, reason="initial graph")
    events: list[Event] = [graph_changed(RUN, 0.0, initial, graph.apply(initial))]
    fresh = FreshIds()
    cancelled_by_delta: set[str] = set()

    for step in range(data.draw(st.integers(min_value=1, max_value=12))):
        ready = ids_where(graph, frozenset({"ready"}))
        running = ids_where(graph, frozenset({"running"}))
        kinds = ["delta", *(["start"] if ready else []), *(["finish", "fail"] if running else [])]
        kind = data.draw(st.sampled_from(kinds))
        if kind == "delta":
            delta = draw_valid_delta(data, graph, fresh)
            result = graph.apply(delta, now=float(step))
            cancelled_by_delta.update(result.cancelled)
            events.append(graph_changed(RUN, float(step), delta, result))
        elif kind == "start":
            graph.mark_running(data.draw(st.sampled_from(ready)), agent="a", now=float(step))
        elif kind == "finish":
            task_id = data.draw(st.sampled_from(running))
            graph.mark_done(task_id, f"output of {task_id}", now=float(step))
            events.append(
                TaskFinished(RUN, float(step), task_id, "a", f"output of {task_id}", 0, 0, 0)
            )
        else:
            task_id = data.draw(st.sampled_from(running))
            cascade = graph.mark_failed(task_id, "failed", now=float(step))
            events.append(TaskFailed(RUN, float(step), task_id, "failed", tuple(cascade)))

    rebuilt = rebuild(events)

    assert {task.id for task in rebuilt} == {task.id for task in graph}
    assert edges(rebuilt) == edges(graph)
    done = {task.id: task.output for task in graph if task.state == "done"}
    assert {task.id: task.output for task in rebuilt if task.state == "done"} == done
    # Cancelled by a delta stays cancelled, and so does every task that waits
    # on one, even one a failure had cancelled first; the other failed tasks
    # and their cascades run again.
    waiting = {d for task_id in cancelled_by_delta for d in graph.descendants(task_id)}
    expected_cancelled = cancelled_by_delta | (waiting - set(done))
    assert set(ids_where(rebuilt, frozenset({"cancelled"}))) == expected_cancelled
    assert not ids_where(rebuilt, frozenset({"failed", "running"}))


def test_graph_changed_carries_removed_edges_and_requested_cancels() -> None:
    graph = TaskGraph()
    graph.apply(
        GraphDelta(
            add=(
                TaskSpec(id="a", description="do a"),
                TaskSpec(id="b", description="do b", depends_on=("a",)),
                TaskSpec(id="c", description="do c", depends_on=("b",)),
            )
        )
    )
    delta = GraphDelta(remove_edges=(("a", "b"),), cancel=("b",), reason="rewire")
    event = through_journal(graph_changed(RUN, 1.0, delta, graph.apply(delta)))

    assert isinstance(event, GraphChanged)
    assert event.edges_removed == (("a", "b"),)
    assert event.cancel_requested == ("b",)
    assert set(event.cancelled) == {"b", "c"}
