"""Prompts that agents send for work and synthesis tasks.

A work task's prompt holds the overall request, the task itself and the output
of every direct predecessor, each labelled with the predecessor's id and
description. The synthesis prompt holds the request and the outputs the final
answer is built from. Planning prompts live in :mod:`dyntaskmas.planning`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage

#: Default roles: name -> what an agent in that role does. Users may replace them.
DEFAULT_ROLES: Mapping[str, str] = {
    "researcher": "finds and states the facts a question needs",
    "analyst": "compares, computes and reasons over facts it is given",
    "writer": "writes clear, short answers from the material it is given",
}

SYNTHESIS_ROLE = "writer"


@dataclass(frozen=True)
class Input:
    """The output of a predecessor, as it appears in a dependent's prompt."""

    task_id: str
    description: str
    output: str


CONTEXT_HEADING = "Results from other tasks:"


def work_messages(
    request: str,
    spec: TaskSpec,
    inputs: Sequence[Input],
    role_description: str,
    *,
    context: str = "",
) -> list[ChatMessage]:
    """Build the messages for a work task.

    ``context`` is text the context manager selected (predecessors' outputs
    and relevant updates within the token budget); it replaces ``inputs``.
    """
    system = (
        # Role descriptions are third-person phrases ("finds and states ..."),
        # so they follow the role's name.
        f"You are the {spec.role} of a team of agents. The {spec.role} {role_description}. "
        "Do only your own task, and answer in a few sentences."
    )
    parts = [f"Overall request: {request}", f"Your task: {spec.description}"]
    if context:
        parts.extend([CONTEXT_HEADING, context])
    elif inputs:
        parts.append("Results from the tasks yours depends on:")
        parts.extend(_format_input(item) for item in inputs)
    return [ChatMessage("system", system), ChatMessage("user", "\n\n".join(parts))]


def synthesis_messages(
    request: str, inputs: Sequence[Input], *, context: str = ""
) -> list[ChatMessage]:
    """Build the messages for the final answer; ``context`` replaces ``inputs``."""
    system = (
        "You write the final answer to a request from the results of the "
        "subtasks that were run for it. Use the results; be direct and brief."
    )
    parts = [f"Request: {request}"]
    if context:
        parts.extend(["Results of the subtasks:", context])
    elif inputs:
        parts.append("Results of the subtasks:")
        parts.extend(_format_input(item) for item in inputs)
    parts.append("Final answer:")
    return [ChatMessage("system", system), ChatMessage("user", "\n\n".join(parts))]


def join_output(inputs: Sequence[Input]) -> str:
    """Return a decomposed task's output: its subtasks' outputs, labelled."""
    return "\n\n".join(_format_input(item) for item in inputs)


def _format_input(item: Input) -> str:
    return f"[{item.task_id}] {item.description}\n{item.output.strip()}"
