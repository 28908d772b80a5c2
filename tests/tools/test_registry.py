"""The tool registry: what it accepts at registration, and every check a model's call passes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.types import ToolCall
from dyntaskmas.tools.registry import MAX_RESULT_CHARS, ToolRegistry

CITY = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}},
    "required": ["city"],
    "additionalProperties": False,
}


def registry_with_population(calls: list[str]) -> ToolRegistry:
    tools = ToolRegistry()

    @tools.tool(schema=CITY)
    def population(city: str) -> int:
        """Return the population of a city."""
        calls.append(city)
        return {"Paris": 2_100_000}[city]

    return tools


def call(name: str, arguments: Any) -> ToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall("c1", name, text)


async def test_valid_call_runs_the_function() -> None:
    calls: list[str] = []
    result = await registry_with_population(calls).call(call("population", {"city": "Paris"}))
    assert result.ok
    assert result.content == "2100000"
    assert calls == ["Paris"]


def test_decorator_registers_name_description_schema() -> None:
    tools = registry_with_population([])
    (spec,) = tools.specs()
    assert spec.name == "population"
    assert spec.description == "Return the population of a city."
    assert spec.parameters == CITY


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        (
            "shell",
            {"command": "rm -rf /"},
            "there is no tool named 'shell'; the tools are: population",
        ),
        ("population", "{not json", "are not valid JSON"),
        ("population", "[1, 2]", "must be a JSON object"),
        ("population", {}, "'city' is a required property"),
        ("population", {"city": 3}, "city: 3 is not of type 'string'"),
        ("population", {"city": "Paris", "code": "import os"}, "Additional properties"),
        ("population", {"city": "x" * 41}, "is too long"),
        ("population", "1" * 5000, "not valid JSON"),
    ],
)
async def test_invalid_call_is_reported_not_run(name: str, arguments: Any, expected: str) -> None:
    calls: list[str] = []
    result = await registry_with_population(calls).call(call(name, arguments))
    assert not result.ok
    assert result.content.startswith("error: ")
    assert expected in result.content
    assert calls == []


async def test_tool_exception_is_reported_to_model() -> None:
    result = await registry_with_population([]).call(call("population", {"city": "Atlantis"}))
    assert not result.ok
    assert result.content == "error: tool 'population' raised KeyError: 'Atlantis'"


async def test_async_tool_timeout_is_reported() -> None:
    tools = ToolRegistry(timeout_s=0.01)

    async def wait(seconds: float) -> str:
        """Wait, then say so."""
        await asyncio.sleep(seconds)
        return "waited"

    tools.register("wait", wait, {"type": "object", "properties": {"seconds": {"type": "number"}}})
    fast = await tools.call(call("wait", {"seconds": 0}))
    slow = await tools.call(call("wait", {"seconds": 5}))
    assert fast.content == "waited"
    assert slow.content == "error: tool 'wait' timed out after 0.01 s"


async def test_long_result_is_cut() -> None:
    tools = ToolRegistry()
    tools.register("big", lambda: "x" * (MAX_RESULT_CHARS + 10), {"type": "object"}, "Say a lot.")
    result = await tools.call(call("big", ""))
    assert result.content.startswith("x" * MAX_RESULT_CHARS)
    assert result.content.endswith("(10 more characters cut)")


@pytest.mark.parametrize(
    ("name", "schema", "description", "expected"),
    [
        ("has space", {"type": "object"}, "d", "tool name 'has space' is invalid"),
        ("ok", {"type": "string"}, "d", 'must be a JSON schema with "type": "object"'),
        ("ok", {"type": "object", "properties": 3}, "d", "is not a valid JSON schema"),
        ("ok", {"type": "object"}, None, "has no description"),
    ],
)
def test_bad_registration_is_config_error(
    name: str, schema: dict[str, Any], description: str | None, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected):
        ToolRegistry().register(name, lambda: None, schema, description)


def test_name_registered_twice_is_config_error() -> None:
    tools = registry_with_population([])
    with pytest.raises(ConfigError, match="already registered"):
        tools.register("population", lambda city: 1, CITY, "again")


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=20), arguments=st.text(max_size=200))
async def test_any_model_call_gives_a_result(name: str, arguments: str) -> None:
    """Whatever a model writes, the registry answers with a result and never raises."""
    calls: list[str] = []
    result = await registry_with_population(calls).call(ToolCall("c", name, arguments))
    assert result.content
    if calls:
        assert name == "population"
    if not result.ok:
        assert result.content.startswith("error: ")
