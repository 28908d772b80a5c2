"""Follow-up subtasks that a work agent asks for, over real HTTP on a scripted server."""

from __future__ import annotations

import json

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.followups import FollowUpLimits, parse_work_output
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest

from .harness import ROLE, ROLES, end_of, records, scripted_model, start_of, step

REQUEST = "Compare three rivers"
SYNTHESIS_MARK = "Final answer:"


def engine_with_follow_ups(
    model: OpenAIChatModel, agents: int, limits: FollowUpLimits, **config: object
) -> Engine:
    return Engine(
        AgentPool(build_agents(agents, ROLES, {"scripted": model})),
        config=EngineConfig(roles=ROLES, follow_ups=limits, **config),  # type: ignore[arg-type]
    )


def follow_up(item_id: str, description: str, *depends_on: str) -> dict[str, object]:
    return {"id": item_id, "description": description, "role": ROLE, "depends_on": list(depends_on)}


def task_line(request: ScriptedRequest) -> str:
    for line in request.last_user_text.splitlines():
        if line.startswith("Your task: "):
            return line.removeprefix("Your task: ")
    return ""


async def test_three_follow_ups_run_in_parallel() -> None:
    """``research`` asks for a, b and c; c needs a. a and b overlap; the answer sees all three.

    research --> (a, b, c) --> answer       a --> c
    """
    follow_ups = [
        follow_up("a", "Find the Nile's length"),
        follow_up("b", "Find the Amazon's length"),
        follow_up("c", "Compare the Nile with the Yangtze", "a"),
    ]

    def handler(request: ScriptedRequest) -> ScriptedReply:
        if SYNTHESIS_MARK in request.last_user_text:
            return ScriptedReply(text="the answer")
        task = task_line(request)
        if task == "Step research":
            body = {"answer": "research done", "follow_ups": follow_ups}
            return ScriptedReply(text=json.dumps(body))
        return ScriptedReply(
            text=json.dumps({"answer": f"result of {task}", "follow_ups": []}), delay_s=0.2
        )

    limits = FollowUpLimits(max_per_task=4, max_per_run=8)
    async with scripted_model(handler) as (server, model):
        engine = engine_with_follow_ups(model, 4, limits)
        result = await engine.run_graph(
            [
                step("research"),
                TaskSpec(
                    id="answer",
                    description="Answer",
                    kind="synthesize",
                    role=ROLE,
                    depends_on=("research",),
                ),
            ],
            request=REQUEST,
        )

    tasks = records(result)
    assert result.status == "succeeded"
    assert [t for t in tasks if t.startswith("research.f")] == [
        "research.f1",
        "research.f2",
        "research.f3",
    ]
    a, b, c = tasks["research.f1"], tasks["research.f2"], tasks["research.f3"]
    assert tasks["research"].output == "research done"
    # Independent follow-ups overlap; the dependent one starts after its dependency.
    assert start_of(a) < end_of(b)
    assert start_of(b) < end_of(a)
    assert start_of(c) >= end_of(a)
    assert set(tasks["answer"].depends_on) == {
        "research",
        *("research.f1", "research.f2", "research.f3"),
    }
    synthesis = [call for call in server.calls if SYNTHESIS_MARK in call.request.last_user_text]
    assert len(synthesis) == 1
    prompt = synthesis[0].request.last_user_text
    for description in (
        "Find the Nile's length",
        "Find the Amazon's length",
        "Compare the Nile with the Yangtze",
    ):
        assert f"result of {description}" in prompt
    # Work calls asked for the work-output schema; the synthesis call did not.
    research_call = next(c for c in server.calls if task_line(c.request) == "Step research")
    assert research_call.request.response_format is not None
    assert synthesis[0].request.response_format is None


async def test_invalid_follow_ups_are_dropped_with_a_note() -> None:
    """A cycle among follow-ups adds nothing; the answer is kept."""
    cyclic = [follow_up("a", "Find x", "b"), follow_up("b", "Find y", "a")]

    def handler(request: ScriptedRequest) -> str:
        return json.dumps({"answer": "only answer", "follow_ups": cyclic})

    async with scripted_model(handler) as (server, model):
        engine = engine_with_follow_ups(model, 2, FollowUpLimits())
        result = await engine.run_graph([step("only")])

    assert [t.id for t in result.tasks] == ["only"]
    assert result.answer == "only answer"
    assert len(server.calls) == 1
    assert any("cycle" in note and "'only'" in note for note in result.notes)


async def test_plain_text_output_has_no_follow_ups() -> None:
    async with scripted_model(lambda request: "just text") as (server, model):
        engine = engine_with_follow_ups(model, 1, FollowUpLimits())
        result = await engine.run_graph([step("only")])

    assert result.answer == "just text"
    assert len(result.tasks) == 1
    assert len(server.calls) == 1


async def test_follow_ups_stop_at_the_run_cap() -> None:
    """Each step asks for two more; the run allows three follow-ups in all."""

    def handler(request: ScriptedRequest) -> str:
        task = task_line(request)
        more = [follow_up("x", f"Extend {task} one"), follow_up("y", f"Extend {task} two")]
        return json.dumps({"answer": f"did {task}", "follow_ups": more})

    limits = FollowUpLimits(max_per_task=2, max_per_run=3, max_depth=5)
    async with scripted_model(handler) as (server, model):
        engine = engine_with_follow_ups(model, 2, limits)
        result = await engine.run_graph([step("root")])

    follow_up_ids = [t.id for t in result.tasks if ".f" in t.id and t.kind == "work"]
    assert len(follow_up_ids) == 3
    assert len(server.calls) == 4
    assert all(t.state == "done" for t in result.tasks)
    assert any("the run allows 3 in all" in note for note in result.notes)


def test_cut_json_output_keeps_answer() -> None:
    text = '{"answer": "The Nile is 6650 km", "follow_ups": [{"id": "f1", "descr'

    output = parse_work_output(text, roles=ROLES, max_per_task=4)

    assert output.answer == "The Nile is 6650 km"
    assert output.follow_ups == ()
    assert output.problems == ("the output was cut off, so any follow-ups in it were dropped",)
