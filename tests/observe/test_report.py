"""The HTML report: its data, escaping, and how it renders in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest
from dyntaskmas.observe.events import AllocatorDecision, Event, MonitorSample
from dyntaskmas.observe.report import render_report, report_data, script_safe_json, utilisation
from dyntaskmas.observe.run_view import build_run_view, critical_path
from engine.harness import output_of, step, task_id_of
from observe.chromium import chromium_skip_reason, open_page
from observe.runs import allocator_run, observed_run, twenty_steps

XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>"

needs_chromium = pytest.mark.skipif(
    chromium_skip_reason() is not None, reason=chromium_skip_reason() or ""
)


def _reply(request: ScriptedRequest) -> ScriptedReply:
    task_id = task_id_of(request)
    if task_id == "xss":
        return ScriptedReply(text=XSS)
    # Chain steps take a little longer, so the run has a visible critical path.
    delay = 0.02 if task_id is not None and task_id.startswith("s0") else 0.0
    return ScriptedReply(text=output_of(str(task_id)), delay_s=delay)


@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner)))
def test_script_safe_json_round_trips(data: object) -> None:
    text = script_safe_json(data)

    assert json.loads(text) == data
    assert "<" not in text
    assert ">" not in text
    assert "&" not in text
    assert "\u2028" not in text


async def test_report_data_of_twenty_tasks() -> None:
    result, events = await observed_run(twenty_steps(), _reply)
    data = report_data(build_run_view(events))

    assert [task["id"] for task in data["tasks"]] == [task.id for task in result.tasks]
    assert data["run"]["llm_calls"] == result.llm_calls
    assert data["run"]["prompt_tokens"] == result.usage.prompt_tokens
    assert data["critical_path"][-1] == "end"
    layers = {task["id"]: task["layer"] for task in data["tasks"]}
    for task in data["tasks"]:
        for dep in task["depends_on"]:
            assert layers[dep] < layers[task["id"]]
    assert max(busy for _, busy in data["utilisation"]) <= 3


async def test_critical_path_follows_last_dependency() -> None:
    """s0.* is slow, so the path to 'end' runs through the s0 chain.

    s0.0 -> s0.1 -> s0.2 -> s0.3 -> m0 -> m2 -> end
    """
    _, events = await observed_run(twenty_steps(), _reply)

    path = critical_path(build_run_view(events))

    assert path == ["s0.0", "s0.1", "s0.2", "s0.3", "m0", "m2", "end"]


async def test_utilisation_never_exceeds_agents() -> None:
    _, events = await observed_run(twenty_steps(), _reply, agents=2)
    view = build_run_view(events)

    steps = utilisation(view)

    assert steps[0] == (0.0, 0)
    assert steps[-1][1] == 0
    assert all(0 <= busy <= 2 for _, busy in steps)
    assert [at for at, _ in steps] == sorted(at for at, _ in steps)


async def test_report_embeds_output_only_as_json() -> None:
    _, events = await observed_run([step("xss")], _reply, agents=1)

    page = render_report(build_run_view(events))

    assert XSS not in page
    assert "<img" not in page
    assert len(re.findall(r"<script\b", page)) == 2
    policy = re.search(r'Content-Security-Policy" content="([^"]+)"', page)
    assert policy is not None
    assert "'unsafe-inline'" not in policy.group(1)
    assert "script-src 'sha256-" in policy.group(1)


def test_report_limits_end_at_makespan() -> None:
    events = allocator_run()
    view = build_run_view(events)
    last = [event for event in events if isinstance(event, AllocatorDecision)][-1]

    data = report_data(view)

    (series,) = data["limits"]
    assert series["endpoint"] == "e"
    assert series["steps"][0] == [0.0, 2]
    assert series["steps"][-1] == [round(view.last_at, 6), last.new_limit]
    assert [at for at, _ in series["steps"]] == sorted(at for at, _ in series["steps"])


@needs_chromium
async def test_limit_chart_renders(tmp_path: Path) -> None:
    events = await asyncio.to_thread(allocator_run)
    path = tmp_path / "report.html"
    path.write_text(render_report(build_run_view(events)), encoding="utf-8")

    page = await open_page(
        path,
        {
            "rendered": "document.body.dataset.rendered",
            "limit_lines": "document.querySelectorAll('#limits-svg polyline.limit-line').length",
            "legend": "document.getElementById('limits-legend').textContent",
        },
    )
    (tmp_path / "report.png").write_bytes(page.screenshot)

    last = [event for event in events if isinstance(event, AllocatorDecision)][-1]
    assert page.console == []
    assert page.exceptions == []
    assert page.log_errors == []
    assert page.values["rendered"] == "true"
    assert page.values["limit_lines"] == 1
    assert page.values["legend"].strip() == f"e (last {last.new_limit})"


@needs_chromium
async def test_twenty_task_report_renders(tmp_path: Path) -> None:
    _, events = await observed_run(twenty_steps(), _reply)
    path = tmp_path / "report.html"
    path.write_text(render_report(build_run_view(events)), encoding="utf-8")

    page = await open_page(
        path,
        {
            "rendered": "document.body.dataset.rendered",
            "graph_nodes": "document.querySelectorAll('#graph-svg .node').length",
            "critical_edges": "document.querySelectorAll('#graph-svg .edge.critical').length",
            "gantt_bars": "document.querySelectorAll('#gantt-svg .bar').length",
            "utilisation_lines": "document.querySelectorAll('#utilisation-svg polyline').length",
            "details": "document.querySelectorAll('#task-list details').length",
        },
    )
    (tmp_path / "report.png").write_bytes(page.screenshot)

    assert page.console == []
    assert page.exceptions == []
    assert page.log_errors == []
    assert page.values["rendered"] == "true"
    assert page.values["graph_nodes"] == 20
    assert page.values["critical_edges"] == 6
    assert page.values["gantt_bars"] == 20
    assert page.values["utilisation_lines"] == 1
    assert page.values["details"] == 20
    assert page.screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(page.screenshot) > 10_000


@needs_chromium
async def test_script_in_output_does_not_run(tmp_path: Path) -> None:
    _, run_events = await observed_run([step("xss"), step("after", "xss")], _reply, agents=1)
    # An endpoint name comes from the user's config file; it is shown as text too.
    allocator_events: list[Event] = [
        MonitorSample("run-test", 0.5, XSS, 2, 1, 0, 1, 1.0, 10.0, 0.1, 0.1, 0.0, 0.0, 0),
        AllocatorDecision("run-test", 0.5, XSS, 1, 2, "slow_start", 0.01, 0.01),
    ]
    events = [*run_events[:-1], *allocator_events, run_events[-1]]
    path = tmp_path / "report.html"
    path.write_text(render_report(build_run_view(events)), encoding="utf-8")

    page = await open_page(
        path,
        {
            "legend": "document.getElementById('limits-legend').textContent",
            "text": "document.getElementById('task-list').textContent",
            "images": "document.images.length",
            "scripts": "document.scripts.length",
            "rendered": "document.body.dataset.rendered",
        },
    )

    assert page.dialogs == []
    assert page.console == []
    assert page.exceptions == []
    assert page.values["rendered"] == "true"
    assert XSS in page.values["text"]
    assert XSS in page.values["legend"]
    assert page.values["images"] == 0
    assert page.values["scripts"] == 2


def test_critical_path_includes_adding_plan() -> None:
    """t.1 has no dependencies but was added by t.plan, so it waited for it.

    t.plan -> (adds) t.1 -> answer
    """
    from dyntaskmas.engine.executor import decomposition_reason
    from dyntaskmas.graph.task import TaskSpec
    from dyntaskmas.observe.events import GraphChanged, RunStarted, TaskFinished, TaskStarted

    plan = TaskSpec(id="t.plan", description="request", role="planner", kind="plan")
    answer = TaskSpec(id="answer", description="answer", role="w", depends_on=("t.plan",))
    sub = TaskSpec(id="t.1", description="part", role="w")
    events = [
        RunStarted("r", 0.0, "request", 2),
        GraphChanged("r", 0.0, (plan, answer), (("t.plan", "answer"),), (), "initial graph"),
        TaskStarted("r", 0.0, "t.plan", "agent-1", "e"),
        GraphChanged("r", 5.0, (sub,), (("t.1", "answer"),), (), decomposition_reason("t.plan")),
        TaskFinished("r", 5.0, "t.plan", "agent-1", "planned", 5.0, 0, 0),
        TaskStarted("r", 5.0, "t.1", "agent-2", "e"),
        TaskFinished("r", 7.0, "t.1", "agent-2", "done", 2.0, 0, 0),
        TaskStarted("r", 7.0, "answer", "agent-1", "e"),
        TaskFinished("r", 8.0, "answer", "agent-1", "done", 1.0, 0, 0),
    ]

    assert critical_path(build_run_view(events)) == ["t.plan", "t.1", "answer"]
