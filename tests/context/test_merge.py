"""The merge rules for parallel writes to one key (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.context.merge import MergeContext, MergePolicy, resolve
from dyntaskmas.errors import MergeError, WriteConflictError


def context(policy: MergePolicy | None = None, mine: int = 0, theirs: int = 0) -> MergeContext:
    return MergeContext(
        scope="run",
        key="state",
        writer="t.late",
        other_writer="t.early",
        policy=policy,
        writer_priority=mine,
        other_priority=theirs,
    )


def test_different_subkeys_both_kept() -> None:
    result = resolve(None, {"paris": 200}, {"tokyo": 15000}, context())

    assert result.value == {"paris": 200, "tokyo": 15000}
    assert result.changed


def test_whole_state_merges_changed_fields_only() -> None:
    base = {"city": "Paris", "nights": 3, "budget": 900}
    current = {"city": "Paris", "nights": 4, "budget": 900}
    incoming = {"city": "Paris", "nights": 3, "budget": 1200}

    result = resolve(base, current, incoming, context())

    assert result.value == {"city": "Paris", "nights": 4, "budget": 1200}


def test_unchanged_handback_is_no_write() -> None:
    base = {"city": "Paris", "nights": 3}
    current = {"city": "Paris", "nights": 4}

    result = resolve(base, current, dict(base), context())

    assert result.value == current
    assert not result.changed


def test_same_change_on_both_sides_is_no_conflict() -> None:
    result = resolve({"n": 1}, {"n": 2}, {"n": 2}, context())

    assert result.value == {"n": 2}
    assert not result.changed


def test_field_removed_by_writer_is_removed() -> None:
    result = resolve({"a": 1, "b": 2}, {"a": 1, "b": 2, "c": 3}, {"a": 1}, context())

    assert result.value == {"a": 1, "c": 3}


def test_scalar_conflict_names_both_writers() -> None:
    with pytest.raises(WriteConflictError) as caught:
        resolve(None, "200 euros", "250 euros", context())

    assert caught.value.writer == "t.late"
    assert caught.value.other_writer == "t.early"
    assert caught.value.field is None
    assert "t.late" in str(caught.value)
    assert "t.early" in str(caught.value)


def test_field_conflict_names_field() -> None:
    with pytest.raises(WriteConflictError) as caught:
        resolve({"n": 1}, {"n": 2}, {"n": 3}, context())

    assert caught.value.field == "n"


def test_nested_field_conflict_names_path() -> None:
    with pytest.raises(WriteConflictError) as caught:
        resolve({"a": {"b": 1}}, {"a": {"b": 2}}, {"a": {"b": 3}}, context())

    assert caught.value.field == "a.b"


def test_append_adds_items_after_read() -> None:
    result = resolve(["a"], ["a", "b"], ["a", "c"], context("append"))

    assert result.value == ["a", "b", "c"]


def test_append_to_absent_list() -> None:
    result = resolve(None, ["b"], ["c"], context("append"))

    assert result.value == ["b", "c"]


def test_append_rejects_non_lists() -> None:
    with pytest.raises(MergeError, match="append"):
        resolve(None, "text", ["c"], context("append"))


def test_union_merges_nested_mappings() -> None:
    result = resolve(
        {"hotels": {"paris": 1}},
        {"hotels": {"paris": 1, "rome": 2}},
        {"hotels": {"paris": 1, "tokyo": 3}},
        context("union"),
    )

    assert result.value == {"hotels": {"paris": 1, "rome": 2, "tokyo": 3}}


def test_union_of_lists_keeps_order() -> None:
    result = resolve({"tags": []}, {"tags": ["a", "b"]}, {"tags": ["b", "c"]}, context("union"))

    assert result.value == {"tags": ["a", "b", "c"]}


def test_union_rejects_scalar_clash() -> None:
    with pytest.raises(MergeError, match="union"):
        resolve({"n": 1}, {"n": 2}, {"n": 3}, context("union"))


def test_keep_first_drops_later_value() -> None:
    result = resolve({"n": 1, "m": 1}, {"n": 2, "m": 1}, {"n": 3, "m": 5}, context("keep_first"))

    assert result.value == {"n": 2, "m": 5}
    assert result.dropped == ("n",)


def test_priority_higher_writer_wins() -> None:
    result = resolve(None, "early", "late", context("priority", mine=5, theirs=1))

    assert result.value == "late"


def test_priority_lower_writer_dropped() -> None:
    result = resolve(None, "early", "late", context("priority", mine=1, theirs=5))

    assert result.value == "early"
    assert result.dropped == (".",)


def test_priority_tie_keeps_first() -> None:
    result = resolve(None, "early", "late", context("priority", mine=3, theirs=3))

    assert result.value == "early"


def test_unknown_policy_rejected() -> None:
    with pytest.raises(ValueError, match="unknown"):
        resolve(None, 1, 2, context("newest"))  # type: ignore[arg-type]


fields = st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 3), max_size=6)


@given(base=fields, current_changes=fields, incoming_changes=fields)
def test_disjoint_field_changes_never_conflict(
    base: dict[str, Any], current_changes: dict[str, Any], incoming_changes: dict[str, Any]
) -> None:
    """Each side changes its own fields; the merge contains both sides' changes."""
    incoming_only = {k: v for k, v in incoming_changes.items() if k not in current_changes}
    current = {**base, **current_changes}
    incoming = {**base, **incoming_only}

    result = resolve(base, current, incoming, context())

    assert result.value == {**base, **current_changes, **incoming_only}
