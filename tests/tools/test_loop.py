"""The tool-call loop over real HTTP: tools offered, calls checked, results sent back."""

from __future__ import annotations

import json
from collections.abc import Callable

from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.llm.types import ChatMessage
from dyntaskmas.runner import Runner, RunOptions
from dyntaskmas.tools.loop import ToolLoopResult, complete_with_tools
from dyntaskmas.tools.registry import ToolRegistry

from .test_registry import registry_with_population

QUESTION = [ChatMessage("user", "How many people live in Paris?")]


def tool_messages(request: ScriptedRequest) -> list[str]:
    return [str(m.get("content")) for m in request.messages if m.get("role") == "tool"]


def calling(*tool_calls: tuple[str, str, str]) -> ScriptedReply:
    return ScriptedReply(tool_calls=tool_calls)


async def loop_on(
    handler: Callable[[ScriptedRequest], ScriptedReply | str],
    tools: ToolRegistry,
    max_rounds: int = 4,
) -> tuple[ToolLoopResult, ScriptedLLMServer]:
    async with ScriptedLLMServer(handler) as server:
        model = OpenAIChatModel(Endpoint(server.base_url, model=server.model))
        async with model:
            result = await complete_with_tools(
                model, QUESTION, tools, max_tokens=64, max_rounds=max_rounds
            )
    return result, server


async def test_tool_result_reaches_model_and_answer_follows() -> None:
    calls: list[str] = []

    def handler(request: ScriptedRequest) -> ScriptedReply | str:
        if not tool_messages(request):
            return calling(("c1", "population", json.dumps({"city": "Paris"})))
        return f"Paris has {tool_messages(request)[0]} people"

    result, server = await loop_on(handler, registry_with_population(calls))

    assert result.final.text == "Paris has 2100000 people"
    assert calls == ["Paris"]
    first, second = (call.request for call in server.calls)
    assert first.tool_names == ["population"]
    # The second request repeats the assistant's call and answers it by id.
    assistant = [m for m in second.messages if m.get("role") == "assistant"][-1]
    assert assistant["tool_calls"][0]["function"]["name"] == "population"
    tool = next(m for m in second.messages if m.get("role") == "tool")
    assert tool["tool_call_id"] == "c1"
    assert len(result.completions) == 2


async def test_unknown_tool_and_bad_arguments_are_not_run() -> None:
    calls: list[str] = []

    def handler(request: ScriptedRequest) -> ScriptedReply | str:
        if not tool_messages(request):
            return calling(
                ("c1", "exec", json.dumps({"code": "import os; os.remove('/')"})),
                ("c2", "population", json.dumps({"city": ["Paris"]})),
                ("c3", "population", "{oops"),
            )
        return "I could not find out"

    result, server = await loop_on(handler, registry_with_population(calls))

    assert calls == []
    errors = tool_messages(server.calls[1].request)
    assert len(errors) == 3
    assert all(error.startswith("error: ") for error in errors)
    assert "no tool named 'exec'" in errors[0]
    assert "do not match its schema" in errors[1]
    assert "not valid JSON" in errors[2]
    assert result.final.text == "I could not find out"


async def test_rounds_are_bounded_and_last_offers_no_tools() -> None:
    calls: list[str] = []

    def handler(request: ScriptedRequest) -> ScriptedReply | str:
        if request.tool_names:
            return calling((f"c{request.index}", "population", json.dumps({"city": "Paris"})))
        return "answer without tools"

    result, server = await loop_on(handler, registry_with_population(calls), max_rounds=3)

    assert len(server.calls) == 4
    assert [bool(call.request.tool_names) for call in server.calls] == [True, True, True, False]
    assert calls == ["Paris"] * 3
    assert result.final.text == "answer without tools"


async def test_runner_offers_tools_to_work_tasks_only() -> None:
    """Plan -> one researcher task that calls the tool -> answer."""
    calls: list[str] = []
    plan = json.dumps(
        {
            "subtasks": [
                {
                    "id": "s1",
                    "description": "Find the population of Paris",
                    "role": "researcher",
                    "depends_on": [],
                    "atomic": True,
                    "cost": "small",
                    "output_size": "short",
                }
            ]
        }
    )

    def handler(request: ScriptedRequest) -> ScriptedReply | str:
        if request.response_format is not None:
            return plan
        if request.tool_names and not tool_messages(request):
            return calling(("c1", "population", json.dumps({"city": "Paris"})))
        if tool_messages(request):
            return f"population: {tool_messages(request)[0]}"
        return "The answer: " + ("2100000" if "2100000" in request.last_user_text else "unknown")

    async with ScriptedLLMServer(handler) as server:
        options = RunOptions(base_url=server.base_url, model=server.model, agents=2, journal=False)
        async with Runner(options, tools=registry_with_population(calls)) as runner:
            result = await runner.run("How many people live in Paris?")

    assert result.answer == "The answer: 2100000"
    assert calls == ["Paris"]
    plan_request, *_, answer_request = (call.request for call in server.calls)
    assert plan_request.tool_names == []
    assert answer_request.tool_names == []
    assert result.llm_calls == 4  # plan, the task's two rounds, answer
