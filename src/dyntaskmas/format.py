"""Plain-text views of a run result for the terminal.

Functions here return strings and print nothing, so they are tested
directly; :mod:`dyntaskmas.cli` prints them.
"""

from __future__ import annotations

import textwrap

from dyntaskmas.engine.result import RunResult, TaskRecord

_BAR_WIDTH = 32


def format_result(result: RunResult) -> str:
    """Return the answer, the task table with a timeline, and the run's figures."""
    sections = [
        format_answer(result),
        format_tasks(result),
        format_summary(result),
    ]
    if result.stop is not None:
        sections.append(format_stop(result))
    if result.notes:
        sections.append("Notes:\n" + "\n".join(f"  - {note}" for note in result.notes))
    return "\n\n".join(sections)


def format_stop(result: RunResult) -> str:
    """Return why the run stopped early and which tasks did not run."""
    stop = result.stop
    if stop is None:
        return ""
    not_run = ", ".join(stop.not_run) or "none"
    return f"Stopped early: {stop.message}\n  not run: {not_run}"


def format_answer(result: RunResult) -> str:
    if result.answer is None:
        if result.stop is not None:
            return "Answer: (none; the run stopped at a budget limit, see below)"
        return "Answer: (none; the run failed, see the notes below)"
    body = textwrap.indent(result.answer.strip() or "(empty)", "  ")
    return f"Answer:\n{body}"


def format_tasks(result: RunResult) -> str:
    """Return one line per task: id, kind/role, agent, times, a timeline bar, dependencies."""
    # Start order reads like a Gantt chart; tasks that never started go last.
    records = sorted(
        result.tasks,
        key=lambda r: (r.started_at is None, r.started_at or 0.0, r.finished_at or 0.0),
    )
    id_width = max([len("task"), *(len(r.id) for r in records)])
    role_width = max([len("role"), *(len(r.role) for r in records)])
    agent_width = max([len("agent"), *(len(r.agent or "-") for r in records)])
    header = (
        f"  {'task':<{id_width}}  {'role':<{role_width}}  {'agent':<{agent_width}}"
        f"  {'start s':>7}  {'end s':>7}  {'timeline':<{_BAR_WIDTH}}  depends on"
    )
    lines = [f"Task graph: {len(records)} tasks", header]
    for record in records:
        lines.append(
            f"  {record.id:<{id_width}}  {record.role:<{role_width}}"
            f"  {record.agent or '-':<{agent_width}}"
            f"  {_seconds(record.started_at):>7}  {_seconds(record.finished_at):>7}"
            f"  {_bar(record, result.makespan_s)}  {', '.join(record.depends_on) or '-'}"
        )
    lines.append("")
    lines.append("  Descriptions:")
    for record in records:
        state = "" if record.state == "done" else f" [{record.state}]"
        lines.append(f"  {record.id}{state}: {_one_line(record.description)}")
        if record.error:
            lines.append(f"      {record.error}")
    return "\n".join(lines)


def format_summary(result: RunResult) -> str:
    speedup = result.sequential_s / result.makespan_s if result.makespan_s > 0 else 0.0
    return (
        f"Run {result.status}: makespan {result.makespan_s:.2f} s, "
        f"sum of task durations {result.sequential_s:.2f} s ({speedup:.2f}x), "
        f"up to {_count(result.max_concurrency, 'task')} at once, "
        f"{_count(result.llm_calls, 'model call')}, "
        f"{result.usage.prompt_tokens} prompt + {result.usage.completion_tokens} "
        f"completion tokens" + (f"\nRun id: {result.run_id}" if result.run_id else "")
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _bar(record: TaskRecord, makespan_s: float) -> str:
    """Draw when the task ran, as a bar over the run's makespan."""
    if record.started_at is None or makespan_s <= 0:
        return " " * _BAR_WIDTH
    end = record.finished_at if record.finished_at is not None else makespan_s
    first = min(_BAR_WIDTH - 1, int(record.started_at / makespan_s * _BAR_WIDTH))
    last = min(_BAR_WIDTH, max(first + 1, round(end / makespan_s * _BAR_WIDTH)))
    mark = "#" if record.agent is not None else "|"
    return " " * first + mark * (last - first) + " " * (_BAR_WIDTH - last)


def _one_line(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
