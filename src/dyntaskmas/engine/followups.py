"""Follow-up subtasks that a work agent asks for in its structured output.

This module owns the work-output schema, the validation of what a model
returned under it, and the graph delta that adds the follow-ups. It is pure:
no I/O, no clock. The executor asks for the schema, calls
:func:`parse_work_output` on the completion and applies
:func:`follow_up_delta` before the requesting task counts as done.

Work output, as JSON::

    {"answer": "...", "follow_ups": [
        {"id": "f1", "description": "Find X", "role": "researcher", "depends_on": []},
        {"id": "f2", "description": "Compare X and Y", "role": "analyst", "depends_on": ["f1"]}]}

Plain text is valid output too: it is the answer, with no follow-ups.
Model output is untrusted, so follow-ups are checked like a plan: at most
``max_per_task`` of them, short unique ids, non-empty descriptions, known
roles, dependencies only on other follow-ups of the same list, no cycle.
Any problem drops every follow-up of that output (the answer is kept) and
is reported as a note; nothing invalid reaches the graph.

Wiring: follow-up ``T.fk`` depends on the requesting task ``T`` and on the
follow-ups it names. Every follow-up feeds every pending dependent of
``T``, so all their outputs reach those tasks, and so the final answer;
independent follow-ups run in parallel. A task with no dependents gets a
join ``T.followed`` that collects ``T`` and its follow-ups, so a
ready-made graph still ends in one task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyntaskmas.graph.task import TaskSpec

#: meta key of a follow-up task: how many follow-up steps led to it (1 for
#: a follow-up of a planned task).
FOLLOW_UP_DEPTH = "follow_up_depth"
#: meta key: id of the task that asked for this follow-up.
REQUESTED_BY = "requested_by"

MAX_FOLLOW_UP_ID_CHARS = 24
MAX_FOLLOW_UP_DESCRIPTION_CHARS = 200
# Hard cap on the schema's list, whatever the configuration says.
MAX_FOLLOW_UPS_PER_TASK = 16

_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
# The start of a work output whose JSON was cut off: the answer string so far,
# up to its closing quote or to the end of the text.
_CUT_ANSWER = re.compile(r'\A\s*\{\s*"answer"\s*:\s*"((?:[^"\\]|\\.)*)(?:"|\Z)', re.DOTALL)


@dataclass(frozen=True)
class FollowUpLimits:
    """How many follow-ups a run may add.

    ``max_per_task`` bounds one output's list. ``max_per_run`` bounds the
    total over the run, and follow-ups beyond it are dropped with a note.
    ``max_depth`` bounds how many follow-up steps may chain: a follow-up of a
    follow-up is depth 2.
    """

    max_per_task: int = 4
    max_per_run: int = 16
    max_depth: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.max_per_task <= MAX_FOLLOW_UPS_PER_TASK:
            raise ValueError(
                f"max_per_task must be between 1 and {MAX_FOLLOW_UPS_PER_TASK}, "
                f"got {self.max_per_task}"
            )
        if self.max_per_run < 1:
            raise ValueError(f"max_per_run must be >= 1, got {self.max_per_run}")
        if self.max_depth < 1:
            raise ValueError(f"max_depth must be >= 1, got {self.max_depth}")


@dataclass(frozen=True)
class FollowUp:
    """One validated follow-up; ``depends_on`` holds ids of earlier follow-ups."""

    id: str
    description: str
    role: str
    depends_on: tuple[str, ...]


@dataclass(frozen=True)
class WorkOutput:
    """A work task's output: its answer, its follow-ups and what was wrong with them."""

    answer: str
    follow_ups: tuple[FollowUp, ...] = ()
    problems: tuple[str, ...] = ()


def work_output_schema(roles: Sequence[str], max_per_task: int) -> dict[str, Any]:
    """Return the JSON schema of a work output that may ask for follow-ups."""
    return {
        "type": "object",
        "properties": {
            "answer": {"type": "string"},
            "follow_ups": {
                "type": "array",
                "maxItems": max_per_task,
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "maxLength": MAX_FOLLOW_UP_ID_CHARS},
                        "description": {
                            "type": "string",
                            "maxLength": MAX_FOLLOW_UP_DESCRIPTION_CHARS,
                        },
                        "role": {"type": "string", "enum": list(roles)},
                        "depends_on": {
                            "type": "array",
                            "maxItems": max_per_task,
                            "items": {"type": "string", "maxLength": MAX_FOLLOW_UP_ID_CHARS},
                        },
                    },
                    "required": ["id", "description", "role", "depends_on"],
                },
            },
        },
        "required": ["answer", "follow_ups"],
    }


def follow_up_instructions(roles: Sequence[str], max_per_task: int) -> str:
    """Return the prompt paragraph that explains the work-output JSON."""
    return (
        'Reply with a JSON object: {"answer": your result as text, "follow_ups": a list}. '
        f"If your task needs more work that you cannot do yourself, list up to "
        f"{max_per_task} follow-up subtasks, each "
        '{"id": "f1", "description": "...", "role": one of '
        f"{', '.join(repr(role) for role in roles)}, "
        '"depends_on": ids of other follow-ups it needs}. '
        "Otherwise give an empty list."
    )


def parse_work_output(
    text: str, *, roles: Collection[str], max_per_task: int, allow_follow_ups: bool = True
) -> WorkOutput:
    """Read a work task's output ``text``; never raises.

    Text that is not a JSON object with a string ``answer`` is the answer as
    it is. With ``allow_follow_ups`` false, any follow-ups are dropped with a
    problem that says so.
    """
    value = _json_object(text)
    if value is None or not isinstance(value.get("answer"), str):
        cut = _answer_of_cut_output(text)
        if cut is not None:
            # The completion hit its token limit inside the JSON.
            return WorkOutput(
                answer=cut,
                problems=("the output was cut off, so any follow-ups in it were dropped",),
            )
        return WorkOutput(answer=text)
    answer = value["answer"]
    raw = value.get("follow_ups", [])
    if raw in (None, []):
        return WorkOutput(answer=answer)
    if not allow_follow_ups:
        return WorkOutput(
            answer=answer,
            problems=("the follow-ups were dropped: the follow-up depth limit is reached",),
        )
    follow_ups, problems = validate_follow_ups(raw, roles=roles, max_per_task=max_per_task)
    return WorkOutput(answer=answer, follow_ups=follow_ups, problems=problems)


def validate_follow_ups(
    raw: object, *, roles: Collection[str], max_per_task: int
) -> tuple[tuple[FollowUp, ...], tuple[str, ...]]:
    """Validate a raw ``follow_ups`` value; return the follow-ups or the problems.

    Exactly one of the two is non-empty unless ``raw`` is an empty list. The
    follow-ups come in an order where dependencies are first.
    """
    if not isinstance(raw, list):
        return (), (f"'follow_ups' is a {type(raw).__name__}, not a list",)
    if len(raw) > max_per_task:
        return (), (f"{len(raw)} follow-ups is more than the limit of {max_per_task}",)
    problems: list[str] = []
    items: list[FollowUp] = []
    seen: set[str] = set()
    for position, entry in enumerate(raw, start=1):
        item = _read_follow_up(entry, position, roles, problems)
        if item is None:
            continue
        if item.id in seen:
            problems.append(f"follow-up id {item.id!r} is used twice")
            continue
        seen.add(item.id)
        items.append(item)
    for item in items:
        for dependency in item.depends_on:
            if dependency not in seen:
                problems.append(
                    f"follow-up {item.id!r} depends on {dependency!r}, which is not in the list"
                )
    if problems:
        return (), tuple(problems)
    ordered = _dependencies_first(items)
    if ordered is None:
        return (), ("the follow-ups' dependencies form a cycle",)
    return ordered, ()


def follow_up_delta_specs(
    requester: TaskSpec,
    follow_ups: Sequence[FollowUp],
    *,
    dependents: Collection[str],
    cost_s: float,
) -> tuple[tuple[TaskSpec, ...], tuple[tuple[str, str], ...]]:
    """Return the specs and extra edges that add ``follow_ups`` of ``requester``.

    ``dependents`` are the requester's dependents that can still be rewired;
    every follow-up becomes a dependency of each. With no dependents, a
    join ``<requester>.followed`` ends the group.
    """
    depth = int(requester.meta.get(FOLLOW_UP_DEPTH, 0)) + 1
    graph_id = {item.id: f"{requester.id}.f{k}" for k, item in enumerate(follow_ups, start=1)}
    specs = [
        TaskSpec(
            id=graph_id[item.id],
            description=item.description,
            role=item.role,
            depends_on=(requester.id, *(graph_id[d] for d in item.depends_on)),
            cost_s=cost_s,
            depth=requester.depth,
            parent=requester.parent,
            meta={FOLLOW_UP_DEPTH: depth, REQUESTED_BY: requester.id},
        )
        for item in follow_ups
    ]
    ends = [graph_id[item.id] for item in follow_ups]
    if not dependents:
        specs.append(
            TaskSpec(
                id=f"{requester.id}.followed",
                description=f"Collect the results of {requester.id} and its follow-ups",
                role=requester.role,
                kind="join",
                cost_s=0.0,
                depends_on=(requester.id, *ends),
                depth=requester.depth,
                parent=requester.parent,
                meta={REQUESTED_BY: requester.id},
            )
        )
        return tuple(specs), ()
    return tuple(specs), tuple((end, dependent) for end in ends for dependent in dependents)


def follow_ups_reason(task_id: str) -> str:
    """Return the reason of the delta that adds the follow-ups of ``task_id``."""
    return f"follow-ups requested by {task_id}"


# --- helpers -------------------------------------------------------------------


def _json_object(text: str) -> dict[str, Any] | None:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    if not stripped.startswith("{"):
        return None
    try:
        value, _ = json.JSONDecoder(strict=False).raw_decode(stripped)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _answer_of_cut_output(text: str) -> str | None:
    """Return the answer string of JSON output cut off after it began, else None."""
    match = _CUT_ANSWER.match(text)
    if match is None:
        return None
    try:
        answer = json.loads(f'"{match.group(1)}"')
    except ValueError:
        return None
    return answer if isinstance(answer, str) and answer.strip() else None


def _read_follow_up(
    entry: object, position: int, roles: Collection[str], problems: list[str]
) -> FollowUp | None:
    if not isinstance(entry, dict):
        problems.append(f"follow-up {position} is not an object")
        return None
    raw_id = entry.get("id")
    if not isinstance(raw_id, str) or not _ID_PATTERN.match(raw_id.strip()):
        problems.append(f"follow-up {position} has no usable id (letters, digits, - or _)")
        return None
    item_id = raw_id.strip()
    if len(item_id) > MAX_FOLLOW_UP_ID_CHARS:
        problems.append(f"the id of follow-up {position} is longer than {MAX_FOLLOW_UP_ID_CHARS}")
        return None
    description = entry.get("description")
    if not isinstance(description, str) or not any(c.isalpha() for c in description):
        problems.append(f"follow-up {item_id!r} has no description in words")
        return None
    description = " ".join(description.split())
    if len(description) > MAX_FOLLOW_UP_DESCRIPTION_CHARS:
        problems.append(
            f"the description of follow-up {item_id!r} is longer than "
            f"{MAX_FOLLOW_UP_DESCRIPTION_CHARS} characters"
        )
        return None
    role = entry.get("role")
    if not isinstance(role, str) or role not in roles:
        problems.append(f"follow-up {item_id!r} has the unknown role {role!r}")
        return None
    raw_dependencies = entry.get("depends_on", [])
    if not isinstance(raw_dependencies, list) or not all(
        isinstance(d, str) for d in raw_dependencies
    ):
        problems.append(f"'depends_on' of follow-up {item_id!r} is not a list of ids")
        return None
    dependencies = tuple(dict.fromkeys(d.strip() for d in raw_dependencies if d.strip() != item_id))
    return FollowUp(item_id, description, role, dependencies)


def _dependencies_first(items: Sequence[FollowUp]) -> tuple[FollowUp, ...] | None:
    """Order ``items`` so that dependencies come first, else keep the listed order.

    Returns None when the dependencies form a cycle.
    """
    waiting: Mapping[str, set[str]] = {item.id: set(item.depends_on) for item in items}
    done: set[str] = set()
    ordered: list[FollowUp] = []
    remaining = list(items)
    while remaining:
        ready = [item for item in remaining if waiting[item.id] <= done]
        if not ready:
            return None
        first = ready[0]
        ordered.append(first)
        done.add(first.id)
        remaining.remove(first)
    return tuple(ordered)
