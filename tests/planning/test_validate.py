"""Tests of parse_decomposition: every fix and every problem it reports."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dyntaskmas.planning.schema import DEFAULT_COST_S, DEFAULT_OUTPUT_TOKENS
from dyntaskmas.planning.validate import (
    Decomposition,
    ParseResult,
    ProposedSubtask,
    parse_decomposition,
)

ROLES = ("researcher", "writer")


def subtask(
    label: Any,
    description: Any = None,
    depends_on: Any = (),
    *,
    role: Any = "researcher",
    atomic: Any = True,
    cost: Any = "small",
    output_size: Any = "short",
) -> dict[str, Any]:
    return {
        "id": label,
        "description": description if description is not None else f"Do step {label}",
        "role": role,
        "depends_on": list(depends_on),
        "atomic": atomic,
        "cost": cost,
        "output_size": output_size,
    }


def parse(value: Any, *, max_subtasks: int = 6, raw: bool = False) -> ParseResult:
    text = value if raw else json.dumps({"subtasks": value})
    return parse_decomposition(text, roles=ROLES, max_subtasks=max_subtasks)


def accepted(result: ParseResult) -> Decomposition:
    assert result.problems == ()
    assert result.decomposition is not None
    return result.decomposition


def only_problem(result: ParseResult) -> str:
    assert result.decomposition is None
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


def dependencies(decomposition: Decomposition) -> dict[str, tuple[str, ...]]:
    return {s.label: s.depends_on for s in decomposition.subtasks}


# --- accepted output ------------------------------------------------------------


def test_parallel_branches_accepted() -> None:
    """s1 and s2 are independent, and s3 joins them.

    s1   s2
      \\  /
       s3
    """
    result = parse(
        [subtask("s1"), subtask("s2"), subtask("s3", depends_on=["s1", "s2"], role="writer")]
    )
    decomposition = accepted(result)
    assert decomposition.labels == ("s1", "s2", "s3")
    assert dependencies(decomposition)["s3"] == ("s1", "s2")
    assert result.fixes == ()


def test_fields_carried_over() -> None:
    decomposition = accepted(
        parse([subtask("s1", "Find the area", atomic=False, cost="large", output_size="long")])
    )
    assert decomposition.subtasks[0] == ProposedSubtask(
        label="s1",
        description="Find the area",
        role="researcher",
        depends_on=(),
        atomic=False,
        cost_s=DEFAULT_COST_S["large"],
        output_tokens=DEFAULT_OUTPUT_TOKENS["long"],
    )


def test_size_tables_apply() -> None:
    result = parse_decomposition(
        json.dumps({"subtasks": [subtask("s1", cost="medium", output_size="medium")]}),
        roles=ROLES,
        max_subtasks=3,
        cost_s={"small": 1.0, "medium": 4.5, "large": 9.0},
        output_tokens={"short": 10, "medium": 20, "long": 30},
    )
    only = accepted(result).subtasks[0]
    assert only.cost_s == 4.5
    assert only.output_tokens == 20


def test_dependency_on_later_item_reordered() -> None:
    """The model lists s1 before the s2 it depends on: s2 -> s1 -> s3."""
    decomposition = accepted(
        parse([subtask("s1", depends_on=["s2"]), subtask("s2"), subtask("s3", depends_on=["s1"])])
    )
    assert decomposition.labels == ("s2", "s1", "s3")


def test_independent_items_keep_model_order() -> None:
    decomposition = accepted(parse([subtask("s3"), subtask("s1"), subtask("s2")]))
    assert decomposition.labels == ("s3", "s1", "s2")


def test_ids_need_not_be_s_labels() -> None:
    decomposition = accepted(parse([subtask("fetch"), subtask("sum", depends_on=["fetch"])]))
    assert dependencies(decomposition)["sum"] == ("fetch",)


# --- fixes ------------------------------------------------------------------------


def test_self_dependency_dropped() -> None:
    result = parse([subtask("s1", depends_on=["s1"]), subtask("s2", depends_on=["s1", "s2"])])
    decomposition = accepted(result)
    assert dependencies(decomposition) == {"s1": (), "s2": ("s1",)}
    assert "dropped the dependency of subtask 's1' on itself" in result.fixes
    assert "dropped the dependency of subtask 's2' on itself" in result.fixes


def test_repeated_dependency_dropped() -> None:
    result = parse([subtask("s1"), subtask("s2", depends_on=["s1", "s1"])])
    assert dependencies(accepted(result))["s2"] == ("s1",)
    assert result.fixes == ("dropped the repeated dependency 's1' of subtask 's2'",)


def test_exact_repeat_with_same_id_dropped() -> None:
    result = parse([subtask("s1", "Find A"), subtask("s1", "Find A"), subtask("s2")])
    assert accepted(result).labels == ("s1", "s2")
    assert result.fixes == ("dropped item 2, a repeat of subtask 's1'",)


def test_repeat_under_other_id_merged() -> None:
    """s2 repeats s1 word for word; s3 depended on s2 and now depends on s1."""
    result = parse(
        [
            subtask("s1", "Find the depth of the Mariana Trench"),
            subtask("s2", "find the depth of  the Mariana Trench "),
            subtask("s3", depends_on=["s2"], role="writer"),
        ]
    )
    decomposition = accepted(result)
    assert decomposition.labels == ("s1", "s3")
    assert dependencies(decomposition)["s3"] == ("s1",)
    assert (
        "dropped subtask 's2', a repeat of subtask 's1', and pointed its dependents at 's1'"
        in result.fixes
    )


def test_merge_collapses_doubled_dependency() -> None:
    result = parse(
        [subtask("s1", "Find A"), subtask("s2", "Find A"), subtask("s3", depends_on=["s1", "s2"])]
    )
    assert dependencies(accepted(result))["s3"] == ("s1",)


def test_merge_repeats_until_stable() -> None:
    """s2 repeats s1, which makes s4 (on s2) a repeat of s3 (on s1)."""
    result = parse(
        [
            subtask("s1", "A"),
            subtask("s2", "A"),
            subtask("s3", "B", depends_on=["s1"]),
            subtask("s4", "B", depends_on=["s2"]),
            subtask("s5", "C", depends_on=["s4"]),
        ]
    )
    decomposition = accepted(result)
    assert decomposition.labels == ("s1", "s3", "s5")
    assert dependencies(decomposition)["s5"] == ("s3",)


def test_same_text_different_role_reported() -> None:
    problem = only_problem(parse([subtask("s1", "Find A"), subtask("s2", "find A", role="writer")]))
    assert problem == (
        "subtasks 's1', 's2' have the same description; "
        "give each subtask different work, or keep only one"
    )


def test_chain_of_same_text_reported() -> None:
    """The tiny model's loop: s2 -> s3 -> s4 all "Compare the ratios"."""
    result = parse(
        [
            subtask("s1", "Find A"),
            subtask("s2", "Compare the ratios", ["s1"]),
            subtask("s3", "Compare the ratios", ["s2"]),
            subtask("s4", "Compare the ratios", ["s3"]),
        ]
    )
    assert only_problem(result).startswith("subtasks 's2', 's3', 's4' have the same description")


def test_line_breaks_in_description_replaced() -> None:
    # json.dumps escapes control characters; put raw ones in, as a grammar may.
    text = json.dumps({"subtasks": [subtask("s1", "Find A")]}).replace("Find A", "Find\nA\tB")
    result = parse(text, raw=True)
    assert accepted(result).subtasks[0].description == "Find A B"
    assert result.fixes == (
        "replaced line breaks and control characters in the description of subtask 's1'",
    )


def test_repeats_do_not_count_against_limit() -> None:
    result = parse([subtask("s1", "A"), subtask("s2", "A"), subtask("s3", "A")], max_subtasks=1)
    assert accepted(result).labels == ("s1",)


def test_whitespace_stripped_and_reported() -> None:
    result = parse([subtask(" s1 ", "  Find A\n"), subtask("s2", depends_on=[" s1"])])
    decomposition = accepted(result)
    assert decomposition.subtasks[0].label == "s1"
    assert decomposition.subtasks[0].description == "Find A"
    assert dependencies(decomposition)["s2"] == ("s1",)
    assert "stripped whitespace from the id 's1'" in result.fixes
    assert "stripped whitespace from the description of subtask 's1'" in result.fixes
    assert "stripped whitespace from the dependency 's1' of subtask 's2'" in result.fixes


def test_numeric_ids_read_as_labels() -> None:
    result = parse([subtask(1), subtask(2, depends_on=[1])])
    assert dependencies(accepted(result)) == {"1": (), "2": ("1",)}
    assert "read the number 1 in the id of item 1 as the id '1'" in result.fixes


def test_role_case_fixed() -> None:
    result = parse([subtask("s1", role="Writer")])
    assert accepted(result).subtasks[0].role == "writer"
    assert result.fixes == ("read role 'Writer' of subtask 's1' as 'writer'",)


def test_size_case_fixed() -> None:
    result = parse([subtask("s1", cost="LARGE ")])
    assert accepted(result).subtasks[0].cost_s == DEFAULT_COST_S["large"]
    assert len(result.fixes) == 1


def test_unknown_key_ignored() -> None:
    item = subtask("s1") | {"priority": 3}
    result = parse([item])
    assert accepted(result).labels == ("s1",)
    assert result.fixes == ("ignored the unknown key 'priority' in subtask 's1'",)


def test_code_fence_removed() -> None:
    text = "```json\n" + json.dumps({"subtasks": [subtask("s1")]}) + "\n```"
    result = parse(text, raw=True)
    assert accepted(result).labels == ("s1",)
    assert result.fixes == ("removed the Markdown code fence around the JSON",)


def test_text_after_json_ignored() -> None:
    text = json.dumps({"subtasks": [subtask("s1")]}) + "\nI hope this helps."
    result = parse(text, raw=True)
    assert accepted(result).labels == ("s1",)
    assert result.fixes == ("ignored 18 characters after the JSON value",)


def test_bare_list_read_as_subtasks() -> None:
    result = parse(json.dumps([subtask("s1")]), raw=True)
    assert accepted(result).labels == ("s1",)
    assert result.fixes == ("read the top-level JSON list as the 'subtasks' list",)


def test_unknown_top_level_key_ignored() -> None:
    result = parse(json.dumps({"subtasks": [subtask("s1")], "notes": ""}), raw=True)
    assert accepted(result).labels == ("s1",)
    assert result.fixes == ("ignored the unknown top-level key 'notes'",)


# --- problems: the text and its outer shape ----------------------------------------


def test_invalid_json_quoted() -> None:
    problem = only_problem(parse('{"subtasks": [{"id": "s1", "description": }]}', raw=True))
    assert problem.startswith("the output is not valid JSON: Expecting value (character 42)")
    assert '"description": }' in problem


def test_runaway_id_reported_as_cut_json() -> None:
    """The model repeats digits in an id until max_tokens cuts it off."""
    text = '{"subtasks": [{"id": "1' + "0" * 400
    problem = only_problem(parse(text, raw=True))
    assert "Unterminated string" in problem
    assert '"1000000' in problem
    assert len(problem) < 200


def test_huge_number_reported() -> None:
    problem = only_problem(parse('{"subtasks": [{"id": 1' + "0" * 5000 + "}]}", raw=True))
    assert problem.startswith("the output is not usable JSON")


def test_deep_nesting_reported() -> None:
    problem = only_problem(parse("[" * 100_000, raw=True))
    assert "nested too deeply" in problem


def test_empty_output_reported() -> None:
    assert only_problem(parse("  \n", raw=True)).startswith("the output is empty")


@pytest.mark.parametrize(("text", "kind"), [('"plan"', "string"), ("3", "number")])
def test_top_level_scalar_reported(text: str, kind: str) -> None:
    problem = only_problem(parse(text, raw=True))
    assert problem == f"the output is a JSON {kind}, not an object with a 'subtasks' list"


def test_missing_subtasks_key_reported() -> None:
    problem = only_problem(parse('{"tasks": []}', raw=True))
    assert problem == "the JSON object has no 'subtasks' list (found 'tasks')"


def test_subtasks_not_list_reported() -> None:
    problem = only_problem(parse('{"subtasks": {"id": "s1"}}', raw=True))
    assert problem == "'subtasks' is a JSON object, not a list"


def test_no_subtasks_reported() -> None:
    problem = only_problem(parse([]))
    assert problem == "the decomposition has no subtasks; list at least one subtask"


# --- problems: one subtask ------------------------------------------------------------


def test_non_object_item_reported() -> None:
    problem = only_problem(parse([subtask("s1"), "s2"]))
    assert problem == "item 2 is a JSON string, not a subtask object"


def test_missing_keys_named() -> None:
    item = subtask("s1")
    del item["role"], item["cost"]
    problem = only_problem(parse([item]))
    assert problem == "subtask 's1' is missing 'role', 'cost'"


def test_missing_id_names_position() -> None:
    item = subtask("s1")
    del item["id"]
    problem = only_problem(parse([subtask("s0"), item]))
    assert problem == "item 2 is missing 'id'"


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("description", 7, "the description of subtask 's1' is a JSON number, not a string"),
        ("role", None, "'role' of subtask 's1' is a JSON null, not a string"),
        ("depends_on", "s2", "'depends_on' of subtask 's1' is a JSON string, not a list"),
        ("atomic", "yes", "'atomic' of subtask 's1' is a JSON string, not true or false"),
        ("cost", 3, "'cost' of subtask 's1' is a JSON number, not a string"),
        ("output_size", [], "'output_size' of subtask 's1' is a JSON list, not a string"),
    ],
)
def test_wrong_type_named(field: str, value: Any, expected: str) -> None:
    item = subtask("s1") | {field: value}
    assert only_problem(parse([item])) == expected


def test_id_of_wrong_type_reported() -> None:
    problem = only_problem(parse([subtask(["s1"])]))
    assert problem == "the id of item 1 is a JSON list, not a string"


def test_dependency_of_wrong_type_reported() -> None:
    problem = only_problem(parse([subtask("s1"), subtask("s2", depends_on=[True])]))
    assert problem == "a dependency of subtask 's2' is a JSON boolean, not a string"


def test_overlong_id_reported() -> None:
    problem = only_problem(parse([subtask("1" + "0" * 40, "Find A")]))
    assert problem.startswith("the id of item 1 is '1000000000")
    assert problem.endswith("use short ids such as 's1'")


def test_unknown_role_reported() -> None:
    problem = only_problem(parse([subtask("s1", role="chef")]))
    assert problem == "subtask 's1' has the unknown role 'chef'; use one of 'researcher', 'writer'"


def test_unknown_cost_reported() -> None:
    problem = only_problem(parse([subtask("s1", cost="huge")]))
    assert (
        problem == "subtask 's1' has the unknown cost 'huge'; use one of 'small', 'medium', 'large'"
    )


def test_empty_description_reported() -> None:
    problem = only_problem(parse([subtask("s1", "   ")]))
    assert problem.startswith("the description of subtask 's1' is empty")


def test_overlong_description_reported() -> None:
    result = parse_decomposition(
        json.dumps({"subtasks": [subtask("s1", "word " * 30)]}),
        roles=ROLES,
        max_subtasks=3,
        max_description_chars=100,
    )
    problem = only_problem(result)
    assert problem == (
        "the description of subtask 's1' has 149 characters, more than 100; shorten it"
    )


def test_looping_description_reported() -> None:
    """The tiny model's "1.1.1.1..." descriptions are a decoding loop, not work."""
    problem = only_problem(parse([subtask("s1", "Find 1.1.1.1.1.1.1.1.1.1.1.1.1.1.1")]))
    assert problem == (
        "the description of subtask 's1' repeats '1.' over and over; describe the work in words"
    )


def test_short_repetition_accepted() -> None:
    decomposition = accepted(parse([subtask("s1", "Divide 1000000 by 7")]))
    assert decomposition.subtasks[0].description == "Divide 1000000 by 7"


def test_description_without_words_reported() -> None:
    problem = only_problem(parse([subtask("s1", "1.2")]))
    assert problem == (
        "the description of subtask 's1' ('1.2') has no words; describe the work in words"
    )


# --- problems: ids, dependencies, graph ----------------------------------------------


def test_same_id_different_work_reported() -> None:
    problem = only_problem(parse([subtask("s1", "Find A"), subtask("s2"), subtask("s1", "Find B")]))
    assert problem == (
        "the id 's1' is used by items 1 and 3, which differ; give each subtask its own id"
    )


def test_same_id_on_broken_item_reported() -> None:
    result = parse([subtask("s1"), subtask("s1", role="chef")])
    assert result.decomposition is None
    assert "the id 's1' is used by items 1 and 2, which differ; give each subtask its own id" in (
        result.problems
    )


def test_unknown_dependency_named() -> None:
    problem = only_problem(parse([subtask("s1"), subtask("s2", depends_on=["s1", "s7"])]))
    assert problem == (
        "subtask 's2' depends on 's7', which is not in the list; use only ids of listed subtasks"
    )


def test_several_unknown_dependencies_named() -> None:
    problem = only_problem(parse([subtask("s1", depends_on=["s8", "s9"])]))
    assert problem.startswith("subtask 's1' depends on 's8', 's9', which are not in the list")


def test_dependency_on_broken_item_not_unknown() -> None:
    result = parse([subtask("s1", role="chef"), subtask("s2", depends_on=["s1"])])
    assert result.problems == (
        "subtask 's1' has the unknown role 'chef'; use one of 'researcher', 'writer'",
    )


def test_unknown_dependency_under_repeated_id_reported() -> None:
    result = parse([subtask("s1", "A", depends_on=["s9"]), subtask("s1", "B")])
    assert result.decomposition is None
    assert any("depends on 's9'" in problem for problem in result.problems)


def test_two_cycle_named() -> None:
    """s1 -> s2 -> s1, with s3 outside the cycle."""
    problem = only_problem(
        parse([subtask("s1", depends_on=["s2"]), subtask("s2", depends_on=["s1"]), subtask("s3")])
    )
    assert problem == (
        "the dependencies form a cycle ('s1' depends on 's2', 's2' depends on 's1'); "
        "remove one of these dependencies"
    )


def test_three_cycle_named() -> None:
    problem = only_problem(
        parse(
            [
                subtask("s1", depends_on=["s3"]),
                subtask("s2", depends_on=["s1"]),
                subtask("s3", depends_on=["s2"]),
            ]
        )
    )
    assert "'s1' depends on 's3', 's3' depends on 's2', 's2' depends on 's1'" in problem


def test_separate_cycles_each_named() -> None:
    result = parse(
        [
            subtask("a", depends_on=["b"]),
            subtask("b", depends_on=["a"]),
            subtask("c", depends_on=["d"]),
            subtask("d", depends_on=["c"]),
        ]
    )
    assert result.decomposition is None
    assert len(result.problems) == 2
    assert "'a' depends on 'b'" in result.problems[0]
    assert "'c' depends on 'd'" in result.problems[1]


def test_too_many_subtasks_reported() -> None:
    problem = only_problem(parse([subtask(f"s{k}") for k in range(1, 5)], max_subtasks=3))
    assert problem == (
        "the decomposition has 4 subtasks, more than the limit of 3; merge related subtasks"
    )


def test_several_problems_all_reported() -> None:
    result = parse(
        [
            subtask("s1", role="chef"),
            subtask("s2", depends_on=["s3"]),
            subtask("s3", depends_on=["s2"]),
            subtask("s4", depends_on=["s9"]),
        ]
    )
    assert result.decomposition is None
    assert len(result.problems) == 3


def test_tiny_model_output_shapes() -> None:
    """Shapes measured from SmolLM2-135M: repeats, self- and forward dependencies."""
    result = parse(
        [
            subtask("s1", "Find the area of the Sahara Desert", depends_on=["s1", "s2"]),
            subtask("s2", "Find the area of the Kalahari Desert"),
            subtask("s2", "Find the area of the Kalahari Desert"),
            subtask("s3", "Compare the areas", depends_on=["s1", "s2", "s2"], role="writer"),
        ]
    )
    decomposition = accepted(result)
    assert decomposition.labels == ("s2", "s1", "s3")
    assert dependencies(decomposition)["s1"] == ("s2",)
    assert len(result.fixes) == 3


# --- the result types ------------------------------------------------------------------


def test_result_needs_decomposition_or_problems() -> None:
    with pytest.raises(ValueError):
        ParseResult(None, (), ())


def test_decomposition_rejects_dependency_on_later() -> None:
    first = ProposedSubtask("s1", "A", "researcher", ("s2",), True, 1.0, 10)
    second = ProposedSubtask("s2", "B", "researcher", (), True, 1.0, 10)
    with pytest.raises(ValueError):
        Decomposition((first, second))
