"""The planner: one decomposition of one task into new task specs.

This module owns :class:`Planner`, which requests a decomposition from a
:class:`ChatModel` under the JSON schema, validates it, makes at most one repair
call, and turns the result into :class:`TaskSpec` objects with graph ids.
It also owns :class:`PlanLimits`, the granularity limits of planning.

It does not recurse. A non-atomic subtask becomes a spec of kind ``plan``,
and the engine schedules it and calls :meth:`Planner.decompose` on it later,
so independent branches are planned in parallel with other work. It does not
touch the graph either: the engine applies the specs as a delta and wires
:func:`sink_ids` into the parent's join.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dyntaskmas.errors import ConfigError, InvalidPlanError
from dyntaskmas.graph.task import TaskKind, TaskSpec
from dyntaskmas.limits import MAX_DEPTH_LIMIT
from dyntaskmas.llm.types import ChatMessage, ChatModel, Completion
from dyntaskmas.planning.prompts import (
    copied_example_names,
    decomposition_messages,
    repair_messages,
)
from dyntaskmas.planning.schema import (
    COST_SIZES,
    DEFAULT_COST_S,
    DEFAULT_DESCRIPTION_VERBS,
    DEFAULT_MAX_DESCRIPTION_CHARS,
    DEFAULT_OUTPUT_TOKENS,
    MAX_SUBTASKS_LIMIT,
    OUTPUT_SIZES,
    CostSize,
    OutputSize,
    check_description_verbs,
    decomposition_schema,
)
from dyntaskmas.planning.validate import Decomposition, ParseResult, parse_decomposition

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanLimits:
    """Granularity limits and call settings for planning.

    Depths count decomposition levels: the request is depth 0, its subtasks
    depth 1. A subtask at depth ``max_depth`` is never decomposed again.
    """

    #: Most subtasks one decomposition may have (at least 2: one is no split).
    max_subtasks: int = 6
    #: Deepest level a task may have.
    max_depth: int = 2
    #: Output cap of each plan call, in tokens. It bounds latency and cuts off
    #: runaway generations. SmolLM2-135M's plans took a median of 130-210
    #: tokens and up to about 500 for six subtasks.
    max_tokens: int = 600
    #: Subtasks estimated below this many seconds are atomic, whatever their
    #: atomic flag. With the default cost table, "small" subtasks are never split.
    min_cost_s: float = 5.0
    #: Maximum length of a subtask description, in characters.
    max_description_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS
    #: Sampling temperature of the first plan call.
    temperature: float = 0.0
    #: Sampling temperature of the repair call. At temperature 0 a small model
    #: given nearly the same prompt repeats its rejected answer; sampling lets
    #: it produce a different one.
    repair_temperature: float = 0.7
    #: Constrain the k-th subtask to the id ``sk`` and to dependencies on
    #: earlier ones (see :func:`decomposition_schema`). Turn it off for a
    #: server that rejects ``prefixItems`` or ``anyOf`` in a schema.
    ordered_schema: bool = True
    #: First words a description may start with, enforced by the schema's
    #: pattern where the server supports patterns. Empty allows any start.
    description_verbs: tuple[str, ...] = DEFAULT_DESCRIPTION_VERBS
    #: Seconds of estimated execution time for each cost word.
    cost_s: Mapping[CostSize, float] = field(default_factory=lambda: dict(DEFAULT_COST_S))
    #: Subtasks one decomposition may mark for review (a critique-and-revise
    #: loop). 0 leaves the ``review`` key out of the schema and the prompt.
    max_reviews: int = 0
    #: Most critique rounds of a reviewed subtask.
    review_rounds: int = 2
    #: Estimated output tokens for each output-size word.
    output_tokens: Mapping[OutputSize, int] = field(
        default_factory=lambda: dict(DEFAULT_OUTPUT_TOKENS)
    )

    def __post_init__(self) -> None:
        if not 2 <= self.max_subtasks <= MAX_SUBTASKS_LIMIT:
            raise ConfigError(
                f"PlanLimits.max_subtasks must be between 2 and {MAX_SUBTASKS_LIMIT}, "
                f"got {self.max_subtasks}; a decomposition into one subtask is no split"
            )
        if self.max_depth < 1:
            raise ConfigError(
                f"PlanLimits.max_depth must be at least 1, got {self.max_depth}; "
                f"to turn planning off, run the request as a single task"
            )
        if self.max_depth > MAX_DEPTH_LIMIT:
            raise ConfigError(
                f"PlanLimits.max_depth must be at most {MAX_DEPTH_LIMIT}, got {self.max_depth}; "
                f"each level can multiply the number of tasks by max_subtasks"
            )
        if self.max_tokens < 64:
            raise ConfigError(
                f"PlanLimits.max_tokens must be at least 64, got {self.max_tokens}; "
                f"a decomposition of two subtasks needs about that many"
            )
        if not self.min_cost_s >= 0:
            raise ConfigError(f"PlanLimits.min_cost_s must be >= 0, got {self.min_cost_s}")
        if self.max_description_chars < 20:
            raise ConfigError(
                f"PlanLimits.max_description_chars must be at least 20, "
                f"got {self.max_description_chars}"
            )
        for name in ("temperature", "repair_temperature"):
            value = getattr(self, name)
            if not 0 <= value <= 2:
                raise ConfigError(f"PlanLimits.{name} must be between 0 and 2, got {value}")
        try:
            check_description_verbs(self.description_verbs, self.max_description_chars)
        except ValueError as exc:
            raise ConfigError(f"PlanLimits.description_verbs is invalid: {exc}") from exc
        if self.max_reviews < 0:
            raise ConfigError(f"PlanLimits.max_reviews must be >= 0, got {self.max_reviews}")
        if not 1 <= self.review_rounds <= 10:
            raise ConfigError(
                f"PlanLimits.review_rounds must be between 1 and 10, got {self.review_rounds}"
            )
        _check_table("cost_s", self.cost_s, COST_SIZES)
        _check_table("output_tokens", self.output_tokens, OUTPUT_SIZES)


@dataclass(frozen=True)
class PlanOutcome:
    """The result of one successful :meth:`Planner.decompose` call.

    ``specs`` are in topological order with ids ``"<task id>.1"``,
    ``"<task id>.2"`` and so on. ``fixes`` are the changes made to the
    accepted output. ``first_problems`` are the problems that led to the
    repair call, and they are empty when no repair was needed. ``completions``
    contains every model call made, for token accounting.
    """

    task_id: str
    specs: tuple[TaskSpec, ...]
    fixes: tuple[str, ...]
    repaired: bool
    first_problems: tuple[str, ...]
    completions: tuple[Completion, ...]

    @property
    def sink_ids(self) -> tuple[str, ...]:
        """Ids of the new specs that no other new spec depends on."""
        return sink_ids(self.specs)


def sink_ids(specs: Iterable[TaskSpec]) -> tuple[str, ...]:
    """Return the ids of ``specs`` on which no other spec in ``specs`` depends.

    These are the ends of a decomposition, whose outputs the parent's join
    collects. The order of ``specs`` is kept.
    """
    listed = list(specs)
    depended_on = {dependency for spec in listed for dependency in spec.depends_on}
    return tuple(spec.id for spec in listed if spec.id not in depended_on)


class Planner:
    """Decomposes tasks with a chat model under a JSON schema.

    ``roles`` maps each role name to a one-line description; the model must
    give every subtask one of these roles. One planner serves many concurrent
    :meth:`decompose` calls: it keeps no state between them.
    """

    def __init__(
        self,
        model: ChatModel,
        *,
        roles: Mapping[str, str],
        limits: PlanLimits | None = None,
    ) -> None:
        _check_roles(roles)
        self._model = model
        self._roles = dict(roles)
        self._limits = limits if limits is not None else PlanLimits()
        self._schema = decomposition_schema(
            list(self._roles),
            self._limits.max_subtasks,
            max_description_chars=self._limits.max_description_chars,
            ordered=self._limits.ordered_schema,
            description_verbs=self._limits.description_verbs,
            review=self._limits.max_reviews > 0,
        )

    @property
    def limits(self) -> PlanLimits:
        return self._limits

    @property
    def schema(self) -> Mapping[str, Any]:
        """The JSON schema sent with every plan call."""
        return self._schema

    async def decompose(
        self,
        request: str,
        task: TaskSpec,
        *,
        model: ChatModel | None = None,
        max_subtasks: int | None = None,
    ) -> PlanOutcome:
        """Decompose ``task``, part of the user's ``request``, into new task specs.

        ``model`` replaces the planner's own model for this call, so that the
        engine can plan on whichever agent (and endpoint) runs the plan task.
        ``max_subtasks`` lowers the limit of subtasks for this call (the
        workflow optimiser's choice); it never raises it.

        Makes one model call, and one repair call when the first output has
        problems. Raises :class:`~dyntaskmas.errors.InvalidPlanError` when the
        repaired output still has problems; the caller then runs ``task``
        without decomposing it. Errors of the model call itself
        (:class:`~dyntaskmas.errors.LLMError`) propagate unchanged. Raises
        ``ValueError`` when ``task`` is already at ``max_depth``.
        """
        if task.depth >= self._limits.max_depth:
            raise ValueError(
                f"task {task.id!r} is at depth {task.depth}, and max_depth is "
                f"{self._limits.max_depth}; run it as a work task instead of decomposing it"
            )

        limit = self._limits.max_subtasks
        if max_subtasks is not None:
            limit = max(2, min(limit, max_subtasks))
        is_request = task.depth == 0 or task.description.strip() == request.strip()
        task_description = None if is_request else task.description
        messages = decomposition_messages(
            request,
            task_description,
            roles=self._roles,
            max_subtasks=limit,
            max_reviews=self._limits.max_reviews,
        )
        context = f"{request}\n{task.description}"

        model = model if model is not None else self._model
        first = await self._call(model, messages, self._limits.temperature)
        first_result = self._parse(first, context, limit)
        if first_result.decomposition is not None:
            logger.debug("plan for task %s accepted on the first call", task.id)
            return self._outcome(task, first_result.decomposition, first_result, (first,), ())

        logger.info(
            "plan for task %s is invalid (%d problems); making one repair call",
            task.id,
            len(first_result.problems),
        )
        repair = repair_messages(messages, first_result.problems)
        second = await self._call(model, repair, self._limits.repair_temperature)
        second_result = self._parse(second, context, limit)
        if second_result.decomposition is None:
            raise InvalidPlanError(task.id, second_result.problems, (first, second))
        return self._outcome(
            task,
            second_result.decomposition,
            second_result,
            (first, second),
            first_result.problems,
        )

    async def _call(
        self, model: ChatModel, messages: Sequence[ChatMessage], temperature: float
    ) -> Completion:
        return await model.complete(
            messages,
            max_tokens=self._limits.max_tokens,
            temperature=temperature,
            json_schema=self._schema,
        )

    def _parse(self, completion: Completion, context: str, max_subtasks: int) -> ParseResult:
        """Validate ``completion``; ``context`` is the request and task text the model was given."""
        result = parse_decomposition(
            completion.text,
            roles=list(self._roles),
            max_subtasks=max_subtasks,
            max_description_chars=self._limits.max_description_chars,
            cost_s=self._limits.cost_s,
            output_tokens=self._limits.output_tokens,
            max_reviews=self._limits.max_reviews,
        )
        problems = list(result.problems)
        if result.decomposition is None and completion.finish_reason == "length":
            # The cut-off is the cause of the JSON error; saying so lets the
            # repair call aim for a shorter output.
            problems.append(
                f"the output was cut off at the limit of {self._limits.max_tokens} tokens; "
                f"write fewer subtasks with shorter descriptions"
            )
        if result.decomposition is not None:
            for subtask in result.decomposition.subtasks:
                copied = copied_example_names(subtask.description, context)
                if copied:
                    problems.append(
                        f"subtask {subtask.label!r} is about {_join_quoted(copied)} from the "
                        f"example, not about this task; describe work for this task"
                    )
        if problems:
            return ParseResult(None, result.fixes, tuple(problems))
        return result

    def _outcome(
        self,
        task: TaskSpec,
        decomposition: Decomposition,
        result: ParseResult,
        completions: tuple[Completion, ...],
        first_problems: tuple[str, ...],
    ) -> PlanOutcome:
        return PlanOutcome(
            task_id=task.id,
            specs=self._specs(task, decomposition),
            fixes=result.fixes,
            repaired=len(completions) > 1,
            first_problems=first_problems,
            completions=completions,
        )

    def _specs(self, task: TaskSpec, decomposition: Decomposition) -> tuple[TaskSpec, ...]:
        """Give each proposed subtask a graph id, a depth and a kind."""
        depth = task.depth + 1
        subtasks = decomposition.subtasks
        ids = {subtask.label: f"{task.id}.{k}" for k, subtask in enumerate(subtasks, start=1)}
        specs: list[TaskSpec] = []
        for subtask in subtasks:
            # One subtask is the task again: splitting it further would loop.
            atomic = (
                subtask.atomic or len(subtasks) == 1 or subtask.cost_s < self._limits.min_cost_s
            )
            kind: TaskKind = "work" if atomic or depth >= self._limits.max_depth else "plan"
            specs.append(
                TaskSpec(
                    id=ids[subtask.label],
                    description=subtask.description,
                    role=subtask.role,
                    depends_on=tuple(ids[label] for label in subtask.depends_on),
                    kind=kind,
                    cost_s=subtask.cost_s,
                    output_tokens=subtask.output_tokens,
                    depth=depth,
                    parent=task.id,
                    meta={
                        "label": subtask.label,
                        "atomic": atomic,
                        # A subtask planned again gets no loop: its join
                        # has no draft to review.
                        **(
                            {"review_rounds": self._limits.review_rounds}
                            if subtask.review and kind == "work"
                            else {}
                        ),
                    },
                )
            )
        return tuple(specs)


def _check_roles(roles: Mapping[str, str]) -> None:
    if not roles:
        raise ConfigError(
            "the planner needs at least one role; pass roles={'name': 'what it does'}"
        )
    for name, description in roles.items():
        if not name.strip() or name != name.strip():
            raise ConfigError(
                f"role name {name!r} is blank or has surrounding whitespace; use a plain name"
            )
        if "\n" in description:
            raise ConfigError(
                f"the description of role {name!r} spans several lines; "
                f"keep it to one line, because it is quoted in every plan prompt"
            )


def _check_table(name: str, table: Mapping[Any, float], sizes: Sequence[str]) -> None:
    missing = [size for size in sizes if size not in table]
    if missing:
        raise ConfigError(f"PlanLimits.{name} has no entry for {missing!r}; give every size")
    for size in sizes:
        if not table[size] >= 0:
            raise ConfigError(f"PlanLimits.{name}[{size!r}] must be >= 0, got {table[size]}")


def _join_quoted(values: Iterable[str]) -> str:
    return ", ".join(repr(value) for value in values)
