"""The benchmark experiments: each runs its workloads and returns a table of rows.

=============  ==============================================================
``baseline``   makespan of each policy on the simple, medium and complex trip
               requests, and the reduction against one agent
``scaling``    throughput and efficiency for 1 to 256 agents, with a server
               per agent and with one shared server of 32 slots
``utilisation`` the shared server's busy-slot fraction under each policy
``asynchow``   makespan against its lower bound and the optimum on AsyncHow
``overhead``   the engine's own CPU time per no-op task
``theta``      context tokens, deliveries, coordination time and task
               success for each relevance threshold θ
``adaptive``   throughput, 429 rate and p95 latency of fixed concurrency
               limits against the allocator on the hidden-capacity server,
               also with load-independent 429s
``optimiser``  planned runs with the workflow optimiser off and on: makespan,
               tasks, calls and tokens on tiny, large and nested subtasks
``context``    the context manager's commits and θ decisions per second
               with 16 to 256 concurrent agents, in memory and on Redis;
               not part of ``all`` (see :data:`STANDALONE_EXPERIMENTS`)
=============  ==============================================================

:class:`Sizes` contains every size. :data:`FULL` is what ``dyntaskmas bench``
runs and :data:`QUICK` a small version for smoke tests, whose numbers mean
nothing. Simulated runs are deterministic, so they run once; the overhead
runs are repeated and reported as medians.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dyntaskmas.bench.adaptive import AdaptivePolicy, run_policy
from dyntaskmas.bench.asynchow import ASYNC_FILE, plan_workload, read_plans
from dyntaskmas.bench.context_load import StoreKind, local_redis, run_load
from dyntaskmas.bench.granularity import planned_workloads, run_planned
from dyntaskmas.bench.harness import POLICIES, Policy, RunSettings, run_workload
from dyntaskmas.bench.metrics import makespan_lower_bound, ratio_summary, scaling_efficiency
from dyntaskmas.bench.optimum import optimal_makespan
from dyntaskmas.bench.overhead import measure
from dyntaskmas.bench.theta import THETAS, TOPICS, run_theta, theta_workload
from dyntaskmas.bench.workloads import (
    COMPLEXITIES,
    Workload,
    describe,
    layered_dag,
    travel_batch,
    travel_request,
)
from dyntaskmas.sim.capacity import CapacityProfile

logger = logging.getLogger(__name__)

EXPERIMENTS: tuple[str, ...] = (
    "baseline",
    "scaling",
    "utilisation",
    "asynchow",
    "overhead",
    "theta",
    "adaptive",
    "optimiser",
)
#: Experiments that ``all`` leaves out: ``context`` takes about 2 minutes of real
#: time on 2 cores and starts a redis-server, against under a second for
#: ``theta``, so it runs only when named.
STANDALONE_EXPERIMENTS: tuple[str, ...] = ("context",)
#: Policies compared on the AsyncHow plans, where the agent count is the variable.
ASYNCHOW_POLICIES: tuple[Policy, ...] = (
    "level_sync",
    "fifo",
    "paper_summary",
    "critical_path",
    "critical_path_seconds",
)
#: A plan counts as worse than FIFO when its makespan exceeds FIFO's by this factor.
FIFO_TOLERANCE = 1.01


@dataclass(frozen=True)
class Sizes:
    """Every size the experiments use."""

    baseline_agents: int = 4
    server_slots: int = 32
    scaling_agents: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    scaling_layers: int = 4
    scaling_width: int = 1024
    utilisation_requests: int = 48
    utilisation_layers: int = 8
    utilisation_width: int = 64
    utilisation_agents: int = 32
    asynchow_agents: tuple[int, ...] = (1, 2, 4, 8)
    # None: every plan in the file.
    asynchow_plans: int | None = None
    overhead_tasks: tuple[int, ...] = (1_000, 10_000, 100_000)
    overhead_repeats: tuple[int, ...] = (7, 5, 3)
    seed: int = 7
    thetas: tuple[float, ...] = THETAS
    theta_branches: int = len(TOPICS)
    theta_repeats: int = 5
    context_agents: tuple[int, ...] = (16, 64, 256)
    context_rounds: int = 5
    # Real seconds each agent waits per round, in place of its model call: a
    # stress test far faster than any model, and a fast model call.
    context_think_s: tuple[float, ...] = (0.02, 1.0)
    #: Worker processes for the Redis rows; memory rows always use one.
    context_processes: tuple[int, ...] = (1, 2)
    adaptive_limits: tuple[int, ...] = (4, 16, 24, 32, 64)
    adaptive_starts: tuple[int, ...] = (4, 100)
    adaptive_agents: int = 128
    adaptive_duration_s: float = 180.0
    adaptive_warmup_s: float = 60.0
    #: Share of requests that get a 429 whatever the load in the second
    #: scenario of ``adaptive``; 0 leaves that scenario out.
    adaptive_random_429: float = 0.1
    optimiser_agents: tuple[int, ...] = (2, 8, 32)
    # Fixed latency of every model call, in seconds: none, and a remote API's.
    optimiser_call_overheads_s: tuple[float, ...] = (0.0, 1.5)


FULL = Sizes()
QUICK = Sizes(
    scaling_agents=(1, 2, 4, 8),
    scaling_width=32,
    utilisation_requests=6,
    utilisation_layers=3,
    utilisation_width=16,
    utilisation_agents=8,
    server_slots=8,
    asynchow_plans=20,
    overhead_tasks=(100, 1_000),
    overhead_repeats=(1, 1),
    thetas=(0.0, 0.5),
    theta_branches=3,
    theta_repeats=1,
    context_agents=(2, 4),
    context_rounds=2,
    context_think_s=(0.0,),
    context_processes=(1, 2),
    adaptive_limits=(4, 32),
    adaptive_starts=(4,),
    adaptive_agents=48,
    adaptive_duration_s=30.0,
    adaptive_warmup_s=10.0,
    optimiser_agents=(2, 32),
    optimiser_call_overheads_s=(1.5,),
)


@dataclass(frozen=True)
class ExperimentResult:
    """The table of one experiment: ordered columns, one dict per row, and notes."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]
    notes: tuple[str, ...] = ()
    # Workload shapes, by workload name, for the report.
    shapes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Rows of a time series for the plot, such as throughput per interval.
    series: tuple[Mapping[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return ``{"experiment": NAME, "rows": [...]}`` plus notes and shapes."""
        data: dict[str, Any] = {
            "experiment": self.name,
            "rows": [dict(row) for row in self.rows],
            "notes": list(self.notes),
            "shapes": {name: dict(shape) for name, shape in self.shapes.items()},
        }
        if self.series:
            data["series"] = [dict(point) for point in self.series]
        return data


def _shape(workload: Workload) -> dict[str, Any]:
    shape = describe(workload)
    return {
        "tasks": shape.tasks,
        "edges": shape.edges,
        "width": shape.width,
        "depth": shape.depth,
        "min_cost_s": round(shape.min_cost_s, 3),
        "median_cost_s": round(shape.median_cost_s, 3),
        "max_cost_s": round(shape.max_cost_s, 3),
        "total_work_s": round(shape.total_work_s, 3),
        "critical_path_s": round(shape.critical_path_s, 3),
    }


# --- baseline ---------------------------------------------------------------------


def baseline(sizes: Sizes = FULL) -> ExperimentResult:
    """Run every policy on each trip complexity and compare with one agent."""
    rows: list[dict[str, Any]] = []
    shapes = {}
    settings = RunSettings(agents=sizes.baseline_agents, slots=sizes.server_slots)
    for complexity in COMPLEXITIES:
        workload = travel_request(complexity, seed=sizes.seed)
        shapes[workload.name] = _shape(workload)
        makespans = {
            policy: run_workload(workload, policy, settings).makespan_s for policy in POLICIES
        }
        sequential = makespans["sequential"]
        for policy in POLICIES:
            rows.append(
                {
                    "complexity": complexity,
                    "policy": policy,
                    "agents": 1 if policy == "sequential" else sizes.baseline_agents,
                    "makespan_s": round(makespans[policy], 3),
                    "reduction_vs_sequential": round(1 - makespans[policy] / sequential, 4),
                }
            )
    return ExperimentResult(
        name="baseline",
        title=f"Makespan by policy, {sizes.baseline_agents} agents, one server of "
        f"{sizes.server_slots} slots",
        columns=("complexity", "policy", "agents", "makespan_s", "reduction_vs_sequential"),
        rows=tuple(rows),
        shapes=shapes,
    )


# --- scaling ----------------------------------------------------------------------


def scaling(sizes: Sizes = FULL) -> ExperimentResult:
    """Measure throughput for each agent count, with a server per agent and with one shared."""
    workload = layered_dag(layers=sizes.scaling_layers, width=sizes.scaling_width, seed=sizes.seed)
    rows: list[dict[str, Any]] = []
    for layout in ("per_agent", "shared"):
        one_agent: float | None = None
        for agents in sizes.scaling_agents:
            slots = 1 if layout == "per_agent" else sizes.server_slots
            settings = RunSettings(agents=agents, slots=slots, layout=layout)
            result = run_workload(workload, "critical_path", settings)
            throughput = result.tasks / result.makespan_s
            if one_agent is None:
                one_agent = throughput / agents
            rows.append(
                {
                    "server": "one per agent" if layout == "per_agent" else "shared",
                    "agents": agents,
                    "server_slots": agents if layout == "per_agent" else sizes.server_slots,
                    "throughput_tasks_per_s": round(throughput, 4),
                    "efficiency": round(scaling_efficiency(throughput, agents, one_agent), 4),
                    "speedup": round(throughput / one_agent, 3),
                    "engine_cpu_s": round(result.cpu_s, 3),
                }
            )
    return ExperimentResult(
        name="scaling",
        title=f"Throughput by agent count on {workload.name} (critical-path priority)",
        columns=(
            "server",
            "agents",
            "server_slots",
            "throughput_tasks_per_s",
            "efficiency",
            "speedup",
            "engine_cpu_s",
        ),
        rows=tuple(rows),
        notes=(
            "Throughput is tasks per simulated second. 'one per agent' gives each agent a "
            "1-slot server of its own, so the server is never the limit; 'shared' puts all "
            f"agents on one server of {sizes.server_slots} slots. engine_cpu_s is the real CPU "
            "time of the whole simulated run (engine and simulator together).",
        ),
        shapes={workload.name: _shape(workload)},
    )


# --- utilisation ------------------------------------------------------------------


def utilisation(sizes: Sizes = FULL) -> ExperimentResult:
    """Measure the shared server's utilisation under each policy on two busy workloads."""
    workloads = (
        travel_batch(sizes.utilisation_requests, seed=sizes.seed),
        layered_dag(
            layers=sizes.utilisation_layers, width=sizes.utilisation_width, seed=sizes.seed
        ),
    )
    settings = RunSettings(agents=sizes.utilisation_agents, slots=sizes.server_slots)
    rows: list[dict[str, Any]] = []
    for workload in workloads:
        for policy in POLICIES:
            result = run_workload(workload, policy, settings)
            rows.append(
                {
                    "workload": workload.name,
                    "policy": policy,
                    "utilisation": round(result.utilisation, 4),
                    "utilisation_when_saturated": round(result.saturated_utilisation, 4),
                    "saturated_share": round(result.saturated_share, 4),
                    "makespan_s": round(result.makespan_s, 3),
                }
            )
    return ExperimentResult(
        name="utilisation",
        title=f"Server utilisation by policy, {sizes.utilisation_agents} agents, one server "
        f"of {sizes.server_slots} slots",
        columns=(
            "workload",
            "policy",
            "utilisation",
            "utilisation_when_saturated",
            "saturated_share",
            "makespan_s",
        ),
        rows=tuple(rows),
        notes=(
            "utilisation: busy slot-seconds over slots times the run's length. "
            "utilisation_when_saturated: the same over only the time when at least as many "
            "tasks had their dependencies done (started or not) as the server has slots; "
            "saturated_share: that time's share of the run.",
        ),
        shapes={w.name: _shape(w) for w in workloads},
    )


# --- asynchow ---------------------------------------------------------------------


def asynchow(data_dir: Path, sizes: Sizes = FULL) -> ExperimentResult:
    """Compare each policy's makespan with the lower bound and the optimum on the AsyncHow plans.

    The lower bound is max(critical path, work / k); the optimum comes from
    :func:`~dyntaskmas.bench.optimum.optimal_makespan`, started from the
    best policy's makespan.
    """
    plans = read_plans(data_dir / "asynchow" / ASYNC_FILE)
    if sizes.asynchow_plans is not None:
        plans = plans[: sizes.asynchow_plans]
    rows: list[dict[str, Any]] = []
    unproven = 0
    for agents in sizes.asynchow_agents:
        ratios: dict[Policy, list[float]] = {policy: [] for policy in ASYNCHOW_POLICIES}
        versus_optimum: dict[Policy, list[float]] = {policy: [] for policy in ASYNCHOW_POLICIES}
        versus_fifo: dict[Policy, list[float]] = {policy: [] for policy in ASYNCHOW_POLICIES}
        settings = RunSettings(agents=agents, layout="per_agent")
        for plan in plans:
            workload = plan_workload(plan)
            shape = describe(workload)
            bound = makespan_lower_bound(shape.critical_path_s, shape.total_work_s, agents)
            makespans = {
                policy: run_workload(workload, policy, settings).makespan_s
                for policy in ASYNCHOW_POLICIES
            }
            optimum = _optimum(workload, agents, bound, min(makespans.values()))
            unproven += not optimum[1]
            for policy in ASYNCHOW_POLICIES:
                ratios[policy].append(makespans[policy] / bound)
                versus_optimum[policy].append(makespans[policy] / optimum[0])
                versus_fifo[policy].append(makespans[policy] / makespans["fifo"])
        for policy in ASYNCHOW_POLICIES:
            mean_ratio, max_ratio = ratio_summary(ratios[policy])
            mean_optimum, max_optimum = ratio_summary(versus_optimum[policy])
            rows.append(
                {
                    "agents": agents,
                    "policy": policy,
                    "mean_ratio": round(mean_ratio, 4),
                    "max_ratio": round(max_ratio, 4),
                    "mean_vs_optimum": round(mean_optimum, 4),
                    "max_vs_optimum": round(max_optimum, 4),
                    "plans": len(plans),
                    "worse_than_fifo": sum(r > FIFO_TOLERANCE for r in versus_fifo[policy]),
                    "max_vs_fifo": round(max(versus_fifo[policy]), 4),
                }
            )
    notes = [
        "Each step's model call takes its duration on the virtual clock; durations are "
        "scaled per plan to a mean of 10 s. mean_ratio and max_ratio compare with "
        "max(critical path, work / k), the *_vs_optimum columns with the shortest possible "
        "makespan. worse_than_fifo counts plans whose makespan exceeds FIFO's by more than "
        "1 %; max_vs_fifo is the largest makespan / FIFO's.",
    ]
    if unproven:
        notes.append(
            f"The optimum search hit its node limit on {unproven} (plan, k) pairs; there the "
            "best schedule found stands in for the optimum."
        )
    return ExperimentResult(
        name="asynchow",
        title=f"AsyncHow: makespan against the lower bound and the optimum, {len(plans)} plans",
        columns=(
            "agents",
            "policy",
            "mean_ratio",
            "max_ratio",
            "mean_vs_optimum",
            "max_vs_optimum",
            "plans",
            "worse_than_fifo",
            "max_vs_fifo",
        ),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def _optimum(workload: Workload, agents: int, bound: float, best: float) -> tuple[float, bool]:
    """Return the optimal makespan and whether it is proven; skip the search when ``best`` is."""
    if best <= bound * (1 + 1e-9):
        return best, True
    index = {task.id: position for position, task in enumerate(workload.tasks)}
    result = optimal_makespan(
        [task.duration_s or 0.0 for task in workload.tasks],
        [[index[d] for d in task.depends_on] for task in workload.tasks],
        agents,
        upper_bound=best,
    )
    return result.makespan, result.proven


# --- overhead ---------------------------------------------------------------------


def overhead(sizes: Sizes = FULL) -> ExperimentResult:
    """Measure the engine's CPU time per task on no-op graphs of each size."""
    rows: list[dict[str, Any]] = []
    for tasks, repeats in zip(sizes.overhead_tasks, sizes.overhead_repeats, strict=True):
        sample = measure(tasks, repeats=repeats)
        rows.append(
            {
                "tasks": tasks,
                "cpu_us_per_task": round(sample.cpu_us_per_task, 1),
                "wall_s": round(sample.wall_s, 4),
                "agents": sample.agents,
                "repeats": repeats,
            }
        )
    return ExperimentResult(
        name="overhead",
        title="Engine CPU time per no-op task (medians)",
        columns=("tasks", "cpu_us_per_task", "wall_s", "agents", "repeats"),
        rows=tuple(rows),
        notes=(
            "No-op tasks in levels of 100, each on 1 to 3 tasks of the level before; the "
            "model answers at once, so all the time is the engine's, graph building included.",
        ),
    )


# --- theta ------------------------------------------------------------------------


def theta(sizes: Sizes = FULL) -> ExperimentResult:
    """Run the fact-passing workload once per θ and measure what reached each prompt."""
    workload = theta_workload(sizes.theta_branches)
    rows: list[dict[str, Any]] = []
    for value in sizes.thetas:
        point = run_theta(workload, value, repeats=sizes.theta_repeats)
        rows.append(
            {
                "theta": value,
                "context_tokens": point.context_tokens,
                "updates_delivered": point.updates_delivered,
                "coordination_s": round(point.coordination_s, 5),
                "task_success": round(point.task_success, 4),
            }
        )
    return ExperimentResult(
        name="theta",
        title=f"Relevance threshold θ on {sizes.theta_branches} branches of fact -> work -> use",
        columns=("theta", "context_tokens", "updates_delivered", "coordination_s", "task_success"),
        rows=tuple(rows),
        notes=(
            "Each use task needs the fact of the next branch, which is no predecessor of it. "
            "task_success: share of use tasks whose prompt contained the needed fact. "
            "context_tokens: tokens of context placed in all prompts. updates_delivered: "
            "(update, task) pairs placed in prompts, predecessors' outputs included. "
            f"coordination_s: real seconds in publish and context_for per run, median of "
            f"{sizes.theta_repeats}; the rest is deterministic in virtual time.",
        ),
    )


# --- adaptive ---------------------------------------------------------------------


def adaptive(sizes: Sizes = FULL) -> ExperimentResult:
    """Run each fixed limit and the allocator from each start on the hidden-capacity server.

    Then again with load-independent 429s added, when ``adaptive_random_429``
    is above 0. The series, for the plot, cover the first scenario only.
    """
    policies = [AdaptivePolicy(limit, adaptive=False) for limit in sizes.adaptive_limits]
    policies += [AdaptivePolicy(limit, adaptive=True) for limit in sizes.adaptive_starts]
    scenarios: list[tuple[str, CapacityProfile | None]] = [("hidden capacity", None)]
    if sizes.adaptive_random_429 > 0:
        random_name = f"+ {sizes.adaptive_random_429:.0%} random 429s"
        scenarios.append((random_name, CapacityProfile(rate_429=sizes.adaptive_random_429)))
    rows: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    for (server, profile), policy in itertools.product(scenarios, policies):
        run = run_policy(
            policy,
            agents=sizes.adaptive_agents,
            duration_s=sizes.adaptive_duration_s,
            warmup_s=sizes.adaptive_warmup_s,
            profile=profile,
            seed=sizes.seed,
        )
        rows.append(
            {
                "server": server,
                "policy": policy.name,
                "throughput_tasks_per_s": round(run.throughput_tasks_per_s, 3),
                "rate_429": round(run.rate_429, 4),
                "p95_latency_s": round(run.p95_latency_s, 3),
            }
        )
        if profile is not None:
            continue
        series.extend(
            {
                "policy": policy.name,
                "start_s": point.start_s,
                "throughput_tasks_per_s": round(point.throughput_tasks_per_s, 3),
                "rate_429": round(point.rate_429, 4),
                "limit": round(point.limit, 2),
            }
            for point in run.series
        )
    notes = [
        f"Measured over simulated seconds {sizes.adaptive_warmup_s:g} to "
        f"{sizes.adaptive_duration_s:g} of each run. Each request takes 0.0005 s per prompt "
        "token plus 0.009 s per output token (60 to 140), twice that when it arrives with "
        "more than 24 in flight, and gets a 429 with Retry-After: 1 when more than 40 "
        "would be in flight. rate_429: share of attempts that got a 429. "
        "p95_latency_s: of successful attempts.",
    ]
    if sizes.adaptive_random_429 > 0:
        notes.append(
            f"random 429s: the same server also answers {sizes.adaptive_random_429:.0%} of "
            "the other requests, drawn at random, with a 429 and Retry-After: 1."
        )
    return ExperimentResult(
        name="adaptive",
        title=f"Fixed limits against the allocator, {sizes.adaptive_agents} agents, "
        "hidden-capacity server",
        columns=("server", "policy", "throughput_tasks_per_s", "rate_429", "p95_latency_s"),
        rows=tuple(rows),
        notes=tuple(notes),
        series=tuple(series),
    )


# --- optimiser --------------------------------------------------------------------


def optimiser(sizes: Sizes = FULL) -> ExperimentResult:
    """Run each planned workload with the workflow optimiser off and on."""
    rows: list[dict[str, Any]] = []
    for workload in planned_workloads():
        for overhead_s in sizes.optimiser_call_overheads_s:
            for agents in sizes.optimiser_agents:
                for optimise in (False, True):
                    run = run_planned(
                        replace(workload, call_overhead_s=overhead_s),
                        agents=agents,
                        optimise=optimise,
                    )
                    rows.append(
                        {
                            "workload": run.workload,
                            "call_overhead_s": overhead_s,
                            "agents": agents,
                            "policy": "on" if optimise else "off",
                            "makespan_s": round(run.makespan_s, 3),
                            "tasks_run": run.tasks_run,
                            "llm_calls": run.llm_calls,
                            "tokens": run.tokens,
                            "merged": run.merged,
                            "skipped_decompositions": run.skipped_decompositions,
                        }
                    )
    return ExperimentResult(
        name="optimiser",
        title="Workflow optimiser off and on, planned runs on one simulated server of 32 slots",
        columns=(
            "workload",
            "call_overhead_s",
            "agents",
            "policy",
            "makespan_s",
            "tasks_run",
            "llm_calls",
            "tokens",
            "merged",
            "skipped_decompositions",
        ),
        rows=tuple(rows),
        notes=(
            "A scripted planner on the simulated server plans each request: tiny_siblings "
            "into 12 subtasks of 16 output tokens, large_subtasks into 3 of 600, nested into "
            "4 subtasks that are planned again into 4 of 200 tokens each. call_overhead_s is "
            "a fixed latency added to every model call. tasks_run counts tasks that ran on an "
            "agent; merged counts subtasks the optimiser merged away; skipped_decompositions "
            "counts nested plans it ran as one task.",
        ),
    )


# --- context ----------------------------------------------------------------------


def context(sizes: Sizes = FULL) -> ExperimentResult:
    """Measure commits and θ decisions per second for each agent count and store."""
    rows: list[dict[str, Any]] = []
    notes = [
        f"Each agent runs {sizes.context_rounds} rounds of: wait think_s seconds, publish, ask "
        "for context; the agents of one process share one ContextManager, and several "
        "processes share one Redis key prefix. Without overhead an agent would commit "
        "1 / think_s times a second. Rates are per real second. decisions are θ decisions, "
        "one per (entry, asking task) pair weighed. cpu_ms_per_round: CPU time of all "
        "processes over all rounds.",
    ]
    with local_redis() as redis_url:
        stores: list[StoreKind] = ["memory"]
        if redis_url is None:
            notes.append(
                "Redis rows skipped: redis-server or redis-py is not installed; install "
                "Debian's redis-server and the 'redis' extra to measure them."
            )
        else:
            stores.append("redis")
        configurations = [
            (think_s, store, processes, agents)
            for think_s in sizes.context_think_s
            for store in stores
            for processes in (sizes.context_processes if store == "redis" else (1,))
            for agents in sizes.context_agents
            if processes <= agents
        ]
        for think_s, store, processes, agents in configurations:
            point = run_load(
                agents,
                store,
                rounds=sizes.context_rounds,
                think_s=think_s,
                redis_url=redis_url,
                processes=processes,
            )
            rows.append(
                {
                    "think_s": think_s,
                    "agents": agents,
                    "store": store,
                    "processes": processes,
                    "commits_per_s": round(point.commits_per_s, 1),
                    "decisions_per_s": round(point.decisions_per_s, 1),
                    "commits_per_s_per_agent": round(point.commits_per_s / agents, 2),
                    "cpu_ms_per_round": round(point.cpu_ms_per_round(sizes.context_rounds), 3),
                }
            )
    return ExperimentResult(
        name="context",
        title="Context manager throughput by concurrent agents and store",
        columns=(
            "think_s",
            "agents",
            "store",
            "processes",
            "commits_per_s",
            "decisions_per_s",
            "commits_per_s_per_agent",
            "cpu_ms_per_round",
        ),
        rows=tuple(rows),
        notes=tuple(notes),
    )


def run_experiment(name: str, *, data_dir: Path | None, sizes: Sizes = FULL) -> ExperimentResult:
    """Run the experiment called ``name``; ``asynchow`` needs ``data_dir``."""
    runners: dict[str, Callable[[], ExperimentResult]] = {
        "baseline": lambda: baseline(sizes),
        "scaling": lambda: scaling(sizes),
        "utilisation": lambda: utilisation(sizes),
        "overhead": lambda: overhead(sizes),
        "theta": lambda: theta(sizes),
        "adaptive": lambda: adaptive(sizes),
        "optimiser": lambda: optimiser(sizes),
        "context": lambda: context(sizes),
    }
    if name == "asynchow":
        if data_dir is None:
            raise ValueError("the asynchow experiment needs the data directory")
        return asynchow(data_dir, sizes)
    if name not in runners:
        known = ", ".join((*EXPERIMENTS, *STANDALONE_EXPERIMENTS))
        raise ValueError(f"experiment {name!r} is unknown; use one of {known}")
    logger.info("running experiment %s", name)
    return runners[name]()


def experiment_names(requested: str) -> Sequence[str]:
    """Return the experiments ``requested`` stands for: itself, or all of them for ``all``."""
    return EXPERIMENTS if requested == "all" else (requested,)
