"""Property tests of follow-up validation and of the delta that adds follow-ups."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.engine.followups import (
    follow_up_delta_specs,
    parse_work_output,
    validate_follow_ups,
)
from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.graph.delta import GraphDelta
from dyntaskmas.graph.task import TaskSpec

ROLES = ("researcher", "writer")

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
IDS = st.sampled_from(["a", "b", "c", "d", "e", " a ", "", "x y", "a" * 30])


@st.composite
def raw_follow_ups(draw: st.DrawFn) -> list[Any]:
    """Mostly well-formed follow-up lists with random defects."""
    items: list[Any] = []
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            items.append(draw(JSON_VALUES))
            continue
        items.append(
            {
                "id": draw(IDS | st.integers()),
                "description": draw(st.sampled_from(["Find x", "Compare y", "", "123", 7])),
                "role": draw(st.sampled_from([*ROLES, "hacker", None])),
                "depends_on": draw(st.lists(IDS, max_size=3) | JSON_VALUES),
            }
        )
    return items


@given(text=st.text(max_size=200) | JSON_VALUES.map(json.dumps))
def test_work_output_parse_never_raises(text: str) -> None:
    output = parse_work_output(text, roles=ROLES, max_per_task=4)
    if not text.strip().startswith("{"):
        assert output.answer == text
        assert output.follow_ups == ()


@settings(max_examples=300)
@given(raw=raw_follow_ups() | JSON_VALUES, limit=st.integers(min_value=1, max_value=5))
def test_accepted_follow_ups_satisfy_every_rule(raw: Any, limit: int) -> None:
    follow_ups, problems = validate_follow_ups(raw, roles=ROLES, max_per_task=limit)
    assert not (follow_ups and problems)
    if raw not in ([],) and not follow_ups:
        assert problems
    assert len(follow_ups) <= limit
    ids = [item.id for item in follow_ups]
    assert len(ids) == len(set(ids))
    seen: set[str] = set()
    for item in follow_ups:
        assert item.role in ROLES
        assert item.description.strip()
        assert item.id not in item.depends_on
        # Dependencies come first, so the list has no cycle.
        assert set(item.depends_on) <= seen
        seen.add(item.id)


@settings(max_examples=200)
@given(raw=raw_follow_ups(), dependents=st.integers(min_value=0, max_value=2))
def test_follow_up_delta_keeps_the_graph_valid(raw: list[Any], dependents: int) -> None:
    follow_ups, _ = validate_follow_ups(raw, roles=ROLES, max_per_task=6)
    requester = TaskSpec(id="req", description="Do it", role="researcher")
    later = [
        TaskSpec(id=f"dep{k}", description="Use it", depends_on=("req",)) for k in range(dependents)
    ]
    graph = TaskGraph()
    graph.apply(GraphDelta(add=(requester, *later)))
    graph.mark_running("req", agent="x", now=0.0)

    specs, edges = follow_up_delta_specs(
        requester, follow_ups, dependents=[s.id for s in later], cost_s=1.0
    )
    graph.apply(GraphDelta(add=specs, add_edges=edges))  # raises if invalid

    graph.topological_order()
    added = [s.id for s in specs if s.kind == "work"]
    assert len(added) == len(follow_ups)
    for spec_id in added:
        assert "req" in graph.predecessors(spec_id)
    for dependent in later:
        assert set(added) <= graph.predecessors(dependent.id)
    if not later and follow_ups:
        assert graph.predecessors("req.followed") == {"req", *added}
    # Nothing runs before the requester is done.
    assert all(graph.task(s).state == "pending" for s in added)
