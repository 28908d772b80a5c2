"""Tests of the decomposition JSON schema."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from dyntaskmas.planning.schema import (
    COST_SIZES,
    OUTPUT_SIZES,
    SUBTASK_KEYS,
    decomposition_schema,
    subtask_labels,
)

ROLES = ["researcher", "writer"]


def resolve(schema: Any, node: Any) -> Any:
    """Return the schema that a local ``$ref`` in ``node`` points at."""
    if "$ref" not in node:
        return node
    name = node["$ref"].removeprefix("#/$defs/")
    return schema["$defs"][name]


def ordered_items(schema: Any, count: int) -> list[Any]:
    """Return the subtask schemas of the alternative with ``count`` subtasks."""
    alternative = schema["properties"]["subtasks"]["anyOf"][count - 1]
    assert alternative["minItems"] == count
    assert alternative["maxItems"] == count
    return [resolve(schema, item) for item in alternative["prefixItems"]]


def test_labels_count_from_one() -> None:
    assert subtask_labels(3) == ("s1", "s2", "s3")


def test_ordered_offers_each_length() -> None:
    schema = decomposition_schema(ROLES, 4)
    alternatives = schema["properties"]["subtasks"]["anyOf"]
    assert [len(a["prefixItems"]) for a in alternatives] == [1, 2, 3, 4]
    assert all(a["items"] is False for a in alternatives)


def test_ordered_ids_fixed_by_position() -> None:
    items = ordered_items(decomposition_schema(ROLES, 3), 3)
    assert [item["properties"]["id"]["const"] for item in items] == ["s1", "s2", "s3"]


def test_ordered_dependencies_only_on_earlier() -> None:
    items = ordered_items(decomposition_schema(ROLES, 3), 3)
    depends_on = [item["properties"]["depends_on"] for item in items]
    assert depends_on[0]["maxItems"] == 0
    assert depends_on[1]["items"]["enum"] == ["s1"]
    assert depends_on[2]["items"]["enum"] == ["s1", "s2"]
    assert depends_on[2]["maxItems"] == 2


def test_unordered_lists_labels() -> None:
    schema = decomposition_schema(ROLES, 4, ordered=False)
    subtasks = schema["properties"]["subtasks"]
    item = resolve(schema, subtasks["items"])
    assert subtasks["minItems"] == 1
    assert subtasks["maxItems"] == 4
    assert item["properties"]["id"]["enum"] == ["s1", "s2", "s3", "s4"]
    assert item["properties"]["depends_on"]["items"]["enum"] == ["s1", "s2", "s3", "s4"]
    assert item["properties"]["depends_on"]["maxItems"] == 3


@pytest.mark.parametrize("ordered", [True, False])
def test_every_key_required_and_no_others(ordered: bool) -> None:
    schema = decomposition_schema(ROLES, 2, ordered=ordered)
    definitions = schema["$defs"]
    subtask = definitions["subtask_s2"] if ordered else definitions["subtask"]
    assert subtask["required"] == list(SUBTASK_KEYS)
    assert subtask["additionalProperties"] is False
    assert list(subtask["properties"]) == list(SUBTASK_KEYS)
    assert schema["required"] == ["subtasks"]
    assert schema["additionalProperties"] is False


def test_roles_and_sizes_are_enums() -> None:
    definitions = decomposition_schema(ROLES, 2)["$defs"]
    assert definitions["role"]["enum"] == ROLES
    assert definitions["cost"]["enum"] == list(COST_SIZES)
    assert definitions["output_size"]["enum"] == list(OUTPUT_SIZES)


def test_description_length_capped() -> None:
    description = decomposition_schema(ROLES, 2, max_description_chars=120)["$defs"]["description"]
    assert description["maxLength"] == 120
    assert "pattern" not in description


def test_description_verbs_pattern() -> None:
    schema = decomposition_schema(
        ROLES, 2, max_description_chars=40, description_verbs=["Find", "Look up"]
    )
    pattern = schema["$defs"]["description"]["pattern"]
    assert re.fullmatch(pattern, "Look up the height of K2")
    assert not re.fullmatch(pattern, "The height is 8611 m")
    assert not re.fullmatch(pattern, "Find " + "x" * 40)


@pytest.mark.parametrize(
    ("roles", "max_subtasks", "verbs"),
    [([], 3, ()), (["a", "a"], 3, ()), (["a"], 0, ()), (["a"], 51, ()), (["a"], 3, ["Find|"])],
)
def test_schema_rejects_bad_arguments(
    roles: list[str], max_subtasks: int, verbs: list[str]
) -> None:
    with pytest.raises(ValueError):
        decomposition_schema(roles, max_subtasks, description_verbs=verbs)


@pytest.mark.parametrize("ordered", [True, False])
def test_llama_cpp_builds_grammar(ordered: bool) -> None:
    """llama-cpp-python falls back to plain JSON when a schema fails to convert."""
    llama_grammar = pytest.importorskip("llama_cpp.llama_grammar")
    schema = decomposition_schema(
        ["researcher", "writer"], 6, ordered=ordered, description_verbs=["Find", "Compare"]
    )
    grammar = llama_grammar.json_schema_to_gbnf(json.dumps(schema))
    assert '"\\"researcher\\""' in grammar
    assert '"\\"s6\\""' in grammar
