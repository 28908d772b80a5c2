"""Scope paths: building, splitting and nesting (pure)."""

from __future__ import annotations

import pytest

from dyntaskmas.context.scopes import (
    ancestors,
    child_scope,
    depth,
    is_within,
    parent_scope,
    root_scope,
)


def test_child_parent_round_trip() -> None:
    scope = child_scope(child_scope("run", "t.2"), "t.2.1")

    assert scope == "run/t.2/t.2.1"
    assert parent_scope(scope) == "run/t.2"
    assert parent_scope("run") is None
    assert root_scope(scope) == "run"
    assert depth(scope) == 2


def test_ancestors_nearest_first() -> None:
    assert list(ancestors("run/t.2/t.2.1")) == ["run/t.2/t.2.1", "run/t.2", "run"]


def test_within_needs_whole_names() -> None:
    assert is_within("run/t.1", "run")
    assert is_within("run", "run")
    assert not is_within("run2/t.1", "run")


@pytest.mark.parametrize("scope", ["", "run//t.1", "run/", " "])
def test_invalid_scopes_rejected(scope: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        list(ancestors(scope))


def test_child_name_with_separator_rejected() -> None:
    with pytest.raises(ValueError, match="invalid"):
        child_scope("run", "a/b")
