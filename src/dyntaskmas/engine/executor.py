"""The dataflow executor: runs a task graph on a pool of agents.

Policy: dataflow, not supersteps. A task is dispatched the moment its own
dependencies are done and an idle agent that serves its role has a free
slot on its endpoint. Among ready tasks the highest critical-path priority
goes first (see :mod:`dyntaskmas.engine.ready_queue`). Each agent runs one
task at a time. A failed task cancels only its descendants, and the rest
of the graph carries on.

Task kinds:

``plan``
    asks the planner to decompose its description; the new subtasks join the
    graph through one atomic delta before the plan task counts as done, so
    their dependents never start early. Subtasks that are themselves not
    atomic become a ``plan`` task (with no dependencies, so it is planned at
    once, in parallel with other work) plus a ``join`` task, under the
    subtask's id, that waits for its own dependencies, its plan and the new
    subtasks.
``work``
    one model call with the task and its predecessors' outputs.
``join``
    collects its subtasks' outputs; no model call, no agent.
``synthesize``
    one model call that writes the final answer from its inputs.

Changes during a run: a work task's output may ask for follow-up subtasks
(:mod:`dyntaskmas.engine.followups`), a critique may ask for another round
of its reflection loop (:mod:`dyntaskmas.engine.reflection`), and a failed
work task may be re-planned (:mod:`dyntaskmas.engine.replan`). Each is one
atomic delta applied before the task's finish or failure is recorded. A
run stops early when its :class:`~dyntaskmas.engine.budget.Budget` is used
up (:mod:`dyntaskmas.engine.budget`).

Other policies, for comparison (``EngineConfig.priority`` and
``level_sync``): ``fifo`` and ``paper_summary`` priorities from
:mod:`dyntaskmas.graph.priority`; level-synchronous execution holds every
task of level L back until all tasks of lower levels have finished, as
superstep frameworks do.

State of a run lives in :class:`_Run`: the graph, the ready queue, the
running tasks, a queue of completions that the loop waits on, and for the
comparison policies the priorities and levels they need.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, cast

from dyntaskmas.clock import Clock, MonotonicClock
from dyntaskmas.context.manager import ContextManager
from dyntaskmas.engine import followups, reflection
from dyntaskmas.engine.admission import check_graph, check_request
from dyntaskmas.engine.agent_pool import Agent, AgentPool
from dyntaskmas.engine.budget import Budget, BudgetTracker
from dyntaskmas.engine.changes import DeltaBuilder, GraphChanges
from dyntaskmas.engine.optimiser import OptimiserConfig, OverheadEstimate, merged_away
from dyntaskmas.engine.prompts import (
    DEFAULT_ROLES,
    SYNTHESIS_ROLE,
    Input,
    join_output,
    synthesis_messages,
    work_messages,
)
from dyntaskmas.engine.ready_queue import ReadyQueue
from dyntaskmas.engine.result import RunResult, RunStatus, TaskRecord
from dyntaskmas.errors import (
    DynTaskMASError,
    GraphError,
    InvalidPlanError,
    JournalError,
    LLMError,
    StuckRunError,
)
from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.graph.delta import GraphDelta
from dyntaskmas.graph.priority import (
    PRIORITY_POLICIES,
    PriorityPolicy,
    levels,
    paper_summary_priorities,
)
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.graph.weights import TransferModel, Weighting
from dyntaskmas.llm.types import (
    ChatMessage,
    ChatModel,
    Completion,
    ToolCallingModel,
    ToolSpec,
    Usage,
)
from dyntaskmas.observe.events import (
    ContextDelivered,
    EventBus,
    LLMCallFinished,
    LLMCallRetried,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
    graph_changed,
)
from dyntaskmas.planning.planner import Planner

if TYPE_CHECKING:
    from dyntaskmas.journal.replay import ResumeState
    from dyntaskmas.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)

PLANNER_ROLE = "planner"
ANSWER_ID = "answer"
ROOT_NAME = "t"


def decomposition_reason(plan_id: str) -> str:
    """Return the reason of the delta that adds the subtasks of plan task ``plan_id``.

    The journal matches it to tell that a plan's subtasks were added even
    when the plan task's own finish was not recorded.
    """
    return f"decomposition by {plan_id}"


def plan_output(subtask_ids: Sequence[str]) -> str:
    """Return the output text of a plan task that produced these subtasks."""
    return f"planned {len(subtask_ids)} subtasks: " + ", ".join(subtask_ids)


class Decomposer(Protocol):
    """The planner interface the executor calls."""

    async def decompose(
        self,
        request: str,
        task: TaskSpec,
        *,
        model: ChatModel | None = None,
        max_subtasks: int | None = None,
    ) -> PlanOutcomeLike: ...


class Recalibrator(Protocol):
    """A source of cost estimates measured during a run; see :mod:`dyntaskmas.adapt.calibration`."""

    def recalibrate(self, graph: TaskGraph) -> bool:
        """Update the estimates of tasks not yet started; return whether any changed."""
        ...


class PlanOutcomeLike(Protocol):
    @property
    def specs(self) -> Sequence[TaskSpec]: ...

    @property
    def fixes(self) -> Sequence[str]: ...

    @property
    def completions(self) -> Sequence[Completion]: ...


@dataclass(frozen=True)
class EngineConfig:
    """Settings of the executor.

    ``roles`` maps each work role to what it does; the planner role is added
    by the executor. Token limits are per model call.
    """

    roles: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    work_max_tokens: int = 256
    answer_max_tokens: int = 384
    temperature: float = 0.0
    weighting: Weighting = "normalized"
    transfer: TransferModel = field(default_factory=TransferModel)
    aging_per_s: float = 0.01
    # Cost estimate for plan tasks, in seconds, before any are measured.
    plan_cost_s: float = 2.0
    priority: PriorityPolicy = "critical_path"
    level_sync: bool = False
    # The model's context window in tokens; prompts built with a context
    # manager never exceed it.
    context_window_tokens: int = 8192
    # Tasks one run's graph may hold; a plan that would pass it is not added.
    # None sets no limit, for ready-made graphs of any size; Runner sets one.
    max_tasks: int | None = None
    # Rounds of tool calls a work task may make before it must answer.
    max_tool_rounds: int = 4
    # Follow-up subtasks that work outputs may ask for; None: work output is
    # plain text and no schema is sent with work calls.
    follow_ups: followups.FollowUpLimits | None = None
    # How many times a failed work task may be re-planned (needs a planner).
    max_replans: int = 0
    # Limits of each run; a run that reaches one stops early.
    budget: Budget = field(default_factory=Budget)
    # The workflow optimiser: granularity of nested plans and merges of tiny
    # sibling tasks; None leaves plans as the planner makes them.
    optimiser: OptimiserConfig | None = None

    def __post_init__(self) -> None:
        if not self.roles:
            raise ValueError("at least one role is needed")
        if PLANNER_ROLE in self.roles:
            raise ValueError(f"role name {PLANNER_ROLE!r} is reserved for planning tasks")
        if self.priority not in PRIORITY_POLICIES:
            raise ValueError(
                f"priority policy {self.priority!r} is unknown; use one of "
                f"{', '.join(PRIORITY_POLICIES)}"
            )
        # A planned run starts with 3: its plan task, the answer, and the one
        # task kept in reserve for the plan.
        if self.max_tasks is not None and self.max_tasks < 3:
            raise ValueError(f"max_tasks must be >= 3 or None, got {self.max_tasks}")
        for name in ("work_max_tokens", "answer_max_tokens"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.max_replans < 0:
            raise ValueError(f"max_replans must be >= 0, got {self.max_replans}")


@dataclass(frozen=True)
class _Outcome:
    """The result of one task execution, handed from the task to the loop."""

    task_id: str
    agent: Agent
    started_at: float
    finished_at: float
    output: str | None = None
    error: str | None = None
    delta: GraphDelta = field(default_factory=GraphDelta)
    completions: tuple[Completion, ...] = ()
    notes: tuple[str, ...] = ()
    # Builds a delta from the graph as it is when the outcome is applied,
    # for changes that rewire the task's dependents.
    delta_for: DeltaBuilder | None = None


@dataclass(frozen=True)
class _Call:
    """A model call of a task, for LLMCallFinished; times in seconds from the run's start."""

    completion: Completion
    messages: Sequence[ChatMessage]
    started_at: float
    ended_at: float


class _RecordingModel:
    """A task's view of its agent's model: hands each returned call to ``on_call``.

    Failed calls raise before ``on_call``, as they report no usage.
    """

    def __init__(
        self, model: ChatModel, now: Callable[[], float], on_call: Callable[[_Call], None]
    ) -> None:
        self._model = model
        self._now = now
        self._on_call = on_call
        # Offers tools exactly when the wrapped model does.
        self.supports_tools = _supports_tools(model)

    async def complete(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        json_schema: Mapping[str, Any] | None = None,
        tools: Sequence[ToolSpec] | None = None,
    ) -> Completion:
        started = self._now()
        if tools is None:
            completion = await self._model.complete(
                messages, max_tokens=max_tokens, temperature=temperature, json_schema=json_schema
            )
        else:
            completion = await cast(ToolCallingModel, self._model).complete(
                messages,
                max_tokens=max_tokens,
                temperature=temperature,
                json_schema=json_schema,
                tools=tools,
            )
        self._on_call(_Call(completion, tuple(messages), started, self._now()))
        return completion


@dataclass
class _Run:
    run_id: str
    request: str
    graph: TaskGraph
    queue: ReadyQueue
    started: float
    # None wakes the loop without a completion: the pool gained capacity.
    completions: asyncio.Queue[_Outcome | None] = field(default_factory=asyncio.Queue)
    running: set[str] = field(default_factory=set)
    joins: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    model_calls: list[Completion] = field(default_factory=list)
    context: ContextManager | None = None
    # Only for the comparison policies; recomputed after every graph delta.
    paper_priority: dict[str, float] = field(default_factory=dict)
    level: dict[str, int] = field(default_factory=dict)
    # Level-synchronous execution: the level now allowed to run, and ready
    # tasks of higher levels waiting for it.
    current_level: int = 0
    waiting_for_level: list[str] = field(default_factory=list)
    # Tasks the graph holds or that accepted plans will add, plus one per
    # unfinished plan task; 0 until the first plan finishes. Plans run in
    # parallel, so each counts its tasks here before its delta is applied.
    tasks_promised: int = 0
    # _natural_key of each id seen, so inputs and records sort without
    # re-parsing ids: a task's id is parsed once, not once per dependent.
    natural_keys: dict[str, tuple[tuple[int, int | str], ...]] = field(default_factory=dict)
    budget: BudgetTracker = field(default_factory=BudgetTracker)
    overhead: OverheadEstimate = field(default_factory=lambda: OverheadEstimate(0.5))


class Engine:
    """Runs requests (planned) or ready-made graphs on an agent pool.

    ``events`` receives every state change of every run (see
    :mod:`dyntaskmas.observe.events`). ``context`` builds a context manager
    for each run from the run's id.
    With one, every output is published to it and every prompt's inputs are
    chosen by it within the model's window; without one, a task's prompt
    contains its direct predecessors' outputs in full.
    """

    def __init__(
        self,
        pool: AgentPool,
        *,
        planner: Decomposer | None = None,
        config: EngineConfig | None = None,
        clock: Clock | None = None,
        context: Callable[[str], ContextManager] | None = None,
        events: EventBus | None = None,
        tools: ToolRegistry | None = None,
        calibrator: Recalibrator | None = None,
    ) -> None:
        self.pool = pool
        # Offered to the model of every work task whose backend supports tools.
        self.tools = tools if tools else None
        self.calibrator = calibrator
        self.planner = planner
        self.config = config or EngineConfig()
        self.clock = clock or MonotonicClock()
        self.context_factory = context
        self.events = events if events is not None else EventBus()
        self._runs = itertools.count(1)

    async def run(self, request: str, *, run_id: str | None = None) -> RunResult:
        """Plan ``request`` into a task graph, run it, and return the answer.

        ``run_id`` names the run in its events (default: ``run-N``, unique
        within this engine only).
        """
        check_request(request)
        if self.planner is None:
            raise ValueError("Engine.run needs a planner; use run_graph for a fixed graph")
        plan = TaskSpec(
            id=f"{ROOT_NAME}.plan",
            description=request,
            role=PLANNER_ROLE,
            kind="plan",
            cost_s=self.config.plan_cost_s,
            meta={"name": ROOT_NAME, "target": ANSWER_ID, "inherit": ()},
        )
        answer = TaskSpec(
            id=ANSWER_ID,
            description="Write the final answer from the subtasks' results",
            role=SYNTHESIS_ROLE if SYNTHESIS_ROLE in self.config.roles else self._first_role(),
            kind="synthesize",
            depends_on=(plan.id,),
        )
        return await self.run_graph([plan, answer], request=request, run_id=run_id)

    async def run_graph(
        self, specs: Iterable[TaskSpec], *, request: str = "", run_id: str | None = None
    ) -> RunResult:
        """Run a ready-made graph; the answer is the output of its last sink."""
        specs = tuple(specs)
        check_graph(specs, self.config.max_tasks)
        graph = TaskGraph(weighting=self.config.weighting, transfer=self.config.transfer)
        run = _Run(
            run_id=run_id if run_id is not None else f"run-{next(self._runs)}",
            request=request,
            graph=graph,
            queue=ReadyQueue(aging_per_s=self.config.aging_per_s),
            started=self.clock.now(),
            budget=BudgetTracker(self.config.budget),
            overhead=self.changes.overhead_estimate(),
        )
        if self.context_factory is not None:
            run.context = self.context_factory(run.run_id)
        self.events.emit(RunStarted(run.run_id, 0.0, request, len(self.pool.agents)))
        self._apply_delta(run, GraphDelta(add=tuple(specs), reason="initial graph"), now=0.0)
        logger.info("run started: %d tasks, %d agents", len(graph), len(self.pool.agents))
        return await self._drive(run)

    async def resume(self, state: ResumeState) -> RunResult:
        """Continue a journalled run: rebuild its graph and context, run what is left.

        The recorded deltas are applied in their order. Each task recorded as
        finished is marked done with its recorded output, in the order it
        finished, and its output is published to the context manager again.
        No model is called for it. A plan task whose delta was recorded counts
        as finished even without a recorded finish, so its subtasks are never
        added twice. Failed, cancelled and interrupted tasks run again.
        """
        if not state.deltas:
            raise ValueError(
                f"run {state.run_id!r} has no recorded graph to resume; start it again instead"
            )
        # Rebuild the graph first: recorded deltas and finishes are in the
        # journal already, so they change the graph without events.
        # NOTE: so subscribers of a resumed run see no GraphChanged for the
        # rebuilt part; a journal subscriber would record it a second time.
        graph = TaskGraph(weighting=self.config.weighting, transfer=self.config.transfer)
        try:
            for delta in state.deltas:
                graph.apply(delta, now=0.0)
            for finished in state.finished:
                graph.mark_running(finished.task_id, agent=finished.agent, now=0.0)
                graph.mark_done(finished.task_id, finished.output, now=0.0)
            # A replaced task failed and its replacement is in the graph, so
            # it never runs again; nothing depends on it any more.
            replaced = [(t, e) for t, e in state.replaced if graph.task(t).state == "ready"]
            for task_id, error in replaced:
                graph.mark_failed(task_id, error, now=0.0)
        except GraphError as exc:
            raise JournalError(
                f"the journal of run {state.run_id!r} does not rebuild a valid graph ({exc}); "
                f"it was changed or written by another program, so start the run again"
            ) from exc

        run = _Run(
            run_id=state.run_id,
            request=state.request,
            graph=graph,
            queue=ReadyQueue(aging_per_s=self.config.aging_per_s),
            started=self.clock.now(),
            budget=BudgetTracker(self.config.budget),
            overhead=self.changes.overhead_estimate(),
        )
        if self.context_factory is not None:
            run.context = self.context_factory(run.run_id)
        self.events.emit(RunStarted(run.run_id, 0.0, state.request, len(self.pool.agents)))
        for task_id, error in replaced:
            if task_id not in state.failed:
                self.events.emit(TaskFailed(run.run_id, 0.0, task_id, error, ()))
        for finished in state.finished:
            spec = graph.task(finished.task_id).spec
            if spec.kind != "plan":
                await self._publish(run, spec, finished.output)
            if finished.recovered:
                self.events.emit(
                    TaskFinished(
                        run.run_id, 0.0, finished.task_id, None, finished.output, 0.0, 0, 0
                    )
                )

        self._recompute_policy_state(run)
        self._route(run, graph.ids_in_state("ready"))
        logger.info(
            "run %s resumed: %d of %d tasks already done, %d agents",
            run.run_id,
            len(state.finished),
            len(graph),
            len(self.pool.agents),
        )
        return await self._drive(run)

    async def _drive(self, run: _Run) -> RunResult:
        """Run the loop until no task is running or ready, then build the result."""
        graph = run.graph
        async with asyncio.TaskGroup() as group, self._wake_on_capacity(run):
            while True:
                # Pick ready tasks and launch them on idle agents.
                await self._finish_joins(run)
                self._release_next_level(run)
                self._recalibrate(run)
                for task_id, agent in self._dispatch(run):
                    group.create_task(self._execute(run, task_id, agent))
                if not run.running:
                    break

                # Wait for the first completion.
                outcome = await run.completions.get()

                # Apply its result and graph delta.
                self._apply(run, outcome)

        unfinished = [t.id for t in graph if not t.finished]
        if unfinished and run.budget.reached is None:
            raise StuckRunError(unfinished)
        outcome_result = self._result(run)
        self.events.emit(
            RunFinished(
                run.run_id,
                outcome_result.makespan_s,
                outcome_result.status,
                outcome_result.makespan_s,
                outcome_result.llm_calls,
            )
        )
        logger.info(
            "run finished: %s in %.2f s, %d model calls",
            outcome_result.status,
            outcome_result.makespan_s,
            outcome_result.llm_calls,
        )
        return outcome_result

    # --- scheduling -------------------------------------------------------------

    def _now(self, run: _Run) -> float:
        return self.clock.now() - run.started

    def _route(self, run: _Run, task_ids: Iterable[str]) -> None:
        """Send newly ready tasks to the join list or the ready queue."""
        for task_id in task_ids:
            spec = run.graph.task(task_id).spec
            if spec.kind == "join":
                run.joins.append(task_id)
            elif self.config.level_sync and run.level[task_id] > run.current_level:
                run.waiting_for_level.append(task_id)
            elif spec.role not in self.pool.roles:
                self._fail(
                    run,
                    task_id,
                    f"no agent serves role {spec.role!r}; add an agent with that role",
                    now=self._now(run),
                )
            else:
                now = self._now(run)
                priority = self._priority(run, task_id)
                run.queue.push(task_id, role=spec.role, priority=priority, ready_at=now)
                self.events.emit(TaskReady(run.run_id, now, task_id, priority))

    def _priority(self, run: _Run, task_id: str) -> float:
        policy = self.config.priority
        if policy == "fifo":
            return 0.0
        if policy == "paper_summary":
            return run.paper_priority[task_id]
        return run.graph.priority(task_id)

    def _recompute_policy_state(self, run: _Run) -> None:
        # NOTE: full recomputes, O(graph) per delta; acceptable because these
        # policies exist for comparison runs, not for production use.
        if self.config.priority == "paper_summary":
            run.paper_priority = paper_summary_priorities(run.graph)
        if self.config.level_sync:
            run.level = levels(run.graph)

    def _release_next_level(self, run: _Run) -> None:
        """Open the next level once every task of the levels below has finished."""
        while run.waiting_for_level:
            blocking = any(
                not task.finished and run.level[task.id] <= run.current_level for task in run.graph
            )
            if blocking:
                return
            run.current_level += 1
            waiting, run.waiting_for_level = run.waiting_for_level, []
            self._route(run, waiting)

    def _drop(self, run: _Run, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            run.queue.discard(task_id)

    def _dispatch(self, run: _Run) -> list[tuple[str, Agent]]:
        launched: list[tuple[str, Agent]] = []
        while True:
            if len(run.queue) and not run.budget.may_start(running=len(run.running)):
                return launched
            task_id = run.queue.pop_best(self.pool.idle_roles())
            if task_id is None:
                return launched
            agent = self.pool.choose(run.graph.task(task_id).spec.role)
            assert agent is not None, "pop_best only returns roles with an idle agent"
            self.pool.assign(agent, task_id)
            now = self._now(run)
            run.graph.mark_running(task_id, agent=agent.name, now=now)
            self.events.emit(TaskStarted(run.run_id, now, task_id, agent.name, agent.endpoint))
            run.running.add(task_id)
            run.budget.started()
            launched.append((task_id, agent))

    async def _finish_joins(self, run: _Run) -> None:
        while run.joins:
            task_id = run.joins.pop(0)
            now = self._now(run)
            task = run.graph.task(task_id)
            inherited = set(task.spec.meta.get("inherit", ()))
            inputs = [i for i in self._inputs(run, task_id) if i.task_id not in inherited]
            if reflection.loop_step(task.spec) == "exit":
                graph = run.graph
                output = reflection.loop_output(
                    (graph.task(i.task_id).spec, i.output) for i in inputs
                )
            else:
                output = join_output(inputs)
            run.graph.mark_running(task_id, agent=None, now=now)
            self.events.emit(TaskStarted(run.run_id, now, task_id, None, None))
            # Dependents of a join read its output from the context manager,
            # so it is published before they can become ready.
            await self._publish(run, task.spec, output)
            self.events.emit(TaskFinished(run.run_id, now, task_id, None, output, 0.0, 0, 0))
            self._route(run, run.graph.mark_done(task_id, output, now=now))

    async def _publish(self, run: _Run, spec: TaskSpec, output: str) -> None:
        if run.context is None:
            return
        result = await run.context.publish(
            spec.id, output, description=spec.description, tags=spec.tags or None
        )
        for error in result.errors:
            run.notes.append(f"context update of task {spec.id!r} was rejected: {error}")

    @asynccontextmanager
    async def _wake_on_capacity(self, run: _Run) -> AsyncIterator[None]:
        def wake() -> None:
            run.completions.put_nowait(None)

        self.pool.capacity_listeners.append(wake)
        try:
            yield
        finally:
            self.pool.capacity_listeners.remove(wake)

    def _recalibrate(self, run: _Run) -> None:
        if self.calibrator is not None and self.calibrator.recalibrate(run.graph):
            self._refresh_priorities(run)

    def _apply(self, run: _Run, outcome: _Outcome | None) -> None:
        if outcome is None:
            return  # a wake-up: the loop dispatches again
        run.running.discard(outcome.task_id)
        self.pool.release(outcome.agent, outcome.finished_at - outcome.started_at)
        run.model_calls.extend(outcome.completions)
        run.budget.charge(outcome.completions)
        run.notes.extend(outcome.notes)
        graph = run.graph
        finished_at = outcome.finished_at - run.started
        if outcome.error is not None:
            logger.info("task %s failed: %s", outcome.task_id, outcome.error)
            self._replan(run, outcome.task_id, outcome.error, now=finished_at)
            self._fail(run, outcome.task_id, outcome.error, now=finished_at)
            return
        delta = outcome.delta if outcome.delta_for is None else outcome.delta_for(graph)
        if not delta.empty:
            self._apply_delta(run, delta, now=finished_at)
            self._merge_tiny_tasks(run, delta, now=finished_at)
        if outcome.completions and graph.task(outcome.task_id).spec.kind == "work":
            run.overhead.add(
                outcome.finished_at - outcome.started_at,
                sum(c.usage.completion_tokens for c in outcome.completions),
            )
        assert outcome.output is not None
        self.events.emit(
            TaskFinished(
                run.run_id,
                finished_at,
                outcome.task_id,
                outcome.agent.name,
                outcome.output,
                outcome.finished_at - outcome.started_at,
                sum(c.usage.prompt_tokens for c in outcome.completions),
                sum(c.usage.completion_tokens for c in outcome.completions),
            )
        )
        self._route(run, graph.mark_done(outcome.task_id, outcome.output, now=finished_at))

    def _apply_delta(self, run: _Run, delta: GraphDelta, *, now: float) -> None:
        result = run.graph.apply(delta, now=now)
        self.events.emit(graph_changed(run.run_id, now, delta, result))
        self._emit_cancelled(run, result.cancelled, now=now)
        self._recompute_policy_state(run)
        self._drop(run, result.unready)
        self._drop(run, result.cancelled)
        self._route(run, result.ready)
        self._refresh_priorities(run)

    def _fail(self, run: _Run, task_id: str, error: str, *, now: float) -> None:
        cancelled = run.graph.mark_failed(task_id, error, now=now)
        self._drop(run, cancelled)
        self.events.emit(TaskFailed(run.run_id, now, task_id, error, tuple(cancelled)))
        self._emit_cancelled(run, cancelled, now=now)

    def _emit_cancelled(self, run: _Run, task_ids: Iterable[str], *, now: float) -> None:
        for task_id in task_ids:
            reason = run.graph.task(task_id).error or "cancelled by a graph change"
            self.events.emit(TaskCancelled(run.run_id, now, task_id, reason))

    def _recording(self, run: _Run, task_id: str, agent: Agent) -> _RecordingModel:
        """Wrap ``agent``'s model so that each call it makes emits its events."""

        def emit(call: _Call) -> None:
            completion = call.completion
            if completion.attempts > 1:
                self.events.emit(
                    LLMCallRetried(
                        run.run_id,
                        call.ended_at,
                        task_id,
                        agent.name,
                        agent.endpoint,
                        completion.attempts - 1,
                    )
                )
            self.events.emit(
                LLMCallFinished(
                    run.run_id,
                    call.ended_at,
                    task_id,
                    agent.name,
                    agent.endpoint,
                    completion.model,
                    call.started_at,
                    call.ended_at - call.started_at,
                    completion.usage.prompt_tokens,
                    completion.usage.completion_tokens,
                    completion.attempts,
                    tuple((message.role, message.content) for message in call.messages),
                )
            )

        return _RecordingModel(agent.model, lambda: self._now(run), emit)

    def _refresh_priorities(self, run: _Run) -> None:
        for task_id in run.graph.ids_in_state("ready"):
            if task_id in run.queue:
                task = run.graph.task(task_id)
                run.queue.push(
                    task_id,
                    role=task.spec.role,
                    priority=self._priority(run, task_id),
                    ready_at=task.ready_at or 0.0,
                )

    # --- execution ----------------------------------------------------------------

    async def _execute(self, run: _Run, task_id: str, agent: Agent) -> None:
        """Run one task on ``agent`` and post its outcome.

        Any error becomes a failed outcome; only cancellation propagates.
        """
        started = self.clock.now()
        spec = run.graph.task(task_id).spec
        try:
            if spec.kind == "plan":
                outcome = await self._plan(run, spec, agent, started)
            else:
                outcome = await self._call_model(run, spec, agent, started)
        except DynTaskMASError as exc:
            outcome = _Outcome(task_id, agent, started, self.clock.now(), error=str(exc))
        except Exception as exc:  # a bug in one task must not crash the run
            logger.exception("task %s raised an unexpected error", task_id)
            outcome = _Outcome(
                task_id, agent, started, self.clock.now(), error=f"{type(exc).__name__}: {exc}"
            )
        run.completions.put_nowait(outcome)

    async def _call_model(
        self, run: _Run, spec: TaskSpec, agent: Agent, started: float
    ) -> _Outcome:
        inputs = self._inputs(run, spec.id)
        synthesis = spec.kind == "synthesize"
        max_tokens = self.config.answer_max_tokens if synthesis else self.config.work_max_tokens
        role_description = self.config.roles.get(spec.role, "does the task it is given")
        request = run.request or spec.description
        changes = self.changes
        schema = changes.output_schema(spec)

        def build(context: str = "") -> list[ChatMessage]:
            if synthesis:
                return synthesis_messages(run.request, inputs, context=context)
            messages = work_messages(request, spec, inputs, role_description, context=context)
            if schema is not None:
                # Inside build, so the context budget counts the instructions.
                messages = changes.with_output_instructions(spec, messages)
            return messages

        messages = build()
        if run.context is not None:
            # The budget is what the window leaves after the prompt without
            # its inputs, plus room for the heading, and the completion.
            bare = build(context=" ")
            budget = run.context.budget_for(self.config.context_window_tokens, bare, max_tokens)
            selection = await run.context.context_for(
                spec, [item.task_id for item in inputs], budget
            )
            messages = build(context=selection.render())
            self.events.emit(
                ContextDelivered(
                    run.run_id,
                    self._now(run),
                    spec.id,
                    tuple(item.candidate.source for item in selection.items),
                    tuple(omission.candidate.source for omission in selection.omitted),
                    selection.used_tokens,
                    selection.budget_tokens,
                )
            )

        model = self._recording(run, spec.id, agent)
        if self.tools is not None and not synthesis and _supports_tools(model):
            # Imported here: jsonschema, which the tools need, takes 0.1 s to import.
            from dyntaskmas.tools.loop import complete_with_tools

            # NOTE: the tool loop sends no response schema, so a work task
            # with tools can ask for follow-ups only if its model writes the
            # JSON form unprompted by a schema.
            looped = await complete_with_tools(
                model,
                messages,
                self.tools,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                max_rounds=self.config.max_tool_rounds,
            )
            completion, completions = looped.final, looped.completions
        else:
            completion = await model.complete(
                messages,
                max_tokens=max_tokens,
                temperature=self.config.temperature,
                json_schema=schema,
            )
            completions = (completion,)
        output, delta_for, notes = changes.read_output(spec, completion.text, run.notes)
        await self._publish(run, spec, output)
        return _Outcome(
            spec.id,
            agent,
            started,
            self.clock.now(),
            output=output,
            completions=completions,
            notes=notes,
            delta_for=delta_for,
        )

    # --- changes during a run --------------------------------------------------------

    @property
    def changes(self) -> GraphChanges:
        """The graph changes that task results may make, under the current config."""
        can_replan = self.planner is not None and not (
            isinstance(self.planner, Planner) and self.planner.limits.max_depth < 2
        )
        return GraphChanges(self.config, can_replan=can_replan, planner_role=PLANNER_ROLE)

    def _replan(self, run: _Run, task_id: str, error: str, *, now: float) -> None:
        """Put a new plan in place of a failed work task, when the run allows one."""
        if run.budget.reached is not None:
            return
        delta = self.changes.replan(run.graph, task_id, error)
        if delta is None:
            return
        run.notes.append(f"task {task_id!r} failed and was re-planned as {delta.add[1].id!r}")
        self._apply_delta(run, delta, now=now)

    def _merge_tiny_tasks(self, run: _Run, applied: GraphDelta, *, now: float) -> None:
        """Merge tiny sibling tasks that a decomposition just added."""
        # The agent that ran the plan is already released, so it counts as idle.
        idle = max(1, sum(1 for agent in self.pool.agents if agent.idle))
        merge = self.changes.merge(
            run.graph, applied, overhead_s=run.overhead.overhead_s, idle_agents=idle
        )
        # The cancelled originals stay in the graph, so a merge adds tasks,
        # and it must fit the run's task limit as a plan must.
        limit = self.config.max_tasks
        if not merge.empty and limit is not None:
            if run.tasks_promised + len(merge.add) > limit:
                return
            run.tasks_promised += len(merge.add)
        if not merge.empty:
            run.notes.append(
                f"optimiser merged {len(merge.cancel)} tiny tasks into {len(merge.add)}: "
                + ", ".join(spec.id for spec in merge.add)
            )
            self._apply_delta(run, merge, now=now)

    async def _plan(self, run: _Run, spec: TaskSpec, agent: Agent, started: float) -> _Outcome:
        assert self.planner is not None
        name = str(spec.meta.get("name", spec.id))
        target = str(spec.meta.get("target", spec.id))
        inherit = tuple(spec.meta.get("inherit", ()))
        subject = replace(spec, id=name, role=self._first_role(), kind="work", meta={})
        notes: list[str] = []
        completions: tuple[Completion, ...] = ()
        failure: str | None = None
        new_specs: list[TaskSpec] = []
        idle = sum(1 for a in self.pool.agents if a.idle or a.current_task == spec.id)
        granularity = self.changes.granularity(
            spec, overhead_s=run.overhead.overhead_s, idle_agents=idle
        )
        if granularity is not None and not granularity.decompose:
            failure = (
                f"was skipped by the optimiser (as one task {granularity.unsplit_s:.1f} s "
                f"predicted, split {granularity.predicted_s:.1f} s)"
            )
        else:
            max_subtasks = granularity.max_subtasks if granularity is not None else None
            try:
                plan = await self.planner.decompose(
                    run.request or spec.description,
                    subject,
                    model=self._recording(run, spec.id, agent),
                    max_subtasks=max_subtasks,
                )
                new_specs = list(plan.specs)
                completions = tuple(plan.completions)
                notes.extend(f"plan {name}: {fix}" for fix in plan.fixes)
            except InvalidPlanError as exc:
                completions = exc.completions
                problems = "; ".join(exc.problems) or str(exc)
                failure = f"failed after one repair attempt ({problems})"
            except LLMError as exc:
                # A server may reject the structured-output request itself:
                # llama-cpp-python 0.3.36 rejects OpenAI's json_schema form with a
                # 500. The work can still run undecomposed, and if the server is
                # down, that task fails too.
                logger.info("plan call for %s failed: %s", name, exc)
                failure = f"failed because the plan call failed ({exc})"
        if failure is not None:
            notes.append(f"plan task {spec.id!r} {failure}; its work ran as a single task instead")
            new_specs = [
                TaskSpec(
                    id=f"{name}.1",
                    description=spec.description,
                    role=self._first_role(),
                    depth=spec.depth + 1,
                    parent=name,
                )
            ]
        delta = self._wire(new_specs, target=target, inherit=inherit, plan_id=spec.id)
        delta = self._within_task_limit(run, spec, delta, notes)
        return _Outcome(
            spec.id,
            agent,
            started,
            self.clock.now(),
            output=plan_output([s.id for s in new_specs]),
            delta=delta,
            completions=completions,
            notes=tuple(notes),
        )

    def _within_task_limit(
        self, run: _Run, spec: TaskSpec, delta: GraphDelta, notes: list[str]
    ) -> GraphDelta:
        """Return ``delta``, or one undecomposed task when it would pass ``max_tasks``.

        Each unfinished plan task keeps room for the one task that runs its
        work undecomposed, so that fallback always fits and the graph never
        holds more than ``max_tasks`` tasks.
        """
        graph = run.graph
        if run.tasks_promised == 0:
            plans = [t for t in graph if t.spec.kind == "plan" and t.state != "done"]
            run.tasks_promised = len(graph) + len(plans)
        # This plan's own reserved task is released; its new plans reserve one each.
        cost = len(delta.add) + sum(1 for s in delta.add if s.kind == "plan") - 1
        limit = self.config.max_tasks
        # No await between the check and the count, so parallel plans cannot
        # both take the same room.
        if limit is None or run.tasks_promised + cost <= limit:
            run.tasks_promised += cost
            return delta
        name = str(spec.meta.get("name", spec.id))
        notes.append(
            f"planning {name!r} proposed {len(delta.add)} tasks, which would pass the run's "
            f"limit of {limit} tasks; it ran as a single task instead"
        )
        single = TaskSpec(
            id=f"{name}.1",
            description=spec.description,
            role=self._first_role(),
            depth=spec.depth + 1,
            parent=name,
        )
        return self._wire(
            [single],
            target=str(spec.meta.get("target", spec.id)),
            inherit=tuple(spec.meta.get("inherit", ())),
            plan_id=spec.id,
        )

    def _wire(
        self,
        specs: Sequence[TaskSpec],
        *,
        target: str,
        inherit: tuple[str, ...],
        plan_id: str,
    ) -> GraphDelta:
        """Turn a plan's subtasks into one delta that hooks them into the graph.

        Subtasks without dependencies inherit the planned task's own; subtasks
        nothing depends on feed ``target``. A non-atomic subtask becomes a plan
        task plus a join under its id.
        """
        ids = {s.id for s in specs}
        depended_on = {d for s in specs for d in s.depends_on}
        added: list[TaskSpec] = []
        for spec in specs:
            depends_on = spec.depends_on or inherit
            if spec.kind == "plan":
                sub_plan = TaskSpec(
                    id=f"{spec.id}.plan",
                    description=spec.description,
                    role=PLANNER_ROLE,
                    kind="plan",
                    cost_s=self.config.plan_cost_s,
                    depth=spec.depth,
                    parent=spec.parent,
                    meta={
                        "name": spec.id,
                        "target": spec.id,
                        "inherit": depends_on,
                        "work_cost_s": spec.cost_s,
                    },
                )
                join = replace(
                    spec,
                    kind="join",
                    cost_s=0.0,
                    depends_on=(*depends_on, sub_plan.id),
                    meta={**spec.meta, "inherit": depends_on},
                )
                added.extend([sub_plan, join])
            elif "review_rounds" in spec.meta:
                added.extend(self.changes.review_loop(spec, depends_on))
            else:
                added.append(replace(spec, depends_on=depends_on))
        assert all(d in ids or d in inherit for s in specs for d in s.depends_on)
        sinks = [s.id for s in specs if s.id not in depended_on]
        return GraphDelta(
            add=tuple(added),
            add_edges=tuple((sink, target) for sink in sinks),
            reason=decomposition_reason(plan_id),
        )

    def _inputs(self, run: _Run, task_id: str) -> list[Input]:
        graph = run.graph
        inputs = []
        for pred in self._natural_order(run, graph.predecessors(task_id)):
            task = graph.task(pred)
            if task.spec.kind == "plan":
                continue
            inputs.append(Input(pred, task.spec.description, task.output or ""))
        return inputs

    def _natural_order(self, run: _Run, task_ids: Collection[str]) -> list[str]:
        """Return ``task_ids`` sorted by :func:`_natural_key`."""
        if len(task_ids) < 2:
            return list(task_ids)
        keys = run.natural_keys
        for task_id in task_ids:
            if task_id not in keys:
                keys[task_id] = _natural_key(task_id)
        return sorted(task_ids, key=keys.__getitem__)

    def _first_role(self) -> str:
        return next(iter(self.config.roles))

    # --- result -------------------------------------------------------------------

    def _result(self, run: _Run) -> RunResult:
        graph = run.graph
        records = []
        sequential = 0.0
        for task in graph:
            if task.agent is not None and task.started_at is not None and task.finished_at:
                sequential += task.finished_at - task.started_at
            records.append(
                TaskRecord(
                    id=task.id,
                    description=task.spec.description,
                    role=task.spec.role,
                    kind=task.spec.kind,
                    depends_on=tuple(self._natural_order(run, graph.predecessors(task.id))),
                    state=task.state,
                    agent=task.agent,
                    started_at=task.started_at,
                    finished_at=task.finished_at,
                    output=task.output,
                    error=task.error,
                )
            )

        # The answer is the output of the last sink: the synthesis task of a
        # planned run, or the last end of a ready-made graph.
        # A task that was replaced after failing has no dependents left, but
        # it is not an end of the graph.
        replaced = {t.spec.meta.get("replaces") for t in graph} | merged_away(t.spec for t in graph)
        sinks = [t for t in graph if not graph.successors(t.id) and t.id not in replaced]
        final = sinks[-1] if sinks else None
        answer = final.output if final is not None and final.state == "done" else None

        notes = list(run.notes)
        for task in graph:
            if task.state == "failed":
                notes.append(f"task {task.id!r} failed: {task.error}")
        if final is not None and final.state == "cancelled":
            notes.append(f"no answer: {final.error}")

        usage = Usage(
            prompt_tokens=sum(c.usage.prompt_tokens for c in run.model_calls),
            completion_tokens=sum(c.usage.completion_tokens for c in run.model_calls),
        )
        stop = run.budget.stop_reason(t.id for t in graph if not t.finished)
        status: RunStatus = "succeeded" if answer is not None else "failed"
        if stop is not None:
            # Even with an answer: a ready-made graph's last end may have
            # run while other tasks did not.
            status = "stopped"
        return RunResult(
            request=run.request,
            status=status,
            answer=answer,
            tasks=tuple(records),
            makespan_s=self._now(run),
            sequential_s=sequential,
            llm_calls=len(run.model_calls),
            usage=usage,
            notes=tuple(notes),
            context=asdict(run.context.stats) if run.context is not None else None,
            stop=stop,
            run_id=run.run_id,
        )


def _supports_tools(model: ChatModel) -> TypeGuard[ToolCallingModel]:
    # NOTE: a backend without tool support (the simulator, test fakes) runs
    # work tasks without the registered tools rather than failing them.
    return getattr(model, "supports_tools", False) is True


def _natural_key(task_id: str) -> tuple[tuple[int, int | str], ...]:
    """Order ids like ``t.2`` before ``t.10``."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in task_id.split("."))
