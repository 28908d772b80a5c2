"""Planner over real HTTP: OpenAIChatModel against ScriptedLLMServer on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from dyntaskmas.errors import InvalidPlanError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, reply_sequence
from dyntaskmas.planning import Planner

ROLES = {"researcher": "finds one fact", "writer": "combines results into an answer"}
REQUEST = "Which is deeper, the Mariana Trench or the Puerto Rico Trench?"
ROOT = TaskSpec(id="r", description=REQUEST, kind="plan")


def plan(*edges: tuple[str, list[str]]) -> str:
    return json.dumps(
        {
            "subtasks": [
                {
                    "id": label,
                    "description": f"Work on {label}",
                    "role": "researcher",
                    "depends_on": depends_on,
                    "atomic": True,
                    "cost": "small",
                    "output_size": "short",
                }
                for label, depends_on in edges
            ]
        }
    )


CYCLIC = plan(("s1", ["s2"]), ("s2", ["s1"]))
VALID = plan(("s1", []), ("s2", []), ("s3", ["s1", "s2"]))


async def test_repair_over_http() -> None:
    async with ScriptedLLMServer(reply_sequence(CYCLIC, VALID)) as server:
        endpoint = Endpoint(server.base_url, model=server.model, structured_output="json_object")
        async with OpenAIChatModel(endpoint) as model:
            planner = Planner(model, roles=ROLES)
            outcome = await planner.decompose(REQUEST, ROOT)

    first, repair = (call.request for call in server.calls)
    assert first.response_format == {"type": "json_object", "schema": dict(planner.schema)}
    assert "'s1' depends on 's2', 's2' depends on 's1'" in repair.last_user_text
    assert [message["role"] for message in repair.messages] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert outcome.repaired is True
    assert [spec.id for spec in outcome.specs] == ["r.1", "r.2", "r.3"]
    assert outcome.specs[2].depends_on == ("r.1", "r.2")
    assert [c.usage.completion_tokens > 0 for c in outcome.completions] == [True, True]


async def test_openai_schema_form_over_http() -> None:
    async with ScriptedLLMServer(reply_sequence(VALID)) as server:
        endpoint = Endpoint(server.base_url, model=server.model, structured_output="json_schema")
        async with OpenAIChatModel(endpoint) as model:
            planner = Planner(model, roles=ROLES)
            outcome = await planner.decompose(REQUEST, ROOT)

    response_format = server.calls[0].request.response_format
    assert response_format is not None
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["schema"] == dict(planner.schema)
    assert len(outcome.specs) == 3


async def test_cut_off_twice_raises_over_http() -> None:
    cut = ScriptedReply(
        text='{"subtasks": [{"id": "s1", "description": "1.1.1.1', finish_reason="length"
    )
    async with ScriptedLLMServer(reply_sequence(cut)) as server:
        endpoint = Endpoint(server.base_url, model=server.model, structured_output="json_object")
        async with OpenAIChatModel(endpoint) as model:
            with pytest.raises(InvalidPlanError) as caught:
                await Planner(model, roles=ROLES).decompose(REQUEST, ROOT)

    assert len(server.calls) == 2
    assert any("cut off" in problem for problem in caught.value.problems)
    assert len(caught.value.completions) == 2
