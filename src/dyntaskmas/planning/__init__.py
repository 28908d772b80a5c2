"""LLM decomposition of tasks into subtasks: output schema, validation, repair.

:class:`Planner` requests a decomposition from a chat model, validates it with
:func:`parse_decomposition`, makes at most one repair call, and returns new
:class:`~dyntaskmas.graph.task.TaskSpec` objects for the engine to add.
"""

from dyntaskmas.planning.planner import PlanLimits, Planner, PlanOutcome, sink_ids
from dyntaskmas.planning.prompts import decomposition_messages, repair_messages, repair_prompt
from dyntaskmas.planning.schema import (
    COST_SIZES,
    DEFAULT_COST_S,
    DEFAULT_DESCRIPTION_VERBS,
    DEFAULT_OUTPUT_TOKENS,
    OUTPUT_SIZES,
    CostSize,
    OutputSize,
    decomposition_schema,
    subtask_labels,
)
from dyntaskmas.planning.validate import (
    Decomposition,
    ParseResult,
    ProposedSubtask,
    parse_decomposition,
)

__all__ = [
    "COST_SIZES",
    "DEFAULT_COST_S",
    "DEFAULT_DESCRIPTION_VERBS",
    "DEFAULT_OUTPUT_TOKENS",
    "OUTPUT_SIZES",
    "CostSize",
    "Decomposition",
    "OutputSize",
    "ParseResult",
    "PlanLimits",
    "PlanOutcome",
    "Planner",
    "ProposedSubtask",
    "decomposition_messages",
    "decomposition_schema",
    "parse_decomposition",
    "repair_messages",
    "repair_prompt",
    "sink_ids",
    "subtask_labels",
]
