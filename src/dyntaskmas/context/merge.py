"""Merge rules for parallel writes to one key (pure: no I/O, no clock).

A write carries the value its writer read (``base``) and the value it wants
(``incoming``). When the key still has the version the writer read, the
incoming value simply replaces it. When another update committed in between
(``current``), :func:`resolve` merges the three values:

- Whatever the writer left as it read it does not count as a write, so a
  writer that hands back the whole state with one field changed writes only
  that field.
- Mappings are merged field by field: fields changed by one side only are
  taken from that side, and a field both sides set to the same value is no
  conflict.
- What both sides changed differently goes to the key's merge policy:

  ``append``      lists: the items the writer added after what it read are
                  appended to the current list;
  ``union``       mappings merge recursively, lists become their ordered union;
  ``keep_first``  the value committed first stays, the later one is dropped;
  ``priority``    the writer with the higher priority wins, ties keep the first;
  no policy       the later update is rejected with :class:`WriteConflictError`
                  naming both writers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, get_args

from dyntaskmas.context.entries import JSONValue
from dyntaskmas.errors import MergeError, WriteConflictError

MergePolicy = Literal["append", "union", "keep_first", "priority"]
MERGE_POLICIES: Final[tuple[str, ...]] = get_args(MergePolicy)


class _Missing:
    """Marks a mapping field that is absent, distinct from a field set to None."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class MergeContext:
    """The writers of one merge: names for errors, priorities for the ``priority`` policy."""

    scope: str
    key: str
    writer: str
    other_writer: str
    policy: MergePolicy | None = None
    writer_priority: int = 0
    other_priority: int = 0


@dataclass(frozen=True)
class Resolution:
    """The value to commit, and what of the incoming write did not survive."""

    value: JSONValue
    #: False when the merged value equals the current one, so nothing needs writing.
    changed: bool
    #: Paths (``"."`` for the whole value, else ``field.sub``) whose incoming
    #: change the policy dropped in favour of the current value.
    dropped: tuple[str, ...] = ()


def resolve(
    base: JSONValue, current: JSONValue, incoming: JSONValue, context: MergeContext
) -> Resolution:
    """Merge ``incoming`` into ``current``, both derived from ``base``.

    ``base`` is None when the writer read no value; ``current`` is the value
    committed since. Raises :class:`WriteConflictError` when both changed
    the same thing and no policy applies, and :class:`MergeError` when the
    values do not fit the policy.
    """
    if context.policy is not None and context.policy not in MERGE_POLICIES:
        raise ValueError(
            f"merge policy {context.policy!r} is unknown; use one of {', '.join(MERGE_POLICIES)}"
        )
    dropped: list[str] = []
    if context.policy == "append":
        value = _append(base, current, incoming, context)
    else:
        value = _merge(base, current, incoming, context, path=(), dropped=dropped)
    return Resolution(value=value, changed=value != current, dropped=tuple(dropped))


def _merge(
    base: JSONValue | _Missing,
    current: JSONValue | _Missing,
    incoming: JSONValue | _Missing,
    context: MergeContext,
    *,
    path: tuple[str, ...],
    dropped: list[str],
) -> JSONValue | _Missing:
    if incoming == base:
        return current
    if current in (base, incoming):
        return incoming

    # Both sides changed this value, differently.
    if (
        isinstance(current, Mapping)
        and isinstance(incoming, Mapping)
        and (isinstance(base, Mapping) or base in _ABSENT)
    ):
        base_fields: Mapping[str, JSONValue] = base if isinstance(base, Mapping) else {}
        merged: dict[str, JSONValue] = {}
        for name in _ordered_union(current, incoming):
            field_value = _merge(
                base_fields.get(name, MISSING),
                current.get(name, MISSING),
                incoming.get(name, MISSING),
                context,
                path=(*path, name),
                dropped=dropped,
            )
            if not isinstance(field_value, _Missing):
                merged[name] = field_value
        return merged

    policy = context.policy
    if policy == "union" and isinstance(current, list) and isinstance(incoming, list):
        return [*current, *(item for item in incoming if item not in current)]
    if policy == "keep_first":
        dropped.append(_path_name(path))
        return current
    if policy == "priority":
        if context.writer_priority > context.other_priority:
            return incoming
        dropped.append(_path_name(path))
        return current
    if policy == "union":
        raise MergeError(
            context.scope,
            context.key,
            "union",
            f"both {context.writer!r} and {context.other_writer!r} set "
            f"{_describe(path)} to different values that are neither mappings nor lists",
        )
    raise WriteConflictError(
        context.scope,
        context.key,
        writer=context.writer,
        other_writer=context.other_writer,
        field=".".join(path) if path else None,
    )


def _append(
    base: JSONValue, current: JSONValue, incoming: JSONValue, context: MergeContext
) -> JSONValue:
    for name, value in (("current", current), ("incoming", incoming)):
        if value is not None and not isinstance(value, list):
            raise MergeError(
                context.scope,
                context.key,
                "append",
                f"the {name} value is a {type(value).__name__}, not a list",
            )
    read = base if isinstance(base, list) else []
    wanted = incoming if isinstance(incoming, list) else []
    # Only what the writer added after the items it read is new. A writer
    # that rewrote the list instead of extending it has all its items appended.
    added = wanted[len(read) :] if wanted[: len(read)] == read else wanted
    existing = current if isinstance(current, list) else []
    return [*existing, *added]


_ABSENT: Final[tuple[object, ...]] = (None, MISSING)


def _ordered_union(first: Mapping[str, JSONValue], second: Mapping[str, JSONValue]) -> list[str]:
    # The current value's field order first, so a merge does not reorder
    # fields that readers have already seen.
    return [*first, *(name for name in second if name not in first)]


def _path_name(path: tuple[str, ...]) -> str:
    return ".".join(path) if path else "."


def _describe(path: tuple[str, ...]) -> str:
    return f"field {'.'.join(path)!r}" if path else "the value"
