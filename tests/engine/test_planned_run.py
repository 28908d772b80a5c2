"""Planned runs: Engine.run with the real Planner, both calling a scripted server.

The handler distinguishes plan calls (which carry ``response_format``) from
work calls (whose prompt has a ``Your task:`` line) and from the synthesis
call (whose prompt starts with ``Request:``). Nested plan calls name the subtask
after the overall request, so their prompt starts with ``Overall request:``.
"""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import PLANNER_ROLE, Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.scripted import (
    RecordedCall,
    ScriptedLLMServer,
    ScriptedReply,
    ScriptedRequest,
)
from dyntaskmas.planning.planner import PlanLimits, Planner

from .harness import end_of, records, start_of

REQUEST = "Which is deeper, the Mariana Trench or the Puerto Rico Trench?"
ROLES = {"researcher": "finds one fact", "writer": "combines results into an answer"}
FINAL_ANSWER = "The Mariana Trench is deeper."
MARIANA = "Find the depth of the Mariana Trench"
PUERTO_RICO = "Find the depth of the Puerto Rico Trench"
PUERTO_RICO_SOURCES = "Look up the Puerto Rico Trench in an atlas"
PUERTO_RICO_SURVEY = "Look up the latest survey of the Puerto Rico Trench"


def subtask(
    label: str,
    description: str,
    *,
    depends_on: Sequence[str] = (),
    atomic: bool = True,
    cost: str = "small",
) -> dict[str, Any]:
    """Return one subtask object in the decomposition schema's format."""
    return {
        "id": label,
        "description": description,
        "role": "researcher",
        "depends_on": list(depends_on),
        "atomic": atomic,
        "cost": cost,
        "output_size": "short",
    }


def decomposition(*subtasks: dict[str, Any]) -> str:
    return json.dumps({"subtasks": list(subtasks)})


def result_text(description: str) -> str:
    """Return the text the server sends for the work task with this description."""
    return f"result of: {description}"


def work_description(request: ScriptedRequest) -> str | None:
    for line in request.last_user_text.splitlines():
        if line.startswith("Your task: "):
            return line.removeprefix("Your task: ")
    return None


def is_plan_call(call: RecordedCall) -> bool:
    return call.request.response_format is not None


def is_nested_plan_call(call: RecordedCall) -> bool:
    return is_plan_call(call) and call.request.last_user_text.startswith("Overall request:")


def is_answer_call(call: RecordedCall) -> bool:
    return not is_plan_call(call) and call.request.last_user_text.startswith("Request: ")


class PlanningHandler:
    """Replies to plan calls with fixed decompositions and to other calls with text."""

    def __init__(
        self,
        root_plan: str,
        nested_plan: str | None = None,
        *,
        nested_delay_s: float = 0.0,
        work_delay_s: float = 0.0,
    ) -> None:
        self.root_plan = root_plan
        self.nested_plan = nested_plan
        self.nested_delay_s = nested_delay_s
        self.work_delay_s = work_delay_s

    def __call__(self, request: ScriptedRequest) -> ScriptedReply:
        if request.response_format is not None:
            if request.last_user_text.startswith("Overall request:"):
                if self.nested_plan is None:
                    raise ValueError("this test expects no nested plan call")
                return ScriptedReply(text=self.nested_plan, delay_s=self.nested_delay_s)
            return ScriptedReply(text=self.root_plan)
        description = work_description(request)
        if description is not None:
            return ScriptedReply(text=result_text(description), delay_s=self.work_delay_s)
        return ScriptedReply(text=FINAL_ANSWER)


@asynccontextmanager
async def planned_engine(
    handler: PlanningHandler, *, agents: int = 3
) -> AsyncIterator[tuple[ScriptedLLMServer, Engine]]:
    """Run a scripted server and an engine whose agents and planner call it."""
    async with ScriptedLLMServer(handler) as server:
        endpoint = Endpoint(server.base_url, model=server.model, concurrency=16)
        async with OpenAIChatModel(endpoint, policy=RetryPolicy(), rng=random.Random(0)) as model:
            pool = AgentPool(build_agents(agents, [*ROLES, PLANNER_ROLE], {"scripted": model}))
            planner = Planner(model, roles=ROLES, limits=PlanLimits(max_subtasks=4, max_depth=2))
            yield server, Engine(pool, planner=planner, config=EngineConfig(roles=ROLES))


def answer_prompt(server: ScriptedLLMServer) -> str:
    answer_calls = [call for call in server.calls if is_answer_call(call)]
    assert len(answer_calls) == 1, f"expected one answer call, got {len(answer_calls)}"
    return answer_calls[0].request.last_user_text


def ids(result: RunResult) -> set[str]:
    return {record.id for record in result.tasks}


async def test_plan_runs_subtasks_in_parallel() -> None:
    """A plan of two independent subtasks runs both at once, then the answer.

    t.plan --> answer          before planning
    t.plan --> answer
    t.1 ------/                after: t.1 and t.2 feed the answer
    t.2 -----/
    """
    handler = PlanningHandler(
        decomposition(subtask("s1", MARIANA), subtask("s2", PUERTO_RICO)), work_delay_s=0.3
    )
    async with planned_engine(handler) as (server, engine):
        result = await engine.run(REQUEST)

    tasks = records(result)
    assert ids(result) == {"t.plan", "t.1", "t.2", "answer"}
    assert tasks["t.plan"].kind == "plan"
    assert tasks["t.1"].description == MARIANA
    assert tasks["t.2"].description == PUERTO_RICO
    assert start_of(tasks["t.1"]) >= end_of(tasks["t.plan"])
    assert start_of(tasks["t.1"]) < end_of(tasks["t.2"])
    assert start_of(tasks["t.2"]) < end_of(tasks["t.1"])
    assert set(tasks["answer"].depends_on) == {"t.plan", "t.1", "t.2"}
    assert start_of(tasks["answer"]) >= max(end_of(tasks["t.1"]), end_of(tasks["t.2"]))
    prompt = answer_prompt(server)
    assert result_text(MARIANA) in prompt
    assert result_text(PUERTO_RICO) in prompt
    assert result.answer == FINAL_ANSWER
    assert result.llm_calls == 4
    assert sum(1 for call in server.calls if is_plan_call(call)) == 1


async def test_invalid_plan_falls_back_to_one_task() -> None:
    """A plan that is a cycle twice makes the request run as one task.

    t.plan --> answer
    t.1 ------/           t.1 is the whole request
    """
    cycle = decomposition(
        subtask("s1", MARIANA, depends_on=["s2"]), subtask("s2", PUERTO_RICO, depends_on=["s1"])
    )
    async with planned_engine(PlanningHandler(cycle)) as (server, engine):
        result = await engine.run(REQUEST)

    tasks = records(result)
    assert ids(result) == {"t.plan", "t.1", "answer"}
    assert tasks["t.1"].description == REQUEST
    assert tasks["t.1"].state == "done"
    assert sum(1 for call in server.calls if is_plan_call(call)) == 2
    assert any("plan task 't.plan' failed" in note for note in result.notes)
    assert any("cycle" in note for note in result.notes)
    assert result_text(REQUEST) in answer_prompt(server)
    assert result.answer == FINAL_ANSWER


async def test_nested_plan_overlaps_first_level_work() -> None:
    """A non-atomic subtask is planned again while ready work already runs.

        t.plan --> answer
        t.1 -----------------------------/
        t.2.plan --> t.2 (join) --------/
        t.2.1 ------/
        t.2.2 -----/

    ``t.2.plan`` takes 0.5 s, and ``t.1`` starts before that call finishes.
    """
    handler = PlanningHandler(
        decomposition(
            subtask("s1", MARIANA), subtask("s2", PUERTO_RICO, atomic=False, cost="medium")
        ),
        decomposition(subtask("s1", PUERTO_RICO_SOURCES), subtask("s2", PUERTO_RICO_SURVEY)),
        nested_delay_s=0.5,
        work_delay_s=0.1,
    )
    async with planned_engine(handler) as (server, engine):
        result = await engine.run(REQUEST)

    tasks = records(result)
    assert ids(result) == {"t.plan", "t.1", "t.2.plan", "t.2", "t.2.1", "t.2.2", "answer"}
    assert tasks["t.2.plan"].kind == "plan"
    assert tasks["t.2"].kind == "join"

    nested_calls = [call for call in server.calls if is_nested_plan_call(call)]
    first_level_calls = [call for call in server.calls if work_description(call.request) == MARIANA]
    assert len(nested_calls) == 1
    assert len(first_level_calls) == 1
    nested_finished = nested_calls[0].finished_at
    assert nested_finished is not None
    assert first_level_calls[0].arrived_at < nested_finished
    assert start_of(tasks["t.1"]) < end_of(tasks["t.2.plan"])

    join = tasks["t.2"]
    assert join.agent is None
    assert start_of(join) >= end_of(tasks["t.2.1"])
    assert start_of(join) >= end_of(tasks["t.2.2"])
    assert join.output is not None
    assert result_text(PUERTO_RICO_SOURCES) in join.output
    assert result_text(PUERTO_RICO_SURVEY) in join.output
    prompt = answer_prompt(server)
    assert result_text(MARIANA) in prompt
    assert result_text(PUERTO_RICO_SOURCES) in prompt
    assert result_text(PUERTO_RICO_SURVEY) in prompt
    assert result.answer == FINAL_ANSWER


class RejectsStructuredOutput(PlanningHandler):
    """A server that rejects any request carrying a response format, as some do."""

    def __call__(self, request: ScriptedRequest) -> ScriptedReply:
        if request.response_format is not None:
            return ScriptedReply(status=400, error_message="response_format is not supported")
        return super().__call__(request)


async def test_rejected_plan_call_runs_single_task() -> None:
    async with planned_engine(RejectsStructuredOutput(root_plan="")) as (server, engine):
        result = await engine.run(REQUEST)

    plan_calls = [call for call in server.calls if is_plan_call(call)]
    assert result.status == "succeeded"
    assert result.answer == FINAL_ANSWER
    assert ids(result) == {"t.plan", "t.1", "answer"}
    assert len(plan_calls) == 1
    assert any("plan call failed" in note for note in result.notes)
    assert any("response_format is not supported" in note for note in result.notes)
