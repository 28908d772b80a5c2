"""Reflection loops (draft, critique, revise) unrolled into tasks, over real HTTP."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import PLANNER_ROLE, Engine, EngineConfig
from dyntaskmas.engine.reflection import reflection_loop
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.planning.planner import PlanLimits, Planner

from .harness import ROLE, ROLES, end_of, make_engine, records, scripted_model, start_of, step

SYNTHESIS_MARK = "Final answer:"


class LoopServer:
    """Writes drafts and revisions, and critiques that approve from a given round.

    ``approve_at`` maps a loop's task text to the first critique round that
    approves; a loop not listed is never approved.
    """

    def __init__(self, approve_at: dict[str, int], delay_s: float = 0.0) -> None:
        self.approve_at = approve_at
        self.delay_s = delay_s
        self.revisions: Counter[str] = Counter()
        self.critiques: Counter[str] = Counter()

    def __call__(self, request: ScriptedRequest) -> ScriptedReply:
        text = request.last_user_text
        if SYNTHESIS_MARK in text:
            return ScriptedReply(text="final: " + " | ".join(sorted(_drafts_in(text))))
        task = next(
            line.removeprefix("Your task: ")
            for line in text.splitlines()
            if line.startswith("Your task: ")
        )
        if task.startswith("Review the draft of: "):
            subject = task.removeprefix("Review the draft of: ").split(" Approve it")[0]
            self.critiques[subject] += 1
            round_ = self.critiques[subject]
            verdict = "approve" if round_ >= self.approve_at.get(subject, 10**6) else "revise"
            body = {"verdict": verdict, "reasons": f"round {round_} of {subject}"}
            return ScriptedReply(text=json.dumps(body), delay_s=self.delay_s)
        if task.startswith("Revise the draft of: "):
            subject = task.removeprefix("Revise the draft of: ").removesuffix(" Follow the review.")
            self.revisions[subject] += 1
            reply = f"<{subject} v{self.revisions[subject]}>"
            return ScriptedReply(text=reply, delay_s=self.delay_s)
        if task.startswith("Step "):
            return ScriptedReply(text=f"output of {task}", delay_s=self.delay_s)
        return ScriptedReply(text=f"<{task} v0>", delay_s=self.delay_s)


def _drafts_in(text: str) -> list[str]:
    return [part.split(">")[0] for part in text.split("<")[1:]]


async def test_critic_that_never_approves_stops_after_k_rounds() -> None:
    """K = 3: draft, then three critiques, each followed by a revision; v3 is the output."""
    server_logic = LoopServer(approve_at={})
    async with scripted_model(server_logic) as (server, model):
        result = await make_engine(model, 2).run_graph(
            reflection_loop("essay", "Write an essay", role=ROLE, rounds=3)
        )

    tasks = records(result)
    assert result.status == "succeeded"
    assert result.answer == "<Write an essay v3>"
    assert tasks["essay"].output == "<Write an essay v3>"
    assert server_logic.critiques["Write an essay"] == 3
    assert server_logic.revisions["Write an essay"] == 3
    assert len(server.calls) == 7
    assert sorted(tasks) == sorted(
        [
            "essay",
            "essay.draft",
            "essay.c1",
            "essay.v1",
            "essay.c2",
            "essay.v2",
            "essay.c3",
            "essay.v3",
        ]
    )
    # The third revision read the third critique.
    last_revision = server.calls[-1].request.last_user_text
    assert "round 3 of Write an essay" in last_revision
    # Every critique asked for the verdict schema.
    critiques = [
        c for c in server.calls if "Your task: Review the draft of" in c.request.last_user_text
    ]
    assert len(critiques) == 3
    assert all(c.request.response_format is not None for c in critiques)


async def test_approved_draft_ends_the_loop_early() -> None:
    server_logic = LoopServer(approve_at={"Write a poem": 2})
    async with scripted_model(server_logic) as (server, model):
        result = await make_engine(model, 1).run_graph(
            reflection_loop("poem", "Write a poem", role=ROLE, rounds=4)
        )

    assert result.answer == "<Write a poem v1>"
    assert len(server.calls) == 4  # draft, c1 (revise), v1, c2 (approve)
    assert "poem.v2" not in records(result)


async def test_two_interleaved_loops_both_reach_their_exits() -> None:
    """Both loops start from one research step and run side by side.

    research --> A loop (approved in round 2) --\\
            \\--> B loop (never approved, K=2) ---> answer
    """
    server_logic = LoopServer(approve_at={"Write part A": 2}, delay_s=0.05)
    specs = [
        step("research"),
        *reflection_loop("A", "Write part A", role=ROLE, rounds=3, depends_on=("research",)),
        *reflection_loop("B", "Write part B", role=ROLE, rounds=2, depends_on=("research",)),
        TaskSpec(
            id="answer", description="Answer", role=ROLE, kind="synthesize", depends_on=("A", "B")
        ),
    ]
    async with scripted_model(server_logic) as (server, model):
        result = await make_engine(model, 2).run_graph(specs, request="Write two parts")

    tasks = records(result)
    assert result.status == "succeeded"
    assert tasks["A"].output == "<Write part A v1>"
    assert tasks["B"].output == "<Write part B v2>"
    assert result.answer == "final: Write part A v1 | Write part B v2"
    # The loops interleave: each one's first critique overlaps the other's.
    a_c1, b_c1 = tasks["A.c1"], tasks["B.c1"]
    assert start_of(a_c1) < end_of(b_c1) and start_of(b_c1) < end_of(a_c1)
    assert not server.handler_errors


def test_loop_rounds_are_bounded() -> None:
    with pytest.raises(ValueError, match="rounds must be between 1 and 10"):
        reflection_loop("x", "Write", role=ROLE, rounds=0)


async def test_planner_marks_a_subtask_for_review() -> None:
    """The plan asks for review of s2: s2 becomes a loop whose exit feeds the answer."""

    def subtask(label: str, description: str, **extra: object) -> dict[str, object]:
        return {
            "id": label,
            "description": description,
            "role": ROLE,
            "depends_on": [],
            "atomic": True,
            "cost": "small",
            "output_size": "short",
            **extra,
        }

    logic = LoopServer(approve_at={"Write the summary": 1})
    plan = {
        "subtasks": [
            subtask("s1", "Find the facts"),
            subtask("s2", "Write the summary", review=True),
        ]
    }

    def handler(request: ScriptedRequest) -> ScriptedReply:
        schema = (request.response_format or {}).get("json_schema", {}).get("schema", {})
        if "subtasks" in schema.get("properties", {}):
            return ScriptedReply(text=json.dumps(plan))
        return logic(request)

    async with scripted_model(handler) as (server, model):
        pool = AgentPool(build_agents(2, [*ROLES, PLANNER_ROLE], {"scripted": model}))
        planner = Planner(model, roles=ROLES, limits=PlanLimits(max_reviews=1))
        engine = Engine(pool, planner=planner, config=EngineConfig(roles=ROLES))
        result = await engine.run("Summarise the facts")

    tasks = records(result)
    assert result.status == "succeeded"
    assert tasks["t.2"].kind == "join"
    assert tasks["t.2"].output == "<Write the summary v0>"
    assert tasks["t.2.c1"].output.startswith("approve")
    assert "t.2" in tasks["answer"].depends_on
    plan_call = server.calls[0].request
    assert "review" in plan_call.messages[0]["content"]
