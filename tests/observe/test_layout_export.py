"""The layered layout (property tests) and the plan's Mermaid and DOT escaping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.observe.graph_export import (
    PlanNode,
    PlanTree,
    dot_escape,
    plan_dot,
    plan_mermaid,
)
from dyntaskmas.observe.layout import layered_layout


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], list[tuple[str, str]]]:
    count = draw(st.integers(0, 25))
    nodes = [f"n{i}" for i in range(count)]
    edges = []
    for target in range(count):
        for source in draw(st.sets(st.integers(0, max(target - 1, 0)), max_size=3)):
            if source < target:
                edges.append((nodes[source], nodes[target]))
    return nodes, edges


@given(dags())
def test_edges_point_to_later_layers(graph: tuple[list[str], list[tuple[str, str]]]) -> None:
    nodes, edges = graph

    layout = layered_layout(nodes, edges)

    assert set(layout) == set(nodes)
    for source, target in edges:
        assert layout[source].layer < layout[target].layer


@given(dags())
def test_rows_unique_within_layer(graph: tuple[list[str], list[tuple[str, str]]]) -> None:
    nodes, edges = graph

    layout = layered_layout(nodes, edges)

    by_layer: dict[int, list[int]] = {}
    for placement in layout.values():
        by_layer.setdefault(placement.layer, []).append(placement.row)
    for rows in by_layer.values():
        assert sorted(rows) == list(range(len(rows)))


def test_cycle_goes_to_extra_layer() -> None:
    layout = layered_layout(["a", "b", "c"], [("a", "b"), ("b", "c"), ("c", "b")])

    assert layout["a"].layer == 0
    assert layout["b"].layer == layout["c"].layer == 1


def _tree(description: str) -> PlanTree:
    child = TaskSpec(id="t.2.1", description="inner", role="r")
    nodes = (
        PlanNode(TaskSpec(id="t.1", description=description, role="r")),
        PlanNode(
            TaskSpec(id="t.2", description="outer", role="r", depends_on=("t.1",)),
            (PlanNode(child),),
        ),
    )
    return PlanTree("request", nodes, 0, 0)


def test_mermaid_escapes_labels() -> None:
    text = plan_mermaid(_tree('say "hi" <b>&'))

    assert '"hi"' not in text
    assert "<b>" not in text
    assert "#quot;hi#quot; #lt;b#gt;#amp;" in text
    assert "subgraph" in text


def test_dot_escapes_labels() -> None:
    text = plan_dot(_tree('back\\slash "quote"\nnewline'))

    assert 'back\\\\slash \\"quote\\" newline' in text
    assert '"t.2.1" -> "t.2";' in text
    assert '"t.1" -> "t.2";' in text
    assert dot_escape('a"b') == 'a\\"b'
