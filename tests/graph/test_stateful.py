"""Stateful test: random deltas and transitions on TaskGraph against a dict model.

The model stores each task's state and dependencies in plain dicts and applies
the graph's rules in the most direct way. A task is ready when all its
dependencies are done. A failure or cancellation cancels every unstarted task
that depends on the task, directly or not.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from dyntaskmas.errors import GraphError
from dyntaskmas.graph import GraphDelta, TaskGraph, TransferModel, Weighting

from .reference import (
    INACTIVE,
    MUTABLE,
    Snapshot,
    brute_force_priority,
    is_acyclic,
    reaches,
    successor_map,
)
from .strategies import (
    COSTS_S,
    OUTPUT_TOKENS,
    TOLERANCES,
    TRANSFERS,
    WEIGHTINGS,
    FreshIds,
    draw_invalid_delta,
    make_spec,
)

MAX_TASKS = 12


class GraphModel:
    """Task states and dependencies in plain dicts, updated by the rules directly."""

    def __init__(self) -> None:
        self.states: dict[str, str] = {}
        self.predecessors: dict[str, set[str]] = {}

    def successors(self, task_id: str) -> set[str]:
        return {v for v, preds in self.predecessors.items() if task_id in preds}

    def ids(self, *states: str) -> list[str]:
        return sorted(t for t, state in self.states.items() if state in states)

    def active(self) -> list[str]:
        return sorted(t for t, state in self.states.items() if state not in INACTIVE)

    def all_done(self, task_id: str) -> bool:
        return all(self.states[p] == "done" for p in self.predecessors[task_id])

    def refresh(self, task_id: str) -> None:
        if self.states[task_id] == "pending" and self.all_done(task_id):
            self.states[task_id] = "ready"
        elif self.states[task_id] == "ready" and not self.all_done(task_id):
            self.states[task_id] = "pending"

    def cancel_descendants(self, task_id: str) -> None:
        """Cancel every unstarted task that depends on ``task_id``, directly or not."""
        for successor in self.successors(task_id):
            if self.states[successor] in MUTABLE:
                self.states[successor] = "cancelled"
                self.cancel_descendants(successor)


class GraphMachine(RuleBasedStateMachine):
    graph: TaskGraph

    def __init__(self) -> None:
        super().__init__()
        self.model = GraphModel()
        self.fresh = FreshIds()
        self.now = 0.0

    def tick(self) -> float:
        self.now += 1.0
        return self.now

    @initialize(weighting=st.sampled_from(WEIGHTINGS), tolerance=TOLERANCES, transfer=TRANSFERS)
    def create(self, weighting: Weighting, tolerance: float, transfer: TransferModel) -> None:
        self.graph = TaskGraph(
            weighting=weighting, transfer=transfer, renormalize_tolerance=tolerance
        )

    @precondition(lambda self: len(self.model.states) < MAX_TASKS)
    @rule(data=st.data(), cost_s=COSTS_S, tokens=OUTPUT_TOKENS)
    def add_task(self, data: st.DataObject, cost_s: float, tokens: int) -> None:
        active = self.model.active()
        depends_on = (
            data.draw(st.lists(st.sampled_from(active), unique=True, max_size=3)) if active else []
        )
        task_id = self.fresh.next()

        result = self.graph.apply(
            GraphDelta(add=(make_spec(task_id, tuple(depends_on), cost_s, tokens),)),
            now=self.tick(),
        )

        self.model.states[task_id] = "pending"
        self.model.predecessors[task_id] = set(depends_on)
        self.model.refresh(task_id)
        assert result.added == (task_id,)
        assert (task_id in result.ready) == (self.model.states[task_id] == "ready")

    @precondition(lambda self: bool(self.model.ids("pending", "ready")))
    @rule(data=st.data())
    def add_edge(self, data: st.DataObject) -> None:
        dependent = data.draw(st.sampled_from(self.model.ids("pending", "ready")))
        dependency = data.draw(st.sampled_from(self.model.active()))
        successors = {t: self.model.successors(t) for t in self.model.states}
        if reaches(successors, dependent, dependency):
            return  # The edge would close a cycle, and rejections have their own rule.
        was_ready = self.model.states[dependent] == "ready"

        result = self.graph.apply(GraphDelta(add_edges=((dependency, dependent),)), now=self.tick())

        self.model.predecessors[dependent].add(dependency)
        self.model.refresh(dependent)
        went_back = was_ready and self.model.states[dependent] == "pending"
        assert result.unready == ((dependent,) if went_back else ())

    @rule(data=st.data())
    def remove_edge(self, data: st.DataObject) -> None:
        removable = [
            (u, v)
            for v in self.model.ids("pending", "ready")
            for u in sorted(self.model.predecessors[v])
        ]
        if not removable:
            return
        dependency, dependent = data.draw(st.sampled_from(removable))

        result = self.graph.apply(
            GraphDelta(remove_edges=((dependency, dependent),)), now=self.tick()
        )

        self.model.predecessors[dependent].discard(dependency)
        was_pending = self.model.states[dependent] == "pending"
        self.model.refresh(dependent)
        became_ready = was_pending and self.model.states[dependent] == "ready"
        assert result.ready == ((dependent,) if became_ready else ())

    @rule(data=st.data())
    def rewire_same_edge(self, data: st.DataObject) -> None:
        """Remove and add back one edge in the same delta: the edge stays."""
        existing = [
            (u, v)
            for v in self.model.ids("pending", "ready")
            for u in sorted(self.model.predecessors[v])
        ]
        if not existing:
            return
        edge = data.draw(st.sampled_from(existing))

        self.graph.apply(GraphDelta(add_edges=(edge,), remove_edges=(edge,)), now=self.tick())

        assert edge[0] in self.graph.predecessors(edge[1])

    @precondition(lambda self: bool(self.model.ids("pending", "ready")))
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.model.ids("pending", "ready")))
        before = dict(self.model.states)

        result = self.graph.apply(
            GraphDelta(cancel=(task_id,), reason="not needed"), now=self.tick()
        )

        self.model.states[task_id] = "cancelled"
        self.model.cancel_descendants(task_id)
        newly = {t for t, state in self.model.states.items() if state != before[t]}
        assert set(result.cancelled) == newly

    @precondition(lambda self: bool(self.model.ids("ready")))
    @rule(data=st.data())
    def start(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.model.ids("ready")))

        self.graph.mark_running(task_id, agent="agent", now=self.tick())

        self.model.states[task_id] = "running"

    @precondition(lambda self: bool(self.model.ids("running")))
    @rule(data=st.data())
    def finish(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.model.ids("running")))
        before = dict(self.model.states)

        ready = self.graph.mark_done(task_id, f"output of {task_id}", now=self.tick())

        self.model.states[task_id] = "done"
        for successor in self.model.successors(task_id):
            self.model.refresh(successor)
        newly = {t for t, state in self.model.states.items() if state != before[t]} - {task_id}
        assert set(ready) == newly

    @precondition(lambda self: bool(self.model.ids("ready", "running")))
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        task_id = data.draw(st.sampled_from(self.model.ids("ready", "running")))
        before = dict(self.model.states)

        cancelled = self.graph.mark_failed(task_id, "simulated failure", now=self.tick())

        self.model.states[task_id] = "failed"
        self.model.cancel_descendants(task_id)
        newly = {t for t, state in self.model.states.items() if state != before[t]} - {task_id}
        assert set(cancelled) == newly
        for cancelled_id in cancelled:
            assert repr(task_id) in (self.graph.task(cancelled_id).error or "")

    @rule(data=st.data())
    def reject_invalid_delta(self, data: st.DataObject) -> None:
        invalid = draw_invalid_delta(data, self.graph, self.fresh)
        before = Snapshot.of(self.graph)

        with pytest.raises(GraphError):
            self.graph.apply(invalid.delta, now=self.tick())

        assert before.differences(Snapshot.of(self.graph)) == {}

    @invariant()
    def states_match_model(self) -> None:
        actual = {task.id: task.state for task in self.graph}
        assert actual == self.model.states

    @invariant()
    def dependencies_match_model(self) -> None:
        for task_id, preds in self.model.predecessors.items():
            assert self.graph.predecessors(task_id) == preds, task_id

    @invariant()
    def edges_symmetric(self) -> None:
        for task in self.graph:
            for dependency in self.graph.predecessors(task.id):
                assert task.id in self.graph.successors(dependency), (dependency, task.id)
            for dependent in self.graph.successors(task.id):
                assert task.id in self.graph.predecessors(dependent), (task.id, dependent)

    @invariant()
    def acyclic(self) -> None:
        assert is_acyclic(successor_map(self.graph))

    @invariant()
    def readiness_means_dependencies_done(self) -> None:
        for task in self.graph:
            all_done = all(
                self.graph.task(p).state == "done" for p in self.graph.predecessors(task.id)
            )
            if task.state == "ready":
                assert all_done, task.id
            if task.state == "pending":
                assert not all_done, task.id

    @invariant()
    def unstarted_tasks_have_live_dependencies(self) -> None:
        for task in self.graph:
            if task.state not in MUTABLE:
                continue
            for dependency in self.graph.predecessors(task.id):
                assert self.graph.task(dependency).state not in INACTIVE, (task.id, dependency)

    @invariant()
    def priorities_match_longest_path(self) -> None:
        for task in self.graph:
            if task.state in INACTIVE:
                continue
            expected = brute_force_priority(self.graph, task.id)
            assert self.graph.priority(task.id) == pytest.approx(expected, rel=1e-9, abs=1e-9)


GraphMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestGraphMachine = GraphMachine.TestCase
