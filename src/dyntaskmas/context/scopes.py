"""The scope forest: names of scopes and how they nest.

A scope is a path of names joined by ``/``: a run scope ``"run-7"``, the
scope of one of its tasks ``"run-7/t.2"``, and of a subtask
``"run-7/t.2/t.2.1"``. The forest is implicit in the paths, so processes
that share a store agree on it without storing it. The entries of a
scope's ancestors are visible in it too, the nearest scope winning for a key.

This module is pure: it builds, splits and compares paths. Entries live in
:mod:`dyntaskmas.context.entries`, and the stores hold them.
"""

from __future__ import annotations

from collections.abc import Iterator

SEPARATOR = "/"


def validate_scope(scope: str) -> str:
    """Return ``scope`` unchanged, or raise ValueError when a name in it is empty."""
    if not scope or any(not part.strip() for part in scope.split(SEPARATOR)):
        raise ValueError(
            f"scope {scope!r} is invalid; give names joined by {SEPARATOR!r}, such as 'run/t.1'"
        )
    return scope


def child_scope(parent: str, name: str) -> str:
    """Return the path of the scope ``name`` under ``parent``."""
    if not name.strip() or SEPARATOR in name:
        raise ValueError(
            f"scope name {name!r} is invalid; it must be non-blank without {SEPARATOR!r}"
        )
    return f"{validate_scope(parent)}{SEPARATOR}{name}"


def parent_scope(scope: str) -> str | None:
    """Return the parent of ``scope``, or None for a root."""
    head, separator, _ = validate_scope(scope).rpartition(SEPARATOR)
    return head if separator else None


def root_scope(scope: str) -> str:
    """Return the root (the run scope) of the tree that contains ``scope``."""
    return validate_scope(scope).split(SEPARATOR, 1)[0]


def ancestors(scope: str) -> Iterator[str]:
    """Yield ``scope`` and then each ancestor up to its root, nearest first."""
    current: str | None = validate_scope(scope)
    while current is not None:
        yield current
        current = parent_scope(current)


def is_within(scope: str, ancestor: str) -> bool:
    """Return whether ``scope`` is ``ancestor`` or lies below it."""
    return scope == ancestor or scope.startswith(ancestor + SEPARATOR)


def depth(scope: str) -> int:
    """Return the number of names above ``scope``: 0 for a root."""
    return validate_scope(scope).count(SEPARATOR)
