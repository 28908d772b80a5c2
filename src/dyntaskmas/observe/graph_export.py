"""A request's plan without running it, and the plan as text, Mermaid, Graphviz DOT or JSON.

:func:`plan_request` calls the planner to decompose a request, then each
subtask the planner marks as not atomic, recursively within the planner's
depth limit, in parallel. Nothing else runs. The result is a tree of
:class:`PlanNode`: a decomposed subtask has children, and its own node
stands for the join that collects them, as in a run.

The formatters are pure. Planner output is untrusted text, so every label
is escaped for its format: Mermaid's ``#quot;``-style entities, DOT's
backslash escapes, JSON's own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dyntaskmas.engine.executor import Decomposer
from dyntaskmas.errors import InvalidPlanError, LLMError
from dyntaskmas.graph.task import TaskSpec

PlanFormat = Literal["text", "mermaid", "dot", "json"]
PLAN_FORMATS: tuple[PlanFormat, ...] = ("text", "mermaid", "dot", "json")
ROOT_ID = "t"
# Label length in Mermaid and DOT drawings; the JSON keeps whole descriptions.
LABEL_CHARS = 60


@dataclass(frozen=True)
class PlanNode:
    """A planned subtask; ``children`` when it was decomposed further, ``note`` when that failed."""

    spec: TaskSpec
    children: tuple[PlanNode, ...] = ()
    note: str | None = None


@dataclass(frozen=True)
class PlanTree:
    """The plan of a request: its top-level subtasks and the planner's token use."""

    request: str
    nodes: tuple[PlanNode, ...]
    prompt_tokens: int
    completion_tokens: int

    def walk(self) -> Iterator[PlanNode]:
        """Yield every node, depth first, parents before children."""
        stack = list(reversed(self.nodes))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


async def plan_request(planner: Decomposer, request: str, *, role: str) -> PlanTree:
    """Decompose ``request`` and its non-atomic subtasks; run nothing else.

    Raises :class:`~dyntaskmas.errors.InvalidPlanError` or
    :class:`~dyntaskmas.errors.LLMError` when the top-level plan fails; a
    failed decomposition of a subtask becomes a note on that subtask.
    """
    root = TaskSpec(id=ROOT_ID, description=request, role=role)
    tokens = [0, 0]

    async def decompose(task: TaskSpec) -> tuple[PlanNode, ...]:
        outcome = await planner.decompose(request, task)
        for completion in outcome.completions:
            tokens[0] += completion.usage.prompt_tokens
            tokens[1] += completion.usage.completion_tokens
        specs = list(outcome.specs)
        async with asyncio.TaskGroup() as group:
            pending = [
                (spec, group.create_task(expand(spec)) if spec.kind == "plan" else None)
                for spec in specs
            ]
        return tuple(
            task.result() if task is not None else PlanNode(spec) for spec, task in pending
        )

    async def expand(spec: TaskSpec) -> PlanNode:
        try:
            return PlanNode(spec, await decompose(spec))
        except InvalidPlanError as exc:
            for completion in exc.completions:
                tokens[0] += completion.usage.prompt_tokens
                tokens[1] += completion.usage.completion_tokens
            return PlanNode(spec, note=f"not decomposed: {'; '.join(exc.problems) or exc}")
        except LLMError as exc:
            return PlanNode(spec, note=f"not decomposed: the plan call failed ({exc})")

    nodes = await decompose(root)
    return PlanTree(request, nodes, tokens[0], tokens[1])


def format_plan(tree: PlanTree, fmt: PlanFormat = "text") -> str:
    """Return ``tree`` in format ``fmt``."""
    if fmt == "mermaid":
        return plan_mermaid(tree)
    if fmt == "dot":
        return plan_dot(tree)
    if fmt == "json":
        return json.dumps(plan_json(tree), ensure_ascii=False, indent=2)
    return plan_text(tree)


def plan_text(tree: PlanTree) -> str:
    lines = [f"Plan for: {' '.join(tree.request.split())}"]

    def add(nodes: Sequence[PlanNode], indent: str) -> None:
        for node in nodes:
            spec = node.spec
            after = f" (after {', '.join(spec.depends_on)})" if spec.depends_on else ""
            lines.append(f"{indent}{spec.id}  [{spec.role}] {_one_line(spec.description)}{after}")
            if node.note is not None:
                lines.append(f"{indent}    {node.note}")
            add(node.children, indent + "    ")

    add(tree.nodes, "  ")
    count = sum(1 for _ in tree.walk())
    lines.append(
        f"{count} tasks; planner used {tree.prompt_tokens:,} prompt and "
        f"{tree.completion_tokens:,} completion tokens"
    )
    return "\n".join(lines)


def plan_json(tree: PlanTree) -> dict[str, Any]:
    def item(node: PlanNode) -> dict[str, Any]:
        spec = node.spec
        return {
            "id": spec.id,
            "description": spec.description,
            "role": spec.role,
            "depends_on": list(spec.depends_on),
            "atomic": not node.children,
            "cost_s": spec.cost_s,
            "output_tokens": spec.output_tokens,
            "note": node.note,
            "subtasks": [item(child) for child in node.children],
        }

    return {
        "request": tree.request,
        "tasks": [item(node) for node in tree.nodes],
        "usage": {
            "prompt_tokens": tree.prompt_tokens,
            "completion_tokens": tree.completion_tokens,
        },
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _label(spec: TaskSpec) -> str:
    description = _one_line(spec.description)
    if len(description) > LABEL_CHARS:
        description = description[: LABEL_CHARS - 3] + "..."
    return f"{spec.id} [{spec.role}]: {description}"


def _sinks(nodes: Sequence[PlanNode]) -> list[str]:
    depended_on = {dep for node in nodes for dep in node.spec.depends_on}
    return [node.spec.id for node in nodes if node.spec.id not in depended_on]


def mermaid_escape(text: str) -> str:
    """Escape ``text`` for a quoted Mermaid label, with Mermaid's ``#name;`` entities."""
    for char, entity in (("&", "#amp;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, entity)
    return text


def plan_mermaid(tree: PlanTree) -> str:
    """Return a Mermaid flowchart: a decomposed subtask is a subgraph plus its join node."""
    ids: dict[str, str] = {}

    def node_id(task_id: str) -> str:
        return ids.setdefault(task_id, f"n{len(ids)}")

    lines = ["flowchart LR"]
    edges: list[str] = []

    def add(nodes: Sequence[PlanNode], indent: str) -> None:
        for node in nodes:
            spec = node.spec
            label = mermaid_escape(_label(spec))
            if node.children:
                lines.append(f'{indent}subgraph {node_id(spec.id)}_sub["{label}"]')
                add(node.children, indent + "    ")
                lines.append(f"{indent}end")
                lines.append(f'{indent}{node_id(spec.id)}[["join {mermaid_escape(spec.id)}"]]')
                for sink in _sinks(node.children):
                    edges.append(f"    {node_id(sink)} --> {node_id(spec.id)}")
            else:
                lines.append(f'{indent}{node_id(spec.id)}["{label}"]')
            for dep in spec.depends_on:
                edges.append(f"    {node_id(dep)} --> {node_id(spec.id)}")

    add(tree.nodes, "    ")
    return "\n".join(lines + edges)


def dot_escape(text: str) -> str:
    """Escape ``text`` for a double-quoted DOT string."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def plan_dot(tree: PlanTree) -> str:
    """Return a Graphviz digraph: a decomposed subtask is a cluster plus its join node."""
    lines = ["digraph plan {", "    rankdir=LR;", '    node [shape=box, fontname="sans-serif"];']
    edges: list[str] = []

    def add(nodes: Sequence[PlanNode], indent: str) -> None:
        for node in nodes:
            spec = node.spec
            name = dot_escape(spec.id)
            if node.children:
                lines.append(f'{indent}subgraph "cluster_{name}" {{')
                lines.append(f'{indent}    label="{dot_escape(_label(spec))}";')
                add(node.children, indent + "    ")
                lines.append(f"{indent}}}")
                lines.append(f'{indent}"{name}" [label="join {name}", style=dashed];')
                for sink in _sinks(node.children):
                    edges.append(f'    "{dot_escape(sink)}" -> "{name}";')
            else:
                lines.append(f'{indent}"{name}" [label="{dot_escape(_label(spec))}"];')
            for dep in spec.depends_on:
                edges.append(f'    "{dot_escape(dep)}" -> "{name}";')

    add(tree.nodes, "    ")
    return "\n".join([*lines, *edges, "}"])
