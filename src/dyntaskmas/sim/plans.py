"""Deterministic plans for the simulated server's structured-output requests.

A chat request whose response format carries a decomposition schema (an
object with a ``subtasks`` property, as :mod:`dyntaskmas.planning.schema`
builds) gets a valid plan instead of filler text, so that a planned run
against the simulator has a real task graph: ``fanout - 1`` parallel
research subtasks and one subtask that combines them. The plan uses only
the roles and the number of subtasks the schema allows. Other structured
requests, and requests without a schema, are not plan requests.

    plan = plan_for_schema(schema, fanout=4)   # JSON text, or None
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

DEFAULT_PLAN_FANOUT = 4


def request_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the JSON schema of a chat request's response format, in either form, or None.

    OpenAI's form nests it as ``json_schema.schema``; llama-cpp-python's
    ``json_object`` form has it as ``schema``.
    """
    response_format = body.get("response_format")
    if not isinstance(response_format, Mapping):
        return None
    nested = response_format.get("json_schema")
    schema = nested.get("schema") if isinstance(nested, Mapping) else response_format.get("schema")
    return schema if isinstance(schema, Mapping) else None


def plan_for_schema(schema: Mapping[str, Any], *, fanout: int = DEFAULT_PLAN_FANOUT) -> str | None:
    """Return a decomposition that follows ``schema`` as JSON text, or None if it is no plan schema.

    ``fanout`` is the number of subtasks, capped by the schema's maximum; with
    one subtask allowed, the plan has one.
    """
    if fanout < 1:
        raise ValueError(f"fanout must be >= 1, got {fanout}")
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or "subtasks" not in properties:
        return None
    count = min(fanout, _max_subtasks(properties["subtasks"]))
    roles = _roles(schema)
    combiner = roles[-1] if len(roles) > 1 else roles[0]
    subtasks = [_subtask(k, f"Find part {k} of the request", roles[0], []) for k in range(1, count)]
    earlier = [f"s{k}" for k in range(1, count)]
    subtasks.append(_subtask(count, "Combine the parts found before", combiner, earlier))
    return json.dumps({"subtasks": subtasks})


def _subtask(k: int, description: str, role: str, depends_on: list[str]) -> dict[str, Any]:
    return {
        "id": f"s{k}",
        "description": description,
        "role": role,
        "depends_on": depends_on,
        "atomic": True,
        "cost": "small",
        "output_size": "short",
    }


def max_subtasks(schema: Mapping[str, Any]) -> int:
    """Return the most subtasks a decomposition schema allows (at least 1)."""
    properties = schema.get("properties")
    subtasks = properties.get("subtasks") if isinstance(properties, Mapping) else None
    return _max_subtasks(subtasks)


def _max_subtasks(subtasks: Any) -> int:
    """Return the most subtasks the schema's ``subtasks`` entry allows (at least 1)."""
    if isinstance(subtasks, Mapping):
        any_of = subtasks.get("anyOf")
        if isinstance(any_of, list) and any_of:
            # The ordered form lists one array schema per allowed length.
            return len(any_of)
        maximum = subtasks.get("maxItems")
        if isinstance(maximum, int) and maximum >= 1:
            return maximum
    return DEFAULT_PLAN_FANOUT


def _roles(schema: Mapping[str, Any]) -> list[str]:
    definitions = schema.get("$defs")
    role = definitions.get("role") if isinstance(definitions, Mapping) else None
    names = role.get("enum") if isinstance(role, Mapping) else None
    if isinstance(names, list) and names and all(isinstance(name, str) for name in names):
        return list(names)
    return ["worker"]
