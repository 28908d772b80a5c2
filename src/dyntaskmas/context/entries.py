"""Entries of the context repository and the writes that stores prepare.

An :class:`Entry` is one versioned value under a key in a scope, with the
tags the semantic analyser gave it, an optional embedding and the task that
wrote it. Versions count commits per (scope, key): 0 means the key is
absent, the first commit makes version 1. A :class:`StagedWrite` is what a
store prepares: the version the writer expects to replace and the entry that
replaces it.

Values are JSON values (None, bool, int, float, str, lists and mappings with
string keys), because the SQLite and Redis stores keep them as JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from dyntaskmas.context.scopes import validate_scope

#: A JSON value, checked at run time by :func:`check_json_value`. mypy treats it
#: as Any because a recursive alias makes every nested list invariant and awkward to build.
JSONValue: TypeAlias = Any


@dataclass(frozen=True)
class Entry:
    """One committed version of a key in a scope."""

    scope: str
    key: str
    value: JSONValue
    #: Starts at 1 and grows by one with each commit to this (scope, key).
    version: int
    #: Id of the task whose update wrote this version.
    writer: str
    tags: frozenset[str] = frozenset()
    embedding: tuple[float, ...] | None = None
    #: The writer's priority, read by the ``priority`` merge policy.
    priority: int = 0

    def __post_init__(self) -> None:
        validate_scope(self.scope)
        if not self.key:
            raise ValueError(f"entry in scope {self.scope!r} has an empty key")
        if self.version < 1:
            raise ValueError(f"entry {self.scope!r}/{self.key!r}: version must be >= 1")

    @property
    def address(self) -> tuple[str, str]:
        """The (scope, key) pair that identifies the entry across versions."""
        return (self.scope, self.key)

    def to_json(self) -> str:
        """Serialise to the JSON text the SQLite and Redis stores keep."""
        return json.dumps(
            {
                "scope": self.scope,
                "key": self.key,
                "value": self.value,
                "version": self.version,
                "writer": self.writer,
                "tags": sorted(self.tags),
                "embedding": list(self.embedding) if self.embedding is not None else None,
                "priority": self.priority,
            },
            allow_nan=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Entry:
        """Rebuild an entry from :meth:`to_json` output."""
        data = json.loads(text)
        embedding = data.get("embedding")
        return cls(
            scope=data["scope"],
            key=data["key"],
            value=data["value"],
            version=int(data["version"]),
            writer=data["writer"],
            tags=frozenset(data.get("tags", ())),
            embedding=tuple(float(x) for x in embedding) if embedding is not None else None,
            priority=int(data.get("priority", 0)),
        )


@dataclass(frozen=True)
class StagedWrite:
    """A write a store prepares: replace ``expected_version`` with ``entry``.

    ``expected_version`` is 0 when the writer expects the key to be absent.
    """

    expected_version: int
    entry: Entry
    #: Not compared: two staged writes are equal when they write the same entry.
    note: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.entry.version != self.expected_version + 1:
            raise ValueError(
                f"a write of {self.entry.scope!r}/{self.entry.key!r} over version "
                f"{self.expected_version} must create version {self.expected_version + 1}, "
                f"not {self.entry.version}"
            )

    @property
    def address(self) -> tuple[str, str]:
        return self.entry.address


def check_json_value(value: object, *, where: str = "value") -> None:
    """Raise TypeError unless ``value`` is a JSON value that survives a round trip."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value}, which JSON cannot represent")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json_value(item, where=f"{where}[{index}]")
        return
    if isinstance(value, Mapping):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{where} has the key {name!r}; JSON object keys must be strings")
            check_json_value(item, where=f"{where}[{name!r}]")
        return
    raise TypeError(f"{where} is a {type(value).__name__}, which is not a JSON value")


def normalise_json(value: JSONValue) -> JSONValue:
    """Return ``value`` as it reads back from JSON: tuples become lists, mappings dicts."""
    check_json_value(value)
    return json.loads(json.dumps(value))
