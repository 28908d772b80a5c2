"""The plain-text views of a run: answer, task table, summary and notes."""

from __future__ import annotations

from dataclasses import replace

from dyntaskmas.engine.result import RunResult, TaskRecord
from dyntaskmas.format import format_answer, format_result, format_summary, format_tasks
from dyntaskmas.graph.task import TaskState
from dyntaskmas.llm.types import Usage


def record(
    task_id: str,
    *,
    agent: str | None = "agent-1",
    started_at: float | None = 0.0,
    finished_at: float | None = 1.0,
    depends_on: tuple[str, ...] = (),
    state: TaskState = "done",
    error: str | None = None,
    description: str | None = None,
) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        description=description or f"Do {task_id}",
        role="researcher",
        kind="work",
        depends_on=depends_on,
        state=state,
        agent=agent,
        started_at=started_at,
        finished_at=finished_at,
        output=None if state != "done" else f"output of {task_id}",
        error=error,
    )


def run_result(
    tasks: tuple[TaskRecord, ...], *, answer: str | None, notes: tuple[str, ...] = ()
) -> RunResult:
    return RunResult(
        request="Which is deeper?",
        status="succeeded" if answer is not None else "failed",
        answer=answer,
        tasks=tasks,
        makespan_s=2.0,
        sequential_s=3.0,
        llm_calls=len(tasks),
        usage=Usage(prompt_tokens=120, completion_tokens=45),
        notes=notes,
    )


SUCCEEDED = run_result(
    (
        record("t.1", agent="agent-1", started_at=0.0, finished_at=1.25),
        record("t.2", agent="agent-2", started_at=0.0, finished_at=0.75),
        record("join", agent=None, started_at=1.25, finished_at=1.25, depends_on=("t.1", "t.2")),
        record("answer", agent="agent-1", started_at=1.25, finished_at=2.0, depends_on=("join",)),
    ),
    answer="The Mariana Trench is deeper.",
    notes=("plan t: dropped a repeated subtask",),
)

FAILED = run_result(
    (
        record("t.1", started_at=0.0, finished_at=0.5, state="failed", error="HTTP 400: bad"),
        record(
            "answer",
            agent=None,
            started_at=None,
            finished_at=0.5,
            depends_on=("t.1",),
            state="cancelled",
            error="not run: depends on 't.1', which failed",
        ),
    ),
    answer=None,
    notes=("task 't.1' failed: HTTP 400: bad",),
)


def task_line(text: str, task_id: str) -> str:
    """Return the table row of ``task_id``: the line that starts with its id."""
    rows = [line for line in text.splitlines() if line.split()[:1] == [task_id]]
    assert len(rows) >= 1, f"no row for {task_id!r} in:\n{text}"
    return rows[0]


def test_tasks_table_lists_every_task() -> None:
    text = format_tasks(SUCCEEDED)

    assert text.startswith(f"Task graph: {len(SUCCEEDED.tasks)} tasks")
    for task in SUCCEEDED.tasks:
        row = task_line(text, task.id)
        assert (task.agent or "-") in row
        assert f"{task.started_at:.2f}" in row
        assert f"{task.finished_at:.2f}" in row
        assert f"{task.id}: {task.description}" in text
    assert "t.1, t.2" in task_line(text, "join")


def test_tasks_table_orders_rows_by_start() -> None:
    """Rows go by start time, then end time, and tasks that never started go last."""
    unstarted = record("later", agent=None, started_at=None, finished_at=None, state="cancelled")
    result = run_result((unstarted, *SUCCEEDED.tasks), answer=None)
    text = format_tasks(result)

    rows = [line.split()[0] for line in text.splitlines()[2 : 2 + len(result.tasks)]]
    assert rows == ["t.2", "t.1", "join", "answer", "later"]


def test_tasks_table_draws_timeline_bars() -> None:
    text = format_tasks(SUCCEEDED)

    # answer ran from 1.25 s to the end at 2.0 s: the last 12 of 32 cells.
    assert "#" * 12 in task_line(text, "answer")
    assert "#" * 13 not in task_line(text, "answer")
    assert "#" not in task_line(text, "join")
    assert "|" in task_line(text, "join")


def test_tasks_table_shows_failures() -> None:
    text = format_tasks(FAILED)

    assert "t.1 [failed]: Do t.1" in text
    assert "HTTP 400: bad" in text
    assert "answer [cancelled]" in text
    assert "not run: depends on 't.1', which failed" in text
    assert task_line(text, "answer").split()[2:4] == ["-", "-"]


def test_long_description_is_cut() -> None:
    long = "word " * 100
    result = run_result((record("t.1", description=long),), answer="ok")
    text = format_tasks(result)

    description_line = next(line for line in text.splitlines() if line.startswith("  t.1:"))
    assert description_line.endswith("...")
    assert len(description_line) < len(long)


def test_result_shows_answer_summary_and_notes() -> None:
    text = format_result(SUCCEEDED)

    assert text.startswith("Answer:\n  The Mariana Trench is deeper.")
    assert format_tasks(SUCCEEDED) in text
    assert format_summary(SUCCEEDED) in text
    assert "Notes:\n  - plan t: dropped a repeated subtask" in text


def test_failed_run_has_no_answer() -> None:
    text = format_result(FAILED)

    assert format_answer(FAILED).startswith("Answer: (none")
    assert text.startswith("Answer: (none")
    assert "Run failed" in text
    assert "  - task 't.1' failed: HTTP 400: bad" in text


def test_summary_states_figures() -> None:
    text = format_summary(SUCCEEDED)

    assert text.startswith("Run succeeded")
    assert f"makespan {SUCCEEDED.makespan_s:.2f} s" in text
    assert f"sum of task durations {SUCCEEDED.sequential_s:.2f} s" in text
    assert f"({SUCCEEDED.sequential_s / SUCCEEDED.makespan_s:.2f}x)" in text
    assert f"up to {SUCCEEDED.max_concurrency} tasks at once" in text
    assert f"{SUCCEEDED.llm_calls} model calls" in text
    assert "120 prompt + 45 completion tokens" in text


def test_summary_of_zero_makespan() -> None:
    unstarted = record("t.1", agent=None, started_at=None, finished_at=None, state="cancelled")
    result = replace(run_result((unstarted,), answer=None), makespan_s=0.0, sequential_s=0.0)

    assert "(0.00x)" in format_summary(result)
    assert task_line(format_tasks(result), "t.1").split()[2:5] == ["-", "-", "-"]
