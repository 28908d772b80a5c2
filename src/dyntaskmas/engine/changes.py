"""The graph changes that task results ask for while a run goes on.

:class:`GraphChanges` decides, from the engine's settings, which JSON
schema a work call asks for, how its output is read, and which delta a
result makes: follow-ups (:mod:`dyntaskmas.engine.followups`), the next
round of a reflection loop (:mod:`dyntaskmas.engine.reflection`), the
re-plan of a failed task (:mod:`dyntaskmas.engine.replan`) and the
optimiser's steps (:mod:`dyntaskmas.engine.optimiser`). It applies
nothing: the executor applies each delta atomically, before the task
that caused it counts as finished or failed.

Deltas that rewire a task's dependents are returned as builders, called
with the graph as it is when the executor applies the result, because
other results may have changed those dependents in between.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dyntaskmas.engine import followups, reflection
from dyntaskmas.engine.optimiser import (
    Granularity,
    OptimiserConfig,
    OverheadEstimate,
    choose_granularity,
    merge_tiny_siblings,
)
from dyntaskmas.engine.provenance import stamp_source
from dyntaskmas.engine.replan import replan_delta, replan_round
from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.graph.delta import GraphDelta
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage
from dyntaskmas.planning.schema import MAX_SUBTASKS_LIMIT

if TYPE_CHECKING:
    from dyntaskmas.engine.executor import EngineConfig

#: Builds a delta from the graph as it is when a task's result is applied.
DeltaBuilder = Callable[[TaskGraph], GraphDelta]

CRITIQUE_INSTRUCTIONS = (
    'Reply with a JSON object {"verdict": "approve" or "revise", '
    '"reasons": what is good or what to change}.'
)


class GraphChanges:
    """Decides the graph changes of one engine's runs from its settings.

    ``can_replan`` is false when the engine has no planner, or one that
    cannot plan a replacement one level down.
    """

    def __init__(self, config: EngineConfig, *, can_replan: bool, planner_role: str) -> None:
        self.config = config
        self.can_replan = can_replan
        self.planner_role = planner_role

    # --- work output -------------------------------------------------------------

    def output_schema(self, spec: TaskSpec) -> Mapping[str, Any] | None:
        """Return the JSON schema a work call asks for, or None for plain text."""
        step = reflection.loop_step(spec)
        if step == "critique":
            return reflection.CRITIQUE_SCHEMA
        limits = self.config.follow_ups
        if spec.kind != "work" or step is not None or limits is None:
            return None
        if int(spec.meta.get(followups.FOLLOW_UP_DEPTH, 0)) >= limits.max_depth:
            return None
        return followups.work_output_schema(list(self.config.roles), limits.max_per_task)

    def with_output_instructions(
        self, spec: TaskSpec, messages: list[ChatMessage]
    ) -> list[ChatMessage]:
        """Return ``messages`` with the output format explained in the last one."""
        if reflection.loop_step(spec) == "critique":
            text = CRITIQUE_INSTRUCTIONS
        else:
            limits = self.config.follow_ups
            assert limits is not None, "only called when a schema was chosen"
            text = followups.follow_up_instructions(list(self.config.roles), limits.max_per_task)
        last = messages[-1]
        return [*messages[:-1], ChatMessage(last.role, f"{last.content}\n\n{text}")]

    def read_output(
        self, spec: TaskSpec, text: str, run_notes: list[str]
    ) -> tuple[str, DeltaBuilder | None, tuple[str, ...]]:
        """Return a work task's output, the delta it asks for, and notes.

        ``run_notes`` receives the note of follow-ups cut by the run's limit,
        which is known only when the delta is built.
        """
        if reflection.loop_step(spec) == "critique":
            critique = reflection.parse_critique(text)
            return critique.output, self._next_round(spec, critique), ()
        limits = self.config.follow_ups
        if spec.kind != "work" or reflection.loop_step(spec) is not None or limits is None:
            return text, None, ()
        depth = int(spec.meta.get(followups.FOLLOW_UP_DEPTH, 0))
        parsed = followups.parse_work_output(
            text,
            roles=list(self.config.roles),
            max_per_task=limits.max_per_task,
            allow_follow_ups=depth < limits.max_depth,
        )
        notes = tuple(f"follow-ups of task {spec.id!r}: {p}" for p in parsed.problems)
        if not parsed.follow_ups:
            return parsed.answer, None, notes
        max_per_run = limits.max_per_run

        def build(graph: TaskGraph) -> GraphDelta:
            added = sum(1 for t in graph if followups.FOLLOW_UP_DEPTH in t.spec.meta)
            wanted = parsed.follow_ups
            # Dependencies come first, so a prefix never names a dropped one.
            kept = wanted[: max(0, max_per_run - added)]
            if len(kept) < len(wanted):
                run_notes.append(
                    f"task {spec.id!r} asked for {len(wanted)} follow-ups; {len(kept)} were "
                    f"added, because the run allows {max_per_run} in all"
                )
            if not kept:
                return GraphDelta()
            specs, edges = followups.follow_up_delta_specs(
                spec, kept, dependents=rewirable_dependents(graph, spec.id), cost_s=spec.cost_s
            )
            return GraphDelta(
                add=stamp_source(specs, spec.id, "finished", parsed.answer),
                add_edges=edges,
                reason=followups.follow_ups_reason(spec.id),
            )

        return parsed.answer, build, notes

    def _next_round(self, spec: TaskSpec, critique: reflection.Critique) -> DeltaBuilder | None:
        if critique.verdict == "approve":
            return None

        def build(graph: TaskGraph) -> GraphDelta:
            drafts = [
                p
                for p in graph.predecessors(spec.id)
                if reflection.loop_step(graph.task(p).spec) in ("draft", "revise")
            ]
            specs, edges = reflection.next_round(spec, critique, drafts[0])
            return GraphDelta(
                add=stamp_source(specs, spec.id, "finished", critique.output),
                add_edges=edges,
                reason=reflection.loop_reason(spec.id),
            )

        return build

    # --- failures and plans ------------------------------------------------------

    def replan(self, graph: TaskGraph, task_id: str, error: str) -> GraphDelta | None:
        """Return the delta that re-plans failed task ``task_id``, or None if none is allowed."""
        spec = graph.task(task_id).spec
        if (
            not self.can_replan
            or spec.kind != "work"
            or reflection.loop_step(spec) is not None
            or replan_round(task_id) >= self.config.max_replans
        ):
            return None
        return replan_delta(
            spec,
            error,
            predecessors=sorted(graph.predecessors(task_id)),
            dependents=rewirable_dependents(graph, task_id),
            plan_cost_s=self.config.plan_cost_s,
            planner_role=self.planner_role,
        )

    def review_loop(self, spec: TaskSpec, depends_on: tuple[str, ...]) -> list[TaskSpec]:
        """Return the tasks of a reflection loop whose exit takes ``spec``'s id."""
        loop = reflection.reflection_loop(
            spec.id,
            spec.description,
            role=spec.role,
            rounds=int(spec.meta["review_rounds"]),
            depends_on=depends_on,
        )
        return [
            replace(task, depth=spec.depth, parent=spec.parent, tags=spec.tags)
            if task.kind == "join"
            else replace(task, depth=spec.depth, parent=spec.parent, cost_s=spec.cost_s)
            for task in loop
        ]

    # --- optimiser ---------------------------------------------------------------

    def overhead_estimate(self) -> OverheadEstimate:
        """Return a new per-task overhead estimate for one run."""
        optimiser = self.config.optimiser or OptimiserConfig()
        return OverheadEstimate(optimiser.task_overhead_s, optimiser.min_samples)

    def granularity(
        self, spec: TaskSpec, *, overhead_s: float, idle_agents: int
    ) -> Granularity | None:
        """Return the optimiser's split of a nested plan task, or None to leave it alone."""
        cost = spec.meta.get("work_cost_s")
        if self.config.optimiser is None or not isinstance(cost, int | float):
            return None
        return choose_granularity(
            cost_s=float(cost),
            overhead_s=overhead_s,
            plan_s=self.config.plan_cost_s,
            transfer_s=self.config.transfer.transfer_s(spec.output_tokens),
            idle_agents=idle_agents,
            max_subtasks=MAX_SUBTASKS_LIMIT,
        )

    def merge(
        self, graph: TaskGraph, applied: GraphDelta, *, overhead_s: float, idle_agents: int
    ) -> GraphDelta:
        """Return the merges of tiny siblings after a decomposition; empty after other deltas."""
        optimiser = self.config.optimiser
        if optimiser is None or not applied.reason.startswith("decomposition by "):
            return GraphDelta()
        return merge_tiny_siblings(
            graph,
            overhead_s=overhead_s,
            max_merge=optimiser.max_merge,
            agents=idle_agents,
            tiny_ratio=optimiser.tiny_ratio,
        )


def rewirable_dependents(graph: TaskGraph, task_id: str) -> list[str]:
    """Return the dependents of ``task_id`` that a delta may still rewire, sorted by id."""
    return sorted(
        s for s in graph.successors(task_id) if graph.task(s).state in ("pending", "ready")
    )
