"""Re-planning a failed task, a bounded number of times, over real HTTP."""

from __future__ import annotations

import json

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import PLANNER_ROLE, Engine, EngineConfig
from dyntaskmas.engine.replan import replan_round
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.planning.planner import PlanLimits, Planner

from .harness import ROLE, ROLES, records, scripted_model, step

REQUEST = "Answer the question"
SYNTHESIS_MARK = "Final answer:"
ERROR = "the source for step a is offline"


def engine(model: OpenAIChatModel, max_replans: int) -> Engine:
    agents = build_agents(2, [*ROLES, PLANNER_ROLE], {"scripted": model})
    return Engine(
        AgentPool(agents),
        planner=Planner(model, roles=ROLES),
        config=EngineConfig(roles=ROLES, max_replans=max_replans),
    )


def graph() -> list[TaskSpec]:
    """a --> b --> answer"""
    return [
        step("a"),
        step("b", "a"),
        TaskSpec(
            id="answer", description="Answer", role=ROLE, kind="synthesize", depends_on=("b",)
        ),
    ]


class Server:
    """Fails step a and, while ``replacement_fails``, the replacement too."""

    def __init__(self, *, replacement_fails: bool) -> None:
        self.replacement_fails = replacement_fails
        self.plan_prompts: list[str] = []

    def __call__(self, request: ScriptedRequest) -> ScriptedReply:
        text = request.last_user_text
        if request.response_format is not None:
            self.plan_prompts.append(text)
            subtask = {
                "id": "s1",
                "description": "Find the fact from another source",
                "role": ROLE,
                "depends_on": [],
                "atomic": True,
                "cost": "small",
                "output_size": "short",
            }
            return ScriptedReply(text=json.dumps({"subtasks": [subtask]}))
        if SYNTHESIS_MARK in text:
            return ScriptedReply(text="answer: " + text.rsplit("\n\n", 2)[-2])
        if "Your task: Step a" in text:
            return ScriptedReply(status=400, error_message=ERROR)
        if "Your task: Find the fact from another source" in text:
            if self.replacement_fails:
                return ScriptedReply(status=400, error_message="the other source is offline too")
            return ScriptedReply(text="fact from another source")
        return ScriptedReply(text="b done")


async def test_replacement_feeds_dependents() -> None:
    server_logic = Server(replacement_fails=False)
    async with scripted_model(server_logic) as (server, model):
        result = await engine(model, max_replans=1).run_graph(graph(), request=REQUEST)

    tasks = records(result)
    assert result.status == "succeeded"
    assert tasks["a"].state == "failed"
    assert ERROR in (tasks["a"].error or "")
    # The plan prompt carried the error; the replacement ran and fed b.
    assert len(server_logic.plan_prompts) == 1
    assert ERROR in server_logic.plan_prompts[0]
    assert tasks["a.r1.1"].output == "fact from another source"
    assert tasks["b"].depends_on == ("a.r1",)
    (b_call,) = [c for c in server.calls if "Your task: Step b" in c.request.last_user_text]
    assert "[a.r1.1] Find the fact from another source\nfact from another source" in (
        b_call.request.last_user_text
    )
    assert tasks["b"].output == "b done"
    assert any("re-planned as 'a.r1'" in note for note in result.notes)
    assert not server.handler_errors


async def test_failed_replacement_cancels_descendants() -> None:
    server_logic = Server(replacement_fails=True)
    async with scripted_model(server_logic) as (server, model):
        result = await engine(model, max_replans=1).run_graph(graph(), request=REQUEST)

    tasks = records(result)
    assert result.status == "failed"
    assert tasks["a.r1.1"].state == "failed"
    for cancelled in ("a.r1", "b", "answer"):
        assert tasks[cancelled].state == "cancelled"
        assert "'a.r1.1'" in (tasks[cancelled].error or "")
    # One re-plan only: the replacement's failure was not planned again.
    assert len(server_logic.plan_prompts) == 1
    assert not any(t.startswith("a.r1.1.r") for t in tasks)
    assert len(server.calls) == 3  # a, the re-plan, a.r1.1


async def test_without_replans_a_failure_cancels_at_once() -> None:
    server_logic = Server(replacement_fails=False)
    async with scripted_model(server_logic) as (server, model):
        result = await engine(model, max_replans=0).run_graph(graph(), request=REQUEST)

    assert result.status == "failed"
    assert server_logic.plan_prompts == []
    assert records(result)["b"].state == "cancelled"
    assert len(server.calls) == 1


def test_replan_round_counts_chain() -> None:
    assert replan_round("t.1") == 0
    assert replan_round("t.1.r1.2") == 1
    assert replan_round("t.1.r1.2.r2.1") == 2


async def test_planner_limited_to_one_level_does_not_replan() -> None:
    """With max_depth 1 the planner cannot plan a replacement, so the failure stands."""
    server_logic = Server(replacement_fails=False)
    async with scripted_model(server_logic) as (server, model):
        agents = build_agents(2, [*ROLES, PLANNER_ROLE], {"scripted": model})
        planner = Planner(model, roles=ROLES, limits=PlanLimits(max_depth=1))
        config = EngineConfig(roles=ROLES, max_replans=2)
        result = await Engine(AgentPool(agents), planner=planner, config=config).run_graph(
            graph(), request=REQUEST
        )

    assert result.status == "failed"
    assert server_logic.plan_prompts == []
    assert len(server.calls) == 1
