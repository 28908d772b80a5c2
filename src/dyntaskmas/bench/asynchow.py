"""AsyncHow plans as benchmark workloads.

AsyncHow (Lin et al., "Graph-enhanced Large Language Models in Asynchronous
Plan Reasoning", ICML 2024; github.com/fangru-lin/graph-llm-asynchow-plan,
MIT) contains how-to plans of 3 to 17 steps with a dependency graph, a duration
per step and the optimal completion time with unlimited workers. The files
read here are JSON lists of objects with ``id``, ``title``, ``steps`` (step
id to text), ``step_deps`` (pairs ``[before, after]``) and ``durations_s``
(step id to ``[low, high]`` seconds).

Durations span 280 s to about ten years, so each plan is run on the virtual
clock after scaling its steps to a mean of :data:`MEAN_STEP_S`, the size of
an LLM call; makespan ratios do not depend on that scale.
:func:`read_plans` is the only function here that touches a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dyntaskmas.bench.workloads import BenchTask, Workload, scaled_durations
from dyntaskmas.errors import ConfigError

#: The mixed-DAG plans; the other two files hold only chains or only independent steps.
ASYNC_FILE = "async_benchmark.json"
#: Mean step duration after scaling, in seconds.
MEAN_STEP_S = 10.0


@dataclass(frozen=True)
class Plan:
    """One AsyncHow plan: steps in file order, dependency pairs, durations in seconds."""

    id: str
    title: str
    steps: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]
    durations_s: Mapping[str, float]


def read_plans(path: Path) -> list[Plan]:
    """Read AsyncHow plans from one of its JSON files.

    Raises :class:`~dyntaskmas.errors.ConfigError` naming the file when it
    is missing or not in AsyncHow's format.
    """
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"AsyncHow file {str(path)!r} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read AsyncHow file {str(path)!r}: {exc}") from None
    if not isinstance(items, list):
        raise ConfigError(f"AsyncHow file {str(path)!r} does not hold a JSON list of plans")
    return [
        parse_plan(item, where=f"plan {index} of {str(path)!r}") for index, item in enumerate(items)
    ]


def parse_plan(item: Any, *, where: str = "the plan") -> Plan:
    """Build a :class:`Plan` from one decoded JSON object; a step's duration is its low value."""
    try:
        steps = tuple(str(step) for step in item["steps"])
        edges = tuple((str(before), str(after)) for before, after in item["step_deps"])
        durations = {str(step): float(span[0]) for step, span in item["durations_s"].items()}
        plan = Plan(str(item["id"]), str(item["title"]), steps, edges, durations)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(
            f"{where} is not an AsyncHow plan ({type(exc).__name__}: {exc}); expected the "
            f"fields id, title, steps, step_deps and durations_s"
        ) from None
    missing = [step for step in steps if step not in durations]
    if missing:
        raise ConfigError(f"{where} ({plan.id}) has no duration for steps {missing}")
    return plan


def plan_workload(plan: Plan, *, mean_step_s: float = MEAN_STEP_S) -> Workload:
    """Return ``plan`` as a workload of duration tasks, steps in a topological order."""
    depends: dict[str, list[str]] = {step: [] for step in plan.steps}
    for before, after in plan.edges:
        depends[after].append(before)
    tasks = [
        BenchTask(
            id=f"s{step}",
            description=f"Step {step} of {plan.title}",
            role="worker",
            depends_on=tuple(f"s{d}" for d in depends[step]),
            duration_s=plan.durations_s[step],
        )
        for step in _topological(plan.steps, depends)
    ]
    return scaled_durations(Workload(name=plan.id, tasks=tuple(tasks)), mean_step_s)


def _topological(steps: Sequence[str], depends: Mapping[str, Sequence[str]]) -> list[str]:
    """Return ``steps`` with every step after its dependencies, otherwise in file order."""
    order: list[str] = []
    placed: set[str] = set()
    remaining = list(steps)
    while remaining:
        progress = [s for s in remaining if all(d in placed for d in depends[s])]
        if not progress:
            raise ConfigError(f"the steps {remaining} depend on each other in a cycle")
        for step in progress:
            order.append(step)
            placed.add(step)
        remaining = [s for s in remaining if s not in placed]
    return order
