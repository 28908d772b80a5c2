"""Chrome trace-event JSON of a run, for Perfetto (ui.perfetto.dev) and chrome://tracing.

One process for the run, one track (thread id) per agent, named by
``thread_name`` metadata, plus track 0, ``engine``, for tasks that ran
without an agent (joins). Every task that started gets one complete
(``"ph": "X"``) event with category ``task`` on its agent's track. Its
model calls are complete events with category ``llm``, nested inside it.
Times are microseconds from the run's start, as the format requires.
Format: the Trace Event Format document of the Chromium project.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dyntaskmas.observe.run_view import RunView, TaskView

PID = 1
ENGINE_TID = 0


def _us(seconds: float) -> float:
    # Microseconds, kept to the nanosecond so that rounding never reorders events.
    return round(seconds * 1_000_000, 3)


def agent_tracks(view: RunView) -> dict[str, int]:
    """Return each agent's track id: 1, 2, ... in the order agents first started a task."""
    return {agent: index for index, agent in enumerate(view.agent_names, start=1)}


def _metadata(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": PID, "tid": tid, "args": args}


def chrome_trace(view: RunView) -> dict[str, Any]:
    """Return the run as a Chrome trace-event JSON object."""
    tracks = agent_tracks(view)
    events: list[dict[str, Any]] = [
        {
            "name": "process_name",
            "ph": "M",
            "pid": PID,
            "tid": ENGINE_TID,
            "args": {"name": f"dyntaskmas run {view.run_id}"},
        },
        {
            "name": "thread_name",
            "ph": "M",
            "pid": PID,
            "tid": ENGINE_TID,
            "args": {"name": "engine"},
        },
    ]
    for agent, tid in tracks.items():
        events.append(
            {"name": "thread_name", "ph": "M", "pid": PID, "tid": tid, "args": {"name": agent}}
        )
        events.append(
            {
                "name": "thread_sort_index",
                "ph": "M",
                "pid": PID,
                "tid": tid,
                "args": {"sort_index": tid},
            }
        )

    for task in view.tasks.values():
        if task.started_at is None:
            continue
        tid = tracks.get(task.agent, ENGINE_TID) if task.agent is not None else ENGINE_TID
        end = task.finished_at if task.finished_at is not None else view.last_at
        events.append(
            {
                "name": task.id,
                "cat": "task",
                "ph": "X",
                "pid": PID,
                "tid": tid,
                "ts": _us(task.started_at),
                "dur": _us(end - task.started_at),
                "args": _task_args(task),
            }
        )
        for call in task.calls:
            if call.started_at < task.started_at:
                continue  # a call of an earlier attempt of the task
            # Clamped into the task, so viewers nest the call under it.
            start = call.started_at
            stop = min(max(call.finished_at, start), end)
            events.append(
                {
                    "name": f"chat {call.model}",
                    "cat": "llm",
                    "ph": "X",
                    "pid": PID,
                    "tid": tid,
                    "ts": _us(start),
                    "dur": _us(stop - start),
                    "args": {
                        "task": task.id,
                        "prompt_tokens": call.prompt_tokens,
                        "completion_tokens": call.completion_tokens,
                        "attempts": call.attempts,
                    },
                }
            )
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def _task_args(task: TaskView) -> dict[str, Any]:
    args: dict[str, Any] = {
        "description": task.description,
        "role": task.role,
        "kind": task.kind,
        "state": task.state,
        "prompt_tokens": task.prompt_tokens,
        "completion_tokens": task.completion_tokens,
    }
    if task.error is not None:
        args["error"] = task.error
    return args


def write_chrome_trace(view: RunView, path: Path | str) -> None:
    """Write :func:`chrome_trace` of ``view`` to ``path`` as JSON."""
    Path(path).write_text(json.dumps(chrome_trace(view)), encoding="utf-8")
