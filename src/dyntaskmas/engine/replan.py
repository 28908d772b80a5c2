"""Re-planning a failed task: the delta that puts a new plan in its place.

Pure; the executor calls it when a work task fails and the run may still
re-plan it. Failed task ``X`` is replaced by a plan task ``X.rN.plan``,
whose description carries ``X``'s description and the error, and a join
``X.rN`` that collects what the plan produces. ``X``'s dependents are
rewired from ``X`` to ``X.rN`` in the same delta, so when ``X`` is then
marked failed nothing is cancelled. ``N`` counts the re-plans on the way
to a task: the subtasks of ``X.r1.plan`` are ``X.r1.1``, ``X.r1.2`` and so
on, so their own failures count as the second re-plan.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from dyntaskmas.engine.provenance import stamp_source
from dyntaskmas.graph.delta import GraphDelta
from dyntaskmas.graph.task import TaskSpec

# The error quoted in the plan prompt is cut to this many characters.
MAX_ERROR_CHARS = 300

_ROUND = re.compile(r"^r\d+$")


def replan_round(task_id: str) -> int:
    """Return how many re-plans led to ``task_id`` (0 for a task never re-planned)."""
    return sum(1 for part in task_id.split(".") if _ROUND.match(part))


def replan_delta(
    failed: TaskSpec,
    error: str,
    *,
    predecessors: Collection[str],
    dependents: Collection[str],
    plan_cost_s: float,
    planner_role: str,
) -> GraphDelta:
    """Return the delta that replaces ``failed`` by a new plan and its join.

    ``predecessors`` are ``failed``'s current dependencies, which the
    replacement waits for too; ``dependents`` are those of its dependents
    that can still be rewired.
    """
    name = f"{failed.id}.r{replan_round(failed.id) + 1}"
    short_error = error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 3] + "..."
    inherit = tuple(predecessors)
    plan = TaskSpec(
        id=f"{name}.plan",
        description=(
            f"{failed.description} (An earlier attempt failed: {short_error} "
            f"Plan another way to do it.)"
        ),
        role=planner_role,
        kind="plan",
        cost_s=plan_cost_s,
        # Depth 1, so the planner decomposes this description rather than
        # the whole request. A planner whose max_depth is 1 cannot plan at
        # depth 1, so the executor re-plans only with max_depth >= 2.
        depth=1,
        parent=failed.parent,
        meta={"name": name, "target": name, "inherit": inherit},
    )
    join = TaskSpec(
        id=name,
        description=failed.description,
        role=failed.role,
        kind="join",
        cost_s=0.0,
        depends_on=(*inherit, plan.id),
        depth=failed.depth,
        parent=failed.parent,
        meta={"inherit": inherit, "replaces": failed.id},
    )
    return GraphDelta(
        add=stamp_source([plan, join], failed.id, "replaced", error),
        add_edges=tuple((name, dependent) for dependent in dependents),
        remove_edges=tuple((failed.id, dependent) for dependent in dependents),
        reason=replan_reason(failed.id),
    )


def replan_reason(task_id: str) -> str:
    """Return the reason of the delta that re-plans ``task_id``."""
    return f"re-plan of {task_id} after it failed"
