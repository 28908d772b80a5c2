"""The tools a user registers, and the checks that every model tool call passes.

A :class:`ToolRegistry` maps tool names to Python functions, each with the
JSON schema of its arguments. Models see only the registered tools, and
:meth:`ToolRegistry.call` runs a requested call only when its name is
registered and its arguments are a JSON object that the tool's schema
accepts (checked with ``jsonschema``). Every other outcome (an unknown name,
invalid JSON, arguments the schema rejects, an exception in the tool, a
timeout) becomes an error text for the model, never an exception in the
run. Nothing a model writes is evaluated as code: the call's name selects
a registered function and its arguments are passed as JSON values.

    tools = ToolRegistry()

    @tools.tool(schema={"type": "object", "properties": {"city": {"type": "string"}},
                        "required": ["city"], "additionalProperties": False})
    def population(city: str) -> int:
        "Return the population of a city."
        return POPULATIONS[city]
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import jsonschema

from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.types import ToolCall, ToolSpec

logger = logging.getLogger(__name__)

#: OpenAI requires tool names to match this.
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
#: Characters of a tool's result sent back to the model; the rest is cut.
MAX_RESULT_CHARS = 8_000
#: Seconds an async tool may run before the call counts as failed.
DEFAULT_TOOL_TIMEOUT_S = 30.0

ToolFunction = Callable[..., Any]
F = TypeVar("F", bound=ToolFunction)


@dataclass(frozen=True)
class Tool:
    """A registered tool: its function and the schema of its keyword arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]
    function: ToolFunction

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


@dataclass(frozen=True)
class ToolResult:
    """The outcome of one requested call: the text for the model, and whether it ran."""

    call: ToolCall
    content: str
    ok: bool


class ToolRegistry:
    """The tools agents may call; nothing else can be called.

    ``timeout_s`` bounds each call of an async tool. A sync tool runs in the
    event loop and should return quickly; wrap slow work in an async tool.
    """

    def __init__(self, *, timeout_s: float = DEFAULT_TOOL_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ConfigError(f"tool timeout must be > 0 seconds, got {timeout_s}")
        self.timeout_s = timeout_s
        self._tools: dict[str, Tool] = {}
        self._validators: dict[str, jsonschema.protocols.Validator] = {}

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def register(
        self,
        name: str,
        function: ToolFunction,
        schema: Mapping[str, Any],
        description: str | None = None,
    ) -> Tool:
        """Register ``function`` as the tool ``name``; its arguments must match ``schema``.

        ``description`` defaults to the first line of the function's
        docstring. Raises ConfigError for an invalid name, a name already
        registered, a schema that is not a valid JSON schema of an object,
        or a missing description.
        """
        if not isinstance(name, str) or not TOOL_NAME_PATTERN.match(name):
            raise ConfigError(
                f"tool name {name!r} is invalid; use 1 to 64 letters, digits, '_' or '-'"
            )
        if name in self._tools:
            raise ConfigError(f"tool {name!r} is already registered; register each name once")
        if not callable(function):
            raise ConfigError(f"tool {name!r}: {function!r} is not callable")
        if not isinstance(schema, Mapping) or schema.get("type") != "object":
            raise ConfigError(
                f'tool {name!r}: the schema must be a JSON schema with "type": "object", '
                f"because arguments are passed by name"
            )
        schema = dict(schema)
        validator_class = jsonschema.validators.validator_for(schema)
        try:
            validator_class.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ConfigError(
                f"tool {name!r}: the schema is not a valid JSON schema ({exc.message}); fix it"
            ) from None
        text = description if description is not None else _first_doc_line(function)
        if not text or not text.strip():
            raise ConfigError(
                f"tool {name!r} has no description; pass description=... or give the "
                f"function a docstring, because the model chooses tools by it"
            )
        tool = Tool(name, text.strip(), schema, function)
        self._tools[name] = tool
        self._validators[name] = validator_class(schema)
        return tool

    def tool(
        self,
        *,
        schema: Mapping[str, Any],
        name: str | None = None,
        description: str | None = None,
    ) -> Callable[[F], F]:
        """Return a decorator that registers the function it decorates, under its own name."""

        def decorate(function: F) -> F:
            self.register(name or function.__name__, function, schema, description)
            return function

        return decorate

    def specs(self) -> list[ToolSpec]:
        """Return the tool specs sent to the model, in registration order."""
        return [tool.spec for tool in self._tools.values()]

    async def call(self, call: ToolCall) -> ToolResult:
        """Check a model's tool call and run it if it passes; never raises for bad input."""
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(self._tools) or "none"
            return _rejected(call, f"there is no tool named {call.name!r}; the tools are: {known}")
        try:
            arguments = json.loads(call.arguments) if call.arguments.strip() else {}
        except (json.JSONDecodeError, RecursionError, ValueError) as exc:
            return _rejected(call, f"the arguments of {call.name!r} are not valid JSON ({exc})")
        if not isinstance(arguments, dict):
            return _rejected(call, f"the arguments of {call.name!r} must be a JSON object")
        problems = sorted(
            self._validators[call.name].iter_errors(arguments), key=lambda e: list(e.path)
        )
        if problems:
            first = problems[0]
            where = "/".join(str(part) for part in first.path) or "arguments"
            return _rejected(
                call,
                f"the arguments of {call.name!r} do not match its schema: {where}: {first.message}",
            )
        return await self._run(tool, call, arguments)

    async def _run(self, tool: Tool, call: ToolCall, arguments: dict[str, Any]) -> ToolResult:
        try:
            result = tool.function(**arguments)
            if inspect.isawaitable(result):
                async with asyncio.timeout(self.timeout_s):
                    result = await _awaited(result)
        except TimeoutError:
            return _rejected(call, f"tool {tool.name!r} timed out after {self.timeout_s:g} s")
        except Exception as exc:
            # The model receives the failure and may try another call, so the run goes on.
            logger.info("tool %s raised %s", tool.name, type(exc).__name__)
            return _rejected(call, f"tool {tool.name!r} raised {type(exc).__name__}: {exc}")
        content = result if isinstance(result, str) else _to_json(result)
        if len(content) > MAX_RESULT_CHARS:
            cut = len(content) - MAX_RESULT_CHARS
            content = content[:MAX_RESULT_CHARS] + f" ... ({cut} more characters cut)"
        return ToolResult(call, content, ok=True)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value


def _rejected(call: ToolCall, message: str) -> ToolResult:
    return ToolResult(call, f"error: {message}", ok=False)


def _to_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _first_doc_line(function: ToolFunction) -> str:
    doc = inspect.getdoc(function) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
