"""The entry index decides relevance and similarity exactly as the pure functions do."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.context.entries import Entry
from dyntaskmas.context.index import EntryIndex
from dyntaskmas.context.relevance import is_relevant
from dyntaskmas.context.retrieval import cosine

TAGS = ["paris", "hotel", "price", "tokyo", "weather", "train", "lyon", "budget"]

tag_sets = st.frozensets(st.sampled_from(TAGS), max_size=5)
vectors = st.one_of(
    st.none(),
    st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=3, max_size=3).map(tuple),
)


@st.composite
def entries(draw: st.DrawFn) -> list[Entry]:
    count = draw(st.integers(min_value=0, max_value=12))
    return [
        Entry(
            scope=f"run/t.{i}",
            key="output",
            value=f"text {i}",
            version=1,
            writer=f"t.{i}",
            tags=draw(tag_sets),
            embedding=draw(vectors),
        )
        for i in range(count)
    ]


def indexed(found: list[Entry]) -> EntryIndex:
    index = EntryIndex()
    index.apply(found, ())
    return index


@settings(max_examples=300, deadline=None)
@given(entries(), tag_sets, st.sampled_from([0.0, 0.05, 0.2, 1 / 3, 0.5, 1.0]))
def test_relevant_matches_is_relevant(
    found: list[Entry], task_tags: frozenset[str], theta: float
) -> None:
    expected = sorted(e.address for e in found if is_relevant(e.tags, task_tags, theta))

    assert indexed(found).relevant(task_tags, theta) == expected


@settings(max_examples=200, deadline=None)
@given(entries(), st.lists(st.floats(min_value=-1.0, max_value=1.0), min_size=3, max_size=3))
def test_scores_match_cosine(found: list[Entry], query: list[float]) -> None:
    addresses = [e.address for e in found]

    scores = indexed(found).scores(query, addresses)

    for entry, score in zip(found, scores, strict=True):
        expected = cosine(query, entry.embedding) if entry.embedding is not None else 0.0
        assert math.isclose(score, expected, abs_tol=1e-9)


@settings(max_examples=200, deadline=None)
@given(entries(), st.data())
def test_removed_and_replaced_entries_leave_no_trace(
    found: list[Entry], data: st.DataObject
) -> None:
    index = indexed(found)
    gone = [e for e in found if data.draw(st.booleans())]
    kept = [e for e in found if e not in gone]
    index.apply((), [e.address for e in gone])
    fresh = indexed(kept)

    for tags in (frozenset(TAGS), frozenset({"paris"}), frozenset({"tokyo", "lyon"})):
        assert index.relevant(tags, 0.05) == fresh.relevant(tags, 0.05)
    assert len(index) == len(kept)
    assert all(not index.written_by(e.writer) for e in gone)


def test_mixed_dimensions_scored_separately() -> None:
    found = [
        Entry("run/a", "output", "a", 1, "a", embedding=(1.0, 0.0, 0.0)),
        Entry("run/b", "output", "b", 1, "b", embedding=(0.0, 1.0)),
    ]
    index = indexed(found)

    three = index.scores((1.0, 0.0, 0.0), [e.address for e in found])
    two = index.scores((0.0, 2.0), [e.address for e in found])

    assert three == [1.0, 0.0]
    assert two == [0.0, 1.0]


def test_matrix_grows_past_initial_rows() -> None:
    found = [
        Entry(f"run/t.{i}", "output", i, 1, f"t.{i}", embedding=(float(i), 1.0)) for i in range(200)
    ]

    scores = indexed(found).scores((1.0, 0.0), [e.address for e in found])

    assert scores == [cosine((1.0, 0.0), e.embedding or ()) for e in found]
