"""The simulator's plans follow the planner's own schema and pass its validator."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.engine.prompts import DEFAULT_ROLES
from dyntaskmas.planning.schema import decomposition_schema
from dyntaskmas.planning.validate import parse_decomposition
from dyntaskmas.sim.plans import plan_for_schema, request_schema


@given(
    max_subtasks=st.integers(min_value=1, max_value=50),
    fanout=st.integers(min_value=1, max_value=60),
    ordered=st.booleans(),
)
def test_plan_is_valid_for_schema(max_subtasks: int, fanout: int, ordered: bool) -> None:
    roles = list(DEFAULT_ROLES)
    schema = decomposition_schema(roles, max_subtasks, ordered=ordered)
    text = plan_for_schema(schema, fanout=fanout)
    assert text is not None
    result = parse_decomposition(text, roles=roles, max_subtasks=max_subtasks)
    assert result.decomposition is not None, result.problems
    subtasks = result.decomposition.subtasks
    assert len(subtasks) == min(fanout, max_subtasks)
    # The last subtask combines all the others.
    assert set(subtasks[-1].depends_on) == {s.label for s in subtasks[:-1]}


def test_other_schemas_get_no_plan() -> None:
    assert plan_for_schema({"type": "object", "properties": {"answer": {}}}) is None
    assert plan_for_schema({"type": "string"}) is None


def test_schema_read_from_both_response_formats() -> None:
    schema = {"type": "object"}
    openai_form = {"response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    llama_form = {"response_format": {"type": "json_object", "schema": schema}}
    assert request_schema(openai_form) == schema
    assert request_schema(llama_form) == schema
    assert request_schema({"response_format": {"type": "text"}}) is None
    assert request_schema({}) is None
    assert json.loads(plan_for_schema(decomposition_schema(["r"], 3)) or "{}")["subtasks"]
