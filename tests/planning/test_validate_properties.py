"""Property tests: parse_decomposition never raises and never lets an invalid plan through."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.planning.validate import ParseResult, parse_decomposition

ROLES = ("researcher", "writer")
MAX_SUBTASKS = 5

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def mostly(
    valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Draw from ``valid`` most of the time, so both outcomes of a parse are reached."""
    # one_of would pick each branch about equally often, whatever their count.
    return st.tuples(st.integers(0, 9), valid, invalid).map(
        lambda drawn: drawn[2] if drawn[0] == 0 else drawn[1]
    )


# Subtask-shaped objects whose fields are mostly, but not always, valid.
GOOD_LABELS = ("s1", "s2", "s3", "s4", "s5", "s6")
labels = mostly(st.sampled_from(GOOD_LABELS), st.sampled_from([" s1", "", 2, None, "1" * 30]))
subtask_objects = st.fixed_dictionaries(
    {
        "id": labels,
        "description": mostly(
            st.sampled_from(["Find A", "Find B", " Find A", "Compare"]),
            st.sampled_from(["", "1.1.1.1.1.1.1.1.1.1.1"]) | st.text(max_size=30),
        ),
        "role": mostly(st.sampled_from(ROLES), st.sampled_from(["Writer", "chef"])),
        "depends_on": mostly(st.lists(labels, max_size=3), json_scalars),
        "atomic": mostly(st.booleans(), json_scalars),
        "cost": mostly(st.sampled_from(["small", "medium", "large"]), st.just("huge")),
        "output_size": st.sampled_from(["short", "medium", "long"]),
    },
    optional={"extra": json_scalars},
)
decomposition_texts = st.lists(subtask_objects, max_size=8).map(
    lambda items: json.dumps({"subtasks": items})
)


def parse(text: str) -> ParseResult:
    return parse_decomposition(text, roles=ROLES, max_subtasks=MAX_SUBTASKS)


def check_invariants(result: ParseResult) -> None:
    """An accepted decomposition is small, uses known roles and is topologically ordered."""
    if result.decomposition is None:
        assert result.problems
        assert all(isinstance(problem, str) and problem for problem in result.problems)
        return
    assert result.problems == ()
    subtasks = result.decomposition.subtasks
    assert 1 <= len(subtasks) <= MAX_SUBTASKS
    descriptions = [" ".join(s.description.split()).casefold() for s in subtasks]
    assert len(set(descriptions)) == len(descriptions)
    seen: set[str] = set()
    for subtask in subtasks:
        assert subtask.label not in seen
        assert subtask.label == subtask.label.strip()
        assert subtask.role in ROLES
        assert subtask.description.strip() == subtask.description
        assert subtask.description
        assert subtask.label not in subtask.depends_on
        assert len(set(subtask.depends_on)) == len(subtask.depends_on)
        assert set(subtask.depends_on) <= seen
        seen.add(subtask.label)


@given(st.text(max_size=200))
def test_any_text_parses_without_raising(text: str) -> None:
    check_invariants(parse(text))


@given(json_values)
def test_any_json_parses_without_raising(value: Any) -> None:
    check_invariants(parse(json.dumps(value)))
    check_invariants(parse(json.dumps({"subtasks": value})))


@settings(max_examples=300)
@given(decomposition_texts)
def test_subtask_shaped_json_valid_or_explained(text: str) -> None:
    check_invariants(parse(text))


@given(st.data())
def test_valid_dag_accepted_whole(data: st.DataObject) -> None:
    """A valid DAG in any listing order comes back with every subtask and edge."""
    count = data.draw(st.integers(1, MAX_SUBTASKS))
    labels = [f"s{k}" for k in range(1, count + 1)]
    edges = {
        label: data.draw(st.lists(st.sampled_from(labels[:k]), unique=True)) if k else []
        for k, label in enumerate(labels)
    }
    order = data.draw(st.permutations(labels))
    items = [
        {
            "id": label,
            "description": f"Work on part {label}",
            "role": "researcher",
            "depends_on": edges[label],
            "atomic": True,
            "cost": "small",
            "output_size": "short",
        }
        for label in order
    ]

    result = parse(json.dumps({"subtasks": items}))

    check_invariants(result)
    assert result.decomposition is not None
    assert result.fixes == ()
    got = {s.label: set(s.depends_on) for s in result.decomposition.subtasks}
    assert got == {label: set(deps) for label, deps in edges.items()}
