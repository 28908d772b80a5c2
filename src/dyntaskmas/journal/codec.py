"""JSON payloads for engine events and task specs, and back.

Owns the journal's payload format, so the store deals in plain JSON only. JSON has
no tuples or sets, but a :class:`TaskSpec`'s ``meta`` may hold tuples (a plan
task's ``inherit``) and code compares them as tuples, so a tuple is written
as ``{"$tuple": [...]}`` and read back as one. ``tags`` is written as a
sorted list. Payloads hold only what the events hold: the prompts of model
calls (``LLMCallFinished.messages``), never an endpoint key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, fields
from typing import Any

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.observe.events import EVENT_TYPES, Event, GraphChanged

_TUPLE_KEY = "$tuple"


def encode_value(value: Any) -> Any:
    """Return ``value`` as JSON-ready data, tuples tagged so they read back as tuples."""
    if isinstance(value, tuple):
        return {_TUPLE_KEY: [encode_value(item) for item in value]}
    if isinstance(value, (list, frozenset, set)):
        items = sorted(value) if isinstance(value, (frozenset, set)) else value
        return [encode_value(item) for item in items]
    if isinstance(value, Mapping):
        return {str(key): encode_value(item) for key, item in value.items()}
    return value


def decode_value(value: Any) -> Any:
    """Invert :func:`encode_value` (sets come back as lists)."""
    if isinstance(value, list):
        return [decode_value(item) for item in value]
    if isinstance(value, dict):
        if set(value) == {_TUPLE_KEY}:
            return tuple(decode_value(item) for item in value[_TUPLE_KEY])
        return {key: decode_value(item) for key, item in value.items()}
    return value


def encode_spec(spec: TaskSpec) -> dict[str, Any]:
    return {
        "id": spec.id,
        "description": spec.description,
        "role": spec.role,
        "depends_on": list(spec.depends_on),
        "kind": spec.kind,
        "cost_s": spec.cost_s,
        "output_tokens": spec.output_tokens,
        "tags": sorted(spec.tags),
        "depth": spec.depth,
        "parent": spec.parent,
        "meta": encode_value(spec.meta),
    }


def decode_spec(data: Mapping[str, Any]) -> TaskSpec:
    return TaskSpec(
        id=data["id"],
        description=data["description"],
        role=data["role"],
        depends_on=tuple(data["depends_on"]),
        kind=data["kind"],
        cost_s=float(data["cost_s"]),
        output_tokens=int(data["output_tokens"]),
        tags=frozenset(data["tags"]),
        depth=int(data["depth"]),
        parent=data["parent"],
        meta=decode_value(data["meta"]),
    )


def encode_event(event: Event) -> dict[str, Any]:
    """Return the payload of ``event``: its fields but ``run_id`` and ``at_s``, JSON-ready."""
    if isinstance(event, GraphChanged):
        return {
            "added": [encode_spec(spec) for spec in event.added],
            "edges_added": [list(edge) for edge in event.edges_added],
            "cancelled": list(event.cancelled),
            "reason": event.reason,
            "edges_removed": [list(edge) for edge in event.edges_removed],
            "cancel_requested": list(event.cancel_requested),
        }
    payload = asdict(event)
    del payload["run_id"], payload["at_s"]
    return {key: encode_value(value) for key, value in payload.items()}


def decode_event(kind: str, run_id: str, at_s: float, payload: Mapping[str, Any]) -> Event:
    """Rebuild the event that :func:`encode_event` wrote; ``kind`` is its class name."""
    if kind == "GraphChanged":
        return GraphChanged(
            run_id,
            at_s,
            tuple(decode_spec(item) for item in payload["added"]),
            tuple((edge[0], edge[1]) for edge in payload["edges_added"]),
            tuple(payload["cancelled"]),
            payload["reason"],
            # Journals written before these keys existed have neither.
            edges_removed=tuple((edge[0], edge[1]) for edge in payload.get("edges_removed", [])),
            cancel_requested=tuple(payload.get("cancel_requested", [])),
        )
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"unknown event kind {kind!r} in the journal")
    # A field added to an event later has a default, which journals written
    # before it existed get.
    names = [
        f.name
        for f in fields(cls)
        if f.name not in ("run_id", "at_s") and (f.name in payload or f.default is MISSING)
    ]
    values = {name: decode_value(payload[name]) for name in names}
    # Tuple-typed fields (a failure's cancelled ids) were written as tagged tuples.
    return cls(run_id=run_id, at_s=at_s, **values)
