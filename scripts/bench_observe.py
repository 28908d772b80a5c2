"""Measure what observing a run costs: folding events, the report, the trace.

Builds the events of a synthetic run of N tasks (a layered graph, 4 agents,
one model call per task with a 1,000-character prompt and a 400-character
output), then times, as medians of --repeats runs:

- folding every event into a RunView (the work each live subscriber does),
- the HTML report (render_report), and its size,
- the Chrome trace (chrome_trace plus json.dumps).

    .venv/bin/python scripts/bench_observe.py --tasks 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.observe.chrome_trace import chrome_trace
from dyntaskmas.observe.events import (
    Event,
    GraphChanged,
    LLMCallFinished,
    RunFinished,
    RunStarted,
    TaskFinished,
    TaskReady,
    TaskStarted,
)
from dyntaskmas.observe.report import render_report
from dyntaskmas.observe.run_view import build_run_view

AGENTS = 4
WIDTH = 10


def synthetic_events(tasks: int) -> list[Event]:
    """Return the events of a run of ``tasks`` tasks in layers of WIDTH, each on one agent."""
    specs = []
    for index in range(tasks):
        layer = index // WIDTH
        deps = tuple(f"t{d}" for d in range((layer - 1) * WIDTH, layer * WIDTH)) if layer else ()
        specs.append(
            TaskSpec(id=f"t{index}", description=f"step {index}", role="w", depends_on=deps[:3])
        )
    run = "bench"
    events: list[Event] = [
        RunStarted(run, 0.0, "a synthetic request", AGENTS),
        GraphChanged(run, 0.0, tuple(specs), (), (), "initial graph"),
    ]
    prompt = (("system", "You are a worker."), ("user", "x" * 1000))
    for index, spec in enumerate(specs):
        start = index * 0.25
        agent = f"agent-{index % AGENTS + 1}"
        events += [
            TaskReady(run, start, spec.id, 1.0),
            TaskStarted(run, start, spec.id, agent, "e"),
            LLMCallFinished(
                run, start + 1, spec.id, agent, "e", "m", start, 1.0, 300, 100, 1, prompt
            ),
            TaskFinished(run, start + 1, spec.id, agent, "y" * 400, 1.0, 300, 100),
        ]
    events.append(RunFinished(run, tasks * 0.25 + 1, "succeeded", tasks * 0.25 + 1, tasks))
    return events


def median_seconds(action: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    events = synthetic_events(args.tasks)
    view = build_run_view(events)
    fold = median_seconds(lambda: build_run_view(events), args.repeats)
    report = median_seconds(lambda: render_report(view), args.repeats)
    trace = median_seconds(lambda: json.dumps(chrome_trace(view)), args.repeats)
    size = len(render_report(view).encode("utf-8"))
    print(f"tasks: {args.tasks}, events: {len(events)}")
    print(f"fold into RunView: {fold * 1e3:.1f} ms ({fold / len(events) * 1e6:.2f} us per event)")
    print(f"HTML report: {report * 1e3:.1f} ms, {size / 1e6:.2f} MB")
    print(f"Chrome trace: {trace * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
