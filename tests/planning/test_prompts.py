"""Tests of the decomposition and repair prompts."""

from __future__ import annotations

import pytest

from dyntaskmas.llm.types import ChatMessage
from dyntaskmas.planning.prompts import (
    MAX_REPAIR_PROBLEMS,
    copied_example_names,
    decomposition_messages,
    example_json,
    repair_messages,
    repair_prompt,
    system_prompt,
    user_prompt,
)
from dyntaskmas.planning.validate import parse_decomposition

ROLES = {"researcher": "finds one fact", "writer": "combines results into an answer"}


def test_system_prompt_lists_roles_and_limit() -> None:
    prompt = system_prompt(roles=ROLES, max_subtasks=5)
    assert "- researcher: finds one fact\n- writer: combines results into an answer" in prompt
    assert "Use 2 to 5 subtasks" in prompt


def test_example_is_valid_with_parallel_branches() -> None:
    """The worked example: s1 and s2 are independent, s3 joins them."""
    result = parse_decomposition(example_json(list(ROLES)), roles=list(ROLES), max_subtasks=3)
    assert result.decomposition is not None
    subtasks = result.decomposition.subtasks
    assert [s.depends_on for s in subtasks] == [(), (), ("s1", "s2")]
    assert [s.role for s in subtasks] == ["researcher", "researcher", "writer"]
    assert result.fixes == ()


def test_example_uses_only_given_roles() -> None:
    result = parse_decomposition(example_json(["analyst"]), roles=["analyst"], max_subtasks=3)
    assert result.decomposition is not None


def test_example_given_as_previous_turn() -> None:
    messages = decomposition_messages("Q?", None, roles=ROLES, max_subtasks=6)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2].content == example_json(list(ROLES))
    assert messages[3].content == "Task: Q?"


def test_example_left_out_under_small_limit() -> None:
    messages = decomposition_messages("Q?", None, roles=ROLES, max_subtasks=2)
    assert [m.role for m in messages] == ["system", "user"]


def test_user_prompt_names_subtask_and_request() -> None:
    assert user_prompt("Plan a trip", "Book the hotel") == (
        "Overall request: Plan a trip\nTask: Book the hotel"
    )


def test_user_prompt_skips_task_equal_to_request() -> None:
    assert user_prompt(" Plan a trip", "Plan a trip ") == "Task: Plan a trip"


def test_copied_example_name_found() -> None:
    found = copied_example_names("Find the height of the eiffel tower", "Which is taller, K2?")
    assert found == ["Eiffel Tower"]


def test_example_name_from_request_allowed() -> None:
    found = copied_example_names("Find the Eiffel Tower height", "How tall is the Eiffel Tower?")
    assert found == []


def test_repair_prompt_quotes_problems() -> None:
    prompt = repair_prompt(["subtask 's2' depends on 's9'", "the id 's1' is used twice"])
    assert "- subtask 's2' depends on 's9'\n- the id 's1' is used twice" in prompt
    assert prompt.endswith("Write a new answer without these problems.")


def test_repair_prompt_caps_problem_count() -> None:
    problems = [f"problem {k}" for k in range(MAX_REPAIR_PROBLEMS + 3)]
    prompt = repair_prompt(problems)
    assert f"- problem {MAX_REPAIR_PROBLEMS - 1}" in prompt
    assert f"- problem {MAX_REPAIR_PROBLEMS}" not in prompt
    assert "- and 3 more problems of the same kinds" in prompt


def test_repair_messages_extend_last_user_turn() -> None:
    first = [ChatMessage("system", "s"), ChatMessage("user", "Task: Q?")]
    messages = repair_messages(first, ["the decomposition has no subtasks"])
    assert messages[0] == first[0]
    assert len(messages) == 2
    assert messages[1].role == "user"
    assert messages[1].content == (
        "Task: Q?\n\nA previous answer to this task was rejected because:\n"
        "- the decomposition has no subtasks\n"
        "Write a new answer without these problems."
    )


def test_repair_messages_need_user_turn_last() -> None:
    with pytest.raises(ValueError):
        repair_messages([ChatMessage("system", "s")], ["x"])
