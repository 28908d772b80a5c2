"""Tests of Planner against a fake ChatModel driven by a handler function."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from dyntaskmas.errors import ConfigError, InvalidPlanError, PlanError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage, Completion, Usage
from dyntaskmas.planning import PlanLimits, Planner, PlanOutcome, sink_ids

ROLES = {"researcher": "finds one fact", "writer": "combines results into an answer"}
REQUEST = "Which desert is larger, the Sahara or the Gobi?"


@dataclass(frozen=True)
class Call:
    messages: tuple[ChatMessage, ...]
    max_tokens: int
    temperature: float
    json_schema: Mapping[str, Any] | None


Handler = Callable[[Call], "str | tuple[str, str]"]


@dataclass
class FakeChatModel:
    """A ChatModel whose completions come from ``handler``; it records every call.

    The handler returns the text, or the text and a finish reason.
    """

    handler: Handler
    calls: list[Call] = field(default_factory=list)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
    ) -> Completion:
        call = Call(tuple(messages), max_tokens, temperature, json_schema)
        self.calls.append(call)
        answer = self.handler(call)
        text, finish_reason = answer if isinstance(answer, tuple) else (answer, "stop")
        return Completion(
            text=text,
            usage=Usage(prompt_tokens=100, completion_tokens=len(text) // 4),
            model="fake",
            finish_reason=finish_reason,
            latency_s=0.01,
        )


def scripted(*answers: str | tuple[str, str]) -> FakeChatModel:
    """A fake that gives ``answers`` in order, one per call."""
    remaining = list(answers)
    return FakeChatModel(lambda call: remaining.pop(0))


def plan_json(*subtasks: dict[str, Any]) -> str:
    return json.dumps({"subtasks": list(subtasks)})


def subtask(
    label: str,
    description: str,
    depends_on: Sequence[str] = (),
    *,
    role: str = "researcher",
    atomic: bool = True,
    cost: str = "medium",
) -> dict[str, Any]:
    return {
        "id": label,
        "description": description,
        "role": role,
        "depends_on": list(depends_on),
        "atomic": atomic,
        "cost": cost,
        "output_size": "short",
    }


VALID = plan_json(
    subtask("s1", "Find the area of the Sahara"),
    subtask("s2", "Find the area of the Gobi"),
    subtask("s3", "Compare the two areas", ["s1", "s2"], role="writer"),
)
ROOT = TaskSpec(id="t", description=REQUEST, kind="plan")


def last_user_message(call: Call) -> str:
    assert call.messages[-1].role == "user"
    return call.messages[-1].content


async def plan_once(text: str, *, task: TaskSpec = ROOT) -> PlanOutcome:
    """Run one decomposition whose first output is ``text`` and must be accepted."""
    model = scripted(text)
    outcome = await Planner(model, roles=ROLES).decompose(REQUEST, task)
    assert len(model.calls) == 1
    return outcome


# --- accepted on the first call -----------------------------------------------------


async def test_valid_plan_becomes_specs() -> None:
    """t.1 and t.2 run in parallel, and t.3 joins them."""
    model = scripted(VALID)
    outcome = await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)

    assert [spec.id for spec in outcome.specs] == ["t.1", "t.2", "t.3"]
    assert outcome.specs[0].depends_on == ()
    assert outcome.specs[2].depends_on == ("t.1", "t.2")
    assert outcome.specs[2].role == "writer"
    assert outcome.repaired is False
    assert outcome.first_problems == ()
    assert len(outcome.completions) == 1
    assert len(model.calls) == 1


async def test_specs_carry_depth_parent_and_hints() -> None:
    spec = (await plan_once(VALID)).specs[0]
    assert spec.depth == 1
    assert spec.parent == "t"
    assert spec.description == "Find the area of the Sahara"
    assert spec.cost_s == 8.0
    assert spec.output_tokens == 64
    assert spec.meta == {"label": "s1", "atomic": True}


async def test_ids_follow_topological_order() -> None:
    text = plan_json(subtask("s1", "Use B", ["s2"]), subtask("s2", "Find B"))
    outcome = await plan_once(text)
    assert [spec.description for spec in outcome.specs] == ["Find B", "Use B"]
    assert outcome.specs[1].depends_on == ("t.1",)


async def test_sinks_are_specs_without_dependents() -> None:
    text = plan_json(
        subtask("s1", "Find A"), subtask("s2", "Find B"), subtask("s3", "Use A", ["s1"])
    )
    outcome = await plan_once(text)
    assert outcome.sink_ids == ("t.2", "t.3")
    assert sink_ids(outcome.specs) == ("t.2", "t.3")


async def test_non_atomic_subtask_planned_again() -> None:
    text = plan_json(subtask("s1", "Survey the field", atomic=False), subtask("s2", "Find B"))
    kinds = [spec.kind for spec in (await plan_once(text)).specs]
    assert kinds == ["plan", "work"]


async def test_max_depth_stops_planning() -> None:
    text = plan_json(subtask("s1", "Survey the field", atomic=False), subtask("s2", "Find B"))
    task = TaskSpec(id="t.4", description="Survey deserts", kind="plan", depth=1, parent="t")
    outcome = await plan_once(text, task=task)
    assert [spec.kind for spec in outcome.specs] == ["work", "work"]
    assert [spec.id for spec in outcome.specs] == ["t.4.1", "t.4.2"]
    assert outcome.specs[0].depth == 2


async def test_cheap_subtask_forced_atomic() -> None:
    text = plan_json(
        subtask("s1", "Look it up", atomic=False, cost="small"), subtask("s2", "Find B")
    )
    spec = (await plan_once(text)).specs[0]
    assert spec.kind == "work"
    assert spec.meta["atomic"] is True


async def test_single_subtask_forced_atomic() -> None:
    spec = (
        await plan_once(plan_json(subtask("s1", "Do it all", atomic=False, cost="large")))
    ).specs[0]
    assert spec.kind == "work"


async def test_fixes_reported() -> None:
    text = plan_json(subtask("s1", "Find A", ["s1"]), subtask("s2", "Find B"))
    outcome = await plan_once(text)
    assert outcome.fixes == ("dropped the dependency of subtask 's1' on itself",)
    assert outcome.repaired is False


async def test_call_carries_schema_and_limits() -> None:
    model = scripted(VALID)
    limits = PlanLimits(max_subtasks=4, max_tokens=300, temperature=0.2)
    planner = Planner(model, roles=ROLES, limits=limits)
    await planner.decompose(REQUEST, ROOT)

    call = model.calls[0]
    assert call.json_schema == planner.schema
    assert call.max_tokens == 300
    assert call.temperature == 0.2
    assert len(planner.schema["properties"]["subtasks"]["anyOf"]) == 4
    assert planner.schema["$defs"]["role"]["enum"] == ["researcher", "writer"]
    assert planner.schema["$defs"]["description"]["pattern"].startswith("^(Find|Look up|")


def test_schema_options_follow_limits() -> None:
    limits = PlanLimits(max_subtasks=3, ordered_schema=False, description_verbs=())
    schema = Planner(scripted(), roles=ROLES, limits=limits).schema
    assert schema["properties"]["subtasks"]["maxItems"] == 3
    assert "pattern" not in schema["$defs"]["description"]


async def test_prompt_names_request_and_roles() -> None:
    model = scripted(VALID)
    await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)
    system, example_task, example_answer, user = model.calls[0].messages
    assert "- researcher: finds one fact" in system.content
    assert "- writer: combines results into an answer" in system.content
    assert example_task.role == "user"
    assert example_answer.role == "assistant"
    assert user.content == f"Task: {REQUEST}"


async def test_subtask_prompt_names_both() -> None:
    model = scripted(VALID)
    task = TaskSpec(id="t.1", description="Find the area of the Sahara", kind="plan", depth=1)
    await Planner(model, roles=ROLES).decompose(REQUEST, task)
    assert last_user_message(model.calls[0]) == (
        f"Overall request: {REQUEST}\nTask: Find the area of the Sahara"
    )


async def test_task_at_max_depth_rejected() -> None:
    task = TaskSpec(id="t.1.1", description="x", depth=2)
    with pytest.raises(ValueError, match="max_depth is 2"):
        await Planner(scripted(VALID), roles=ROLES).decompose(REQUEST, task)


# --- repair ----------------------------------------------------------------------------


async def test_cycle_repaired() -> None:
    cyclic = plan_json(
        subtask("s1", "Find A", ["s2"]), subtask("s2", "Find B", ["s1"]), subtask("s3", "Join")
    )
    model = scripted(cyclic, VALID)
    outcome = await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)

    repair = last_user_message(model.calls[1])
    assert "'s1' depends on 's2', 's2' depends on 's1'" in repair
    assert outcome.repaired is True
    assert len(outcome.specs) == 3
    assert len(outcome.completions) == 2
    assert outcome.first_problems == (
        "the dependencies form a cycle ('s1' depends on 's2', 's2' depends on 's1'); "
        "remove one of these dependencies",
    )


async def test_repair_call_samples() -> None:
    cyclic = plan_json(subtask("s1", "Find A", ["s2"]), subtask("s2", "Find B", ["s1"]))
    model = scripted(cyclic, VALID)
    limits = PlanLimits(temperature=0.0, repair_temperature=0.5)
    await Planner(model, roles=ROLES, limits=limits).decompose(REQUEST, ROOT)
    assert [call.temperature for call in model.calls] == [0.0, 0.5]


async def test_copied_example_rejected() -> None:
    copied = plan_json(
        subtask("s1", "Find the height of the Eiffel Tower"), subtask("s2", "Find the Gobi area")
    )
    model = scripted(copied, VALID)
    outcome = await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)
    assert outcome.first_problems == (
        "subtask 's1' is about 'Eiffel Tower' from the example, not about this task; "
        "describe work for this task",
    )
    assert outcome.repaired is True


async def test_example_name_in_request_accepted() -> None:
    text = plan_json(subtask("s1", "Find the height of the Eiffel Tower"), subtask("s2", "Find B"))
    model = scripted(text)
    request = "How tall is the Eiffel Tower in feet?"
    task = TaskSpec(id="t", description=request, kind="plan")
    outcome = await Planner(model, roles=ROLES).decompose(request, task)
    assert outcome.repaired is False


async def test_repair_extends_last_user_turn() -> None:
    cyclic = plan_json(subtask("s1", "Find A", ["s2"]), subtask("s2", "Find B", ["s1"]))
    model = scripted(cyclic, VALID)
    await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)

    first, repair = model.calls
    assert repair.messages[:-1] == first.messages[:-1]
    assert last_user_message(repair).startswith(f"Task: {REQUEST}\n\nA previous answer")
    assert cyclic not in last_user_message(repair)
    assert repair.json_schema == first.json_schema


async def test_repair_names_unknown_and_repeated_ids() -> None:
    broken = plan_json(
        subtask("s1", "Find A"),
        subtask("s1", "Find B"),
        subtask("s2", "Join", ["s1", "s5"], role="writer"),
    )
    model = scripted(broken, VALID)
    outcome = await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)

    repair = last_user_message(model.calls[1])
    assert "the id 's1' is used by items 1 and 2, which differ" in repair
    assert "subtask 's2' depends on 's5', which is not in the list" in repair
    assert outcome.repaired is True


async def test_cut_off_output_explained() -> None:
    runaway = '{"subtasks": [{"id": "s1", "description": "1' + "0" * 300
    model = scripted((runaway, "length"), VALID)
    limits = PlanLimits(max_tokens=128)
    outcome = await Planner(model, roles=ROLES, limits=limits).decompose(REQUEST, ROOT)

    repair = last_user_message(model.calls[1])
    assert "the output is not valid JSON" in repair
    assert "the output was cut off at the limit of 128 tokens" in repair
    assert outcome.repaired is True


async def test_invalid_twice_raises() -> None:
    cyclic = plan_json(subtask("s1", "Find A", ["s2"]), subtask("s2", "Find B", ["s1"]))
    model = scripted("not json", cyclic)

    with pytest.raises(InvalidPlanError) as caught:
        await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)

    error = caught.value
    assert isinstance(error, PlanError)
    assert error.task_id == "t"
    assert len(error.problems) == 1
    assert "'s1' depends on 's2'" in error.problems[0]
    assert len(error.completions) == 2
    assert "after one repair call" in str(error)
    assert len(model.calls) == 2


async def test_handler_sees_each_call() -> None:
    """A handler can choose its reply from the prompt, as a real model would."""

    def handler(call: Call) -> str:
        if "was rejected" in last_user_message(call):
            return VALID
        return plan_json(subtask("s1", "Find A", ["s9"]))

    model = FakeChatModel(handler)
    outcome = await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)
    assert outcome.repaired is True
    assert len(outcome.specs) == 3


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"max_subtasks": 1},
        {"max_subtasks": 51},
        {"max_depth": 0},
        {"max_tokens": 10},
        {"min_cost_s": -1.0},
        {"min_cost_s": float("nan")},
        {"max_description_chars": 5},
        {"temperature": 3.0},
        {"repair_temperature": -0.1},
        {"description_verbs": ("Find.*",)},
        {"description_verbs": ("Look up and then summarize",), "max_description_chars": 20},
        {"cost_s": {"small": 1.0, "medium": 2.0}},
        {"output_tokens": {"short": 1, "medium": 2, "long": -3}},
    ],
)
def test_bad_limits_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="PlanLimits"):
        PlanLimits(**changes)


@pytest.mark.parametrize(
    "roles",
    [{}, {" writer": "x"}, {"": "x"}, {"writer": "two\nlines"}],
)
def test_bad_roles_rejected(roles: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        Planner(scripted(), roles=roles)
