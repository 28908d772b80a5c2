"""The HTML report of a run: one self-contained file that works offline.

:func:`report_data` turns a :class:`~dyntaskmas.observe.run_view.RunView`
into plain JSON-ready data: the run's figures, every task with its timing,
tokens, prompt and output, a layered layout of the graph, the critical
path, the number of busy agents over time, and each endpoint's concurrency
limit over time. :func:`render_report` puts
that data and the page's own CSS and JavaScript (package data next to this
module) into one HTML file, with no external resource.

Model output is untrusted, so it never becomes markup. The data travels as
JSON inside ``<script type="application/json">``, with ``<``, ``>``, ``&``
and U+2028/U+2029 written as ``\\uXXXX`` escapes, so no text can close the
element, and the page's script shows it with ``textContent`` only. A
Content-Security-Policy allows only the page's own script and style, by
their SHA-256 hashes, so even injected markup could run nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from dyntaskmas.observe.accounting import Prices, account
from dyntaskmas.observe.layout import layered_layout
from dyntaskmas.observe.run_view import RunView, critical_path

_JSON_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def script_safe_json(data: Any) -> str:
    """Return ``data`` as JSON that is safe inside an HTML ``<script>`` element.

    The escapes only occur inside JSON strings, where ``\\uXXXX`` means the
    same character, so ``JSON.parse`` returns the original data.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escape in _JSON_ESCAPES.items():
        text = text.replace(char, escape)
    return text


def utilisation(view: RunView) -> list[tuple[float, int]]:
    """Return the busy agents over time as steps: (time in s, agents busy from then on).

    Counts tasks that ran on an agent; the last step is at the run's end.
    """
    changes: list[tuple[float, int]] = []
    for task in view.tasks.values():
        if task.agent is None or task.started_at is None:
            continue
        end = task.finished_at if task.finished_at is not None else view.last_at
        changes.append((task.started_at, 1))
        changes.append((end, -1))
    # Ends before starts at the same instant: touching is not overlapping.
    changes.sort()
    steps: list[tuple[float, int]] = [(0.0, 0)]
    busy = 0
    for at, change in changes:
        busy += change
        if steps[-1][0] == at:
            steps[-1] = (at, busy)
        else:
            steps.append((at, busy))
    if steps[-1][0] < view.last_at:
        steps.append((view.last_at, busy))
    return steps


def limit_steps(view: RunView) -> list[dict[str, Any]]:
    """Return each endpoint's concurrency limit as steps, the last one held to the run's end."""
    series = []
    for endpoint in sorted(view.limits):
        steps = [[round(at, 6), limit] for at, limit in view.limits[endpoint]]
        if steps and steps[-1][0] < view.last_at:
            steps.append([round(view.last_at, 6), steps[-1][1]])
        series.append({"endpoint": endpoint, "steps": steps})
    return series


def report_data(view: RunView, prices: Prices | None = None) -> dict[str, Any]:
    """Return everything the report page shows, as JSON-ready data; times in seconds."""
    tasks = list(view.tasks.values())
    edges = [(dep, task.id) for task in tasks for dep in task.depends_on]
    layout = layered_layout([task.id for task in tasks], edges)
    path = critical_path(view)
    on_path = set(path)
    accounting = account(view, prices)
    steps = utilisation(view)
    busy_seconds = sum((steps[i + 1][0] - steps[i][0]) * steps[i][1] for i in range(len(steps) - 1))
    sequential = sum(
        task.duration_s or 0.0 for task in tasks if task.agent is not None and task.duration_s
    )
    makespan = view.last_at
    states: dict[str, int] = {}
    for task in tasks:
        states[task.state] = states.get(task.state, 0) + 1

    return {
        "run": {
            "run_id": view.run_id,
            "request": view.request,
            # No RunFinished: the process stopped mid-run, which 'runs' calls interrupted.
            "status": view.status or "interrupted",
            "agents": view.agents,
            "makespan_s": round(makespan, 6),
            "sequential_s": round(sequential, 6),
            # Only a finished run's makespan makes the ratio mean anything.
            "speedup": (round(sequential / makespan, 3) if makespan > 0 and view.status else None),
            "mean_utilisation": (
                round(busy_seconds / (makespan * view.agents), 4)
                if makespan > 0 and view.agents
                else None
            ),
            "tasks": len(tasks),
            "states": states,
            "llm_calls": accounting.total.calls,
            "retries": view.retries,
            "prompt_tokens": accounting.total.prompt_tokens,
            "completion_tokens": accounting.total.completion_tokens,
            "cost": accounting.total.cost if accounting.priced else None,
            "unpriced_models": list(accounting.unpriced_models),
        },
        "agents": view.agent_names,
        "critical_path": path,
        "utilisation": [[round(at, 6), busy] for at, busy in steps],
        "limits": limit_steps(view),
        "tasks": [
            {
                "id": task.id,
                "description": task.description,
                "role": task.role,
                "kind": task.kind,
                "state": task.state,
                "agent": task.agent,
                "depends_on": list(task.depends_on),
                "start": task.started_at,
                "end": task.finished_at,
                "output": task.output,
                "error": task.error,
                "prompt_tokens": task.prompt_tokens,
                "completion_tokens": task.completion_tokens,
                "context_sources": list(task.context_sources),
                "context_left_out": list(task.context_left_out),
                "layer": layout[task.id].layer,
                "row": layout[task.id].row,
                "critical": task.id in on_path,
                "calls": [
                    {
                        "model": call.model,
                        "start": call.started_at,
                        "end": call.finished_at,
                        "prompt_tokens": call.prompt_tokens,
                        "completion_tokens": call.completion_tokens,
                        "attempts": call.attempts,
                        "messages": [list(message) for message in call.messages],
                    }
                    for call in task.calls
                ],
            }
            for task in tasks
        ],
    }


def _asset(name: str) -> str:
    return resources.files("dyntaskmas.observe").joinpath(name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render_report(view: RunView, prices: Prices | None = None) -> str:
    """Return the report of ``view`` as one self-contained HTML page."""
    template = _asset("report_template.html")
    css = _asset("report.css")
    script = _asset("report.js")
    policy = (
        f"default-src 'none'; script-src {_csp_hash(script)}; style-src {_csp_hash(css)}; "
        "img-src data:; base-uri 'none'; form-action 'none'"
    )
    # The data goes in last, so that text inside it is never taken for a
    # placeholder.
    page = template.replace("{{CSP}}", policy).replace("{{CSS}}", css).replace("{{JS}}", script)
    return page.replace("{{DATA}}", script_safe_json(report_data(view, prices)))


def write_report(view: RunView, path: Path | str, prices: Prices | None = None) -> None:
    """Write :func:`render_report` of ``view`` to ``path``."""
    Path(path).write_text(render_report(view, prices), encoding="utf-8")
