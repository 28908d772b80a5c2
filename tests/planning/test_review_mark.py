"""The optional ``review`` flag of a subtask: allowed only when asked for, and bounded."""

from __future__ import annotations

import json

from dyntaskmas.planning.schema import REVIEW_KEY, decomposition_schema
from dyntaskmas.planning.validate import parse_decomposition

ROLES = ["researcher", "writer"]


def plan_text(*reviews: object) -> str:
    subtasks = []
    for k, review in enumerate(reviews, start=1):
        item = {
            "id": f"s{k}",
            "description": f"Write part {k}",
            "role": "writer",
            "depends_on": [],
            "atomic": True,
            "cost": "small",
            "output_size": "short",
        }
        if review is not None:
            item["review"] = review
        subtasks.append(item)
    return json.dumps({"subtasks": subtasks})


def test_review_flags_beyond_the_limit_are_dropped() -> None:
    result = parse_decomposition(
        plan_text(True, True, True), roles=ROLES, max_subtasks=6, max_reviews=1
    )

    assert result.decomposition is not None
    assert [s.review for s in result.decomposition.subtasks] == [True, False, False]
    assert sum("dropped the review mark" in fix for fix in result.fixes) == 2


def test_review_key_is_ignored_when_reviews_are_off() -> None:
    result = parse_decomposition(plan_text(True, None), roles=ROLES, max_subtasks=6)

    assert result.decomposition is not None
    assert not any(s.review for s in result.decomposition.subtasks)
    assert any("ignored the unknown key 'review'" in fix for fix in result.fixes)


def test_review_that_is_not_a_boolean_is_a_problem() -> None:
    result = parse_decomposition(plan_text("yes", None), roles=ROLES, max_subtasks=6, max_reviews=2)

    assert result.decomposition is None
    assert any("'review' of subtask 's1' is a JSON string" in p for p in result.problems)


def test_schema_has_the_review_key_only_when_asked() -> None:
    on = decomposition_schema(ROLES, 3, review=True)
    off = decomposition_schema(ROLES, 3)

    assert REVIEW_KEY in on["$defs"]["subtask_s1"]["properties"]
    assert REVIEW_KEY not in off["$defs"]["subtask_s1"]["properties"]
    assert REVIEW_KEY not in on["$defs"]["subtask_s1"]["required"]
