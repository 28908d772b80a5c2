"""The comparison priority policies and levels, against hand-computed values."""

from __future__ import annotations

import pytest

from dyntaskmas.graph import GraphDelta, TaskGraph, TaskSpec
from dyntaskmas.graph.priority import levels, paper_summary_priorities


def _graph(*specs: TaskSpec) -> TaskGraph:
    return TaskGraph.from_specs(specs, weighting="seconds")


def test_paper_formula_hand_computed() -> None:
    """a --> b --> c with C = 2, 3, 4 s and no transfer cost (seconds weighting).

    P(c) = 4; P(b) = 3 / (W(b, c) + P(c)) = 3 / (4 + 4) = 0.375;
    P(a) = 2 / (W(a, b) + P(b)) = 2 / (3 + 0.375).
    """
    graph = _graph(
        TaskSpec("a", "A", cost_s=2.0, output_tokens=0),
        TaskSpec("b", "B", depends_on=("a",), cost_s=3.0, output_tokens=0),
        TaskSpec("c", "C", depends_on=("b",), cost_s=4.0, output_tokens=0),
    )

    priorities = paper_summary_priorities(graph)

    assert priorities["c"] == pytest.approx(4.0)
    assert priorities["b"] == pytest.approx(0.375)
    assert priorities["a"] == pytest.approx(2.0 / 3.375)


def test_paper_formula_ignores_cancelled_successor() -> None:
    """a --> b with b cancelled: a counts as a sink, so P(a) = C(a)."""
    graph = _graph(
        TaskSpec("a", "A", cost_s=2.0),
        TaskSpec("b", "B", depends_on=("a",), cost_s=3.0),
    )

    graph.apply(GraphDelta(cancel=("b",)))

    assert paper_summary_priorities(graph)["a"] == pytest.approx(2.0)


def test_levels_follow_deepest_dependency() -> None:
    """a --> b --> d and a --> d, c alone: levels 0, 1, 2 and 0."""
    graph = _graph(
        TaskSpec("a", "A"),
        TaskSpec("b", "B", depends_on=("a",)),
        TaskSpec("c", "C"),
        TaskSpec("d", "D", depends_on=("a", "b")),
    )

    assert levels(graph) == {"a": 0, "b": 1, "c": 0, "d": 2}
