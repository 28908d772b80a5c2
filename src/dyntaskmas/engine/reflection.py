"""Bounded reflection loops (draft, critique, revise), unrolled into new tasks.

This module owns the tasks of a loop, the critic's verdict and the delta
that adds the next round. It is pure; the executor calls it. The graph
itself stays acyclic: each round is new tasks, added when the critique of
the round before asks for a revision.

A loop ``L`` of at most K rounds starts as three tasks::

    deps --> L.draft --> L.c1 --> L          (L is the loop's exit, a join)
                   \\______________/

Critique ``L.ck`` returns ``approve`` or ``revise`` with reasons. On
``revise`` the delta adds the revision ``L.vk`` (it reads the critique and
the draft before it) and, while k < K, the next critique ``L.c(k+1)``;
both also feed the exit. On ``approve`` nothing is added. The exit's output
is the latest draft among its inputs, so a critic that never approves ends
the loop after K rounds with revision ``L.vK`` as the output.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dyntaskmas.graph.task import TaskSpec

#: meta keys of loop tasks.
LOOP = "loop"
LOOP_STEP = "loop_step"
LOOP_ROUND = "loop_round"
LOOP_ROUNDS = "loop_rounds"
LOOP_AUTHOR = "loop_author"
LOOP_CRITIC = "loop_critic"
LOOP_TASK = "loop_task"

LoopStep = Literal["draft", "critique", "revise", "exit"]
Verdict = Literal["approve", "revise"]

#: Most rounds a loop may have: each round is two model calls.
MAX_LOOP_ROUNDS = 10

CRITIQUE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["approve", "revise"]},
        "reasons": {"type": "string", "maxLength": 600},
    },
    "required": ["verdict", "reasons"],
}


@dataclass(frozen=True)
class Critique:
    """A critic's verdict and its reasons."""

    verdict: Verdict
    reasons: str

    @property
    def output(self) -> str:
        """The critique as the task's output, which the revision reads."""
        return f"{self.verdict}: {self.reasons}".strip()


def reflection_loop(
    loop_id: str,
    description: str,
    *,
    role: str,
    critic_role: str | None = None,
    rounds: int = 2,
    depends_on: Sequence[str] = (),
) -> list[TaskSpec]:
    """Return the first tasks of a loop that drafts ``description`` and refines it.

    Depend on ``loop_id`` to get the loop's final draft. ``rounds`` is the
    most critique rounds, each of which may add a revision.
    """
    if not 1 <= rounds <= MAX_LOOP_ROUNDS:
        raise ValueError(
            f"loop {loop_id!r}: rounds must be between 1 and {MAX_LOOP_ROUNDS}, got {rounds}"
        )
    if not description.strip():
        raise ValueError(f"loop {loop_id!r} has an empty description; describe the work")
    common = {
        LOOP: loop_id,
        LOOP_ROUNDS: rounds,
        LOOP_AUTHOR: role,
        LOOP_CRITIC: critic_role or role,
        LOOP_TASK: description,
    }
    draft = TaskSpec(
        id=f"{loop_id}.draft",
        description=description,
        role=role,
        depends_on=tuple(depends_on),
        meta={**common, LOOP_STEP: "draft", LOOP_ROUND: 0},
    )
    critique = _critique_spec(loop_id, 1, draft.id, common)
    exit_task = TaskSpec(
        id=loop_id,
        description=f"Final draft of: {description}",
        role=role,
        kind="join",
        cost_s=0.0,
        depends_on=(draft.id, critique.id),
        meta={**common, LOOP_STEP: "exit"},
    )
    return [draft, critique, exit_task]


def loop_step(spec: TaskSpec) -> LoopStep | None:
    """Return the loop step ``spec`` is, or None for a task outside loops."""
    step = spec.meta.get(LOOP_STEP)
    if step in ("draft", "critique", "revise", "exit"):
        return step  # type: ignore[no-any-return]
    return None


def parse_critique(text: str) -> Critique:
    """Read a critic's output; never raises.

    JSON ``{"verdict", "reasons"}`` first; otherwise text that starts with
    "approve" (or "approved") approves, and anything else asks for a
    revision, so a critic that cannot be read never ends a loop early.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.JSONDecoder(strict=False).raw_decode(stripped)[0]
        except (ValueError, RecursionError):
            value = None
        if isinstance(value, dict) and value.get("verdict") in ("approve", "revise"):
            reasons = value.get("reasons")
            return Critique(value["verdict"], reasons if isinstance(reasons, str) else "")
    first = stripped.split(maxsplit=1)[0].strip(".:,!").casefold() if stripped else ""
    if first in ("approve", "approved"):
        return Critique("approve", stripped)
    return Critique("revise", stripped)


def next_round(
    critique_spec: TaskSpec, critique: Critique, latest_draft: str
) -> tuple[tuple[TaskSpec, ...], tuple[tuple[str, str], ...]]:
    """Return the tasks and edges a critique adds: none on approve.

    ``latest_draft`` is the id of the draft the critique reviewed.
    """
    if critique.verdict == "approve":
        return (), ()
    meta = dict(critique_spec.meta)
    loop_id = str(meta[LOOP])
    k = int(meta[LOOP_ROUND])
    rounds = int(meta[LOOP_ROUNDS])
    common = {key: meta[key] for key in (LOOP, LOOP_ROUNDS, LOOP_AUTHOR, LOOP_CRITIC, LOOP_TASK)}
    revision = TaskSpec(
        id=f"{loop_id}.v{k}",
        description=f"Revise the draft of: {meta[LOOP_TASK]} Follow the review.",
        role=str(meta[LOOP_AUTHOR]),
        depends_on=(latest_draft, critique_spec.id),
        meta={**common, LOOP_STEP: "revise", LOOP_ROUND: k},
    )
    added = [revision]
    if k < rounds:
        added.append(_critique_spec(loop_id, k + 1, revision.id, common))
    return tuple(added), tuple((spec.id, loop_id) for spec in added)


def loop_output(drafts: Iterable[tuple[TaskSpec, str]]) -> str:
    """Return the exit's output: the latest of the loop's drafts given.

    ``drafts`` are ``(spec, output)`` pairs of the exit's inputs; those that
    are not drafts or revisions are skipped.
    """
    best: tuple[int, str] | None = None
    for spec, output in drafts:
        if loop_step(spec) in ("draft", "revise"):
            round_ = int(spec.meta[LOOP_ROUND])
            if best is None or round_ > best[0]:
                best = (round_, output)
    return best[1] if best is not None else ""


def loop_reason(critique_id: str) -> str:
    """Return the reason of the delta that a revise verdict of ``critique_id`` makes."""
    return f"revision requested by {critique_id}"


def _critique_spec(loop_id: str, k: int, draft_id: str, common: dict[str, Any]) -> TaskSpec:
    return TaskSpec(
        id=f"{loop_id}.c{k}",
        description=(
            f"Review the draft of: {common[LOOP_TASK]} Approve it, or ask for a "
            f"revision and say what to change."
        ),
        role=str(common[LOOP_CRITIC]),
        depends_on=(draft_id,),
        meta={**common, LOOP_STEP: "critique", LOOP_ROUND: k},
    )
