"""Resuming runs whose graph changed during the run: follow-ups and re-plans, added once."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import PLANNER_ROLE, Engine, EngineConfig
from dyntaskmas.engine.followups import follow_ups_reason
from dyntaskmas.engine.optimiser import OptimiserConfig
from dyntaskmas.engine.prompts import DEFAULT_ROLES
from dyntaskmas.engine.replan import replan_reason
from dyntaskmas.engine.result import RunResult
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.journal.codec import decode_event, encode_event
from dyntaskmas.journal.recorder import JournalRecorder
from dyntaskmas.journal.replay import ResumeState
from dyntaskmas.journal.resume import load_resume_state
from dyntaskmas.journal.store import JournalStore
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.observe.events import Event, GraphChanged, TaskStarted
from dyntaskmas.planning.planner import Planner
from dyntaskmas.runner import Runner

from .test_resume import SimulatedCrash, crash_when, descriptions, only_run_id
from .workload import REQUEST, PlannedWorkload, options_for


def subtask(label: str, description: str) -> dict[str, object]:
    return {
        "id": label,
        "description": description,
        "role": "researcher",
        "depends_on": [],
        "atomic": True,
        "cost": "small",
        "output_size": "short",
    }


@dataclass
class DynamicWorkload:
    """Plans steps a and b; a asks for follow-up x, or fails when ``a_fails``.

    A re-plan of a yields step z. Work outputs are JSON when the request
    asks for the work-output schema, plain text otherwise.
    """

    a_fails: bool = False
    calls: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: ScriptedRequest) -> ScriptedReply:
        text = request.last_user_text
        schema = (request.response_format or {}).get("json_schema", {}).get("schema", {})
        if "subtasks" in schema.get("properties", {}):
            if "earlier attempt failed" in text:
                self.calls["replan"] += 1
                return ScriptedReply(text=json.dumps({"subtasks": [subtask("s1", "Find fact z")]}))
            self.calls["plan"] += 1
            plan = [subtask("s1", "Find fact a"), subtask("s2", "Find fact b")]
            return ScriptedReply(text=json.dumps({"subtasks": plan}))
        step = next(
            (
                line.removeprefix("Your task: Find fact ")
                for line in text.splitlines()
                if line.startswith("Your task: Find fact ")
            ),
            "answer",
        )
        self.calls[step] += 1
        # Let b run alongside a, so the crash finds work in flight.
        await asyncio.sleep(0.05 if step == "b" else 0.0)
        if step == "answer":
            found = sorted(s for s in "abxz" if f"output of step {s}" in text)
            return ScriptedReply(text="answer from steps: " + " ".join(found))
        if step == "a" and self.a_fails:
            return ScriptedReply(status=400, error_message="step a is rejected")
        follow_ups = []
        if step == "a":
            follow_ups = [
                {"id": "x", "description": "Find fact x", "role": "researcher", "depends_on": []}
            ]
        if request.response_format is None:
            return ScriptedReply(text=f"output of step {step}")
        body = {"answer": f"output of step {step}", "follow_ups": follow_ups}
        return ScriptedReply(text=json.dumps(body))


FOLLOW_UPS_OF_A = follow_ups_reason("t.1")


async def resume(server: ScriptedLLMServer, journal_dir: Path, **options: object) -> RunResult:
    """Resume the journal's only run with the options it was started with."""
    with JournalStore(journal_dir) as store:
        _, state = load_resume_state(store, only_run_id(journal_dir))
    async with Runner(options_for(server, journal_dir, **options)) as runner:
        return await runner.resume(state)


async def test_follow_ups_added_once_after_crash(tmp_path: Path) -> None:
    """The follow-up delta (which carries a's output) is recorded, a's finish is not."""
    workload = DynamicWorkload()
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path, max_follow_ups=4)) as runner:
            runner.engine.events.subscribe(
                crash_when(lambda e: isinstance(e, GraphChanged) and e.reason == FOLLOW_UPS_OF_A)
            )
            with pytest.raises((SimulatedCrash, ExceptionGroup)):
                await runner.run(REQUEST)
        calls_before = workload.calls.copy()
        result = await resume(server, tmp_path, max_follow_ups=4)

    assert calls_before["a"] == 1
    assert calls_before["x"] == 0
    assert result.status == "succeeded"
    # a is not asked again; its follow-up is in the graph once and runs once.
    assert workload.calls["a"] == 1
    assert workload.calls["x"] == 1
    assert workload.calls["plan"] == 1
    assert descriptions(result).count("Find fact x") == 1
    outputs = {task.id: task.output for task in result.tasks}
    assert outputs["t.1"] == "output of step a"
    assert result.answer == "answer from steps: a b x"


async def test_unrecorded_follow_ups_added_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of a's result reached the journal: a runs again and asks once more."""
    workload = DynamicWorkload()
    original = JournalRecorder.record

    def record_or_crash(self: JournalRecorder, event: Event) -> None:
        if isinstance(event, GraphChanged) and event.reason == FOLLOW_UPS_OF_A:
            raise SimulatedCrash("crash before the follow-ups are written")
        original(self, event)

    async with ScriptedLLMServer(workload.handle) as server:
        with monkeypatch.context() as patch:
            patch.setattr(JournalRecorder, "record", record_or_crash)
            async with Runner(options_for(server, tmp_path, max_follow_ups=4)) as runner:
                with pytest.raises((SimulatedCrash, ExceptionGroup)):
                    await runner.run(REQUEST)
        result = await resume(server, tmp_path, max_follow_ups=4)

    assert result.status == "succeeded"
    assert workload.calls["a"] == 2
    assert workload.calls["x"] == 1
    assert descriptions(result).count("Find fact x") == 1
    assert result.answer == "answer from steps: a b x"


async def test_replaced_task_not_rerun_after_crash(
    tmp_path: Path,
) -> None:
    """a fails and is re-planned; the crash comes before a's failure is recorded."""
    workload = DynamicWorkload(a_fails=True)
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path, max_replans=1)) as runner:
            runner.engine.events.subscribe(
                crash_when(
                    lambda e: isinstance(e, GraphChanged) and e.reason == replan_reason("t.1")
                )
            )
            with pytest.raises((SimulatedCrash, ExceptionGroup)):
                await runner.run(REQUEST)
        result = await resume(server, tmp_path, max_replans=1)

    assert result.status == "succeeded"
    assert workload.calls["a"] == 1
    assert workload.calls["replan"] == 1
    assert workload.calls["z"] == 1
    states = {task.id: task.state for task in result.tasks}
    assert states["t.1"] == "failed"
    assert states["t.1.r1"] == "done"
    assert result.answer == "answer from steps: b z"


async def test_merged_graph_resumes_after_crash(tmp_path: Path) -> None:
    """The optimiser merges a and b; the run stops when the merged task starts.

    On resume the originals stay cancelled and the merged task runs once.
    """
    merged_runs: list[str] = []

    def handle(request: ScriptedRequest) -> ScriptedReply:
        text = request.last_user_text
        if request.response_format is not None:
            plan = [subtask("s1", "Find fact a"), subtask("s2", "Find fact b")]
            return ScriptedReply(text=json.dumps({"subtasks": plan}))
        if "Final answer:" in text:
            found = sorted(s for s in "ab" if f"output of step {s}" in text)
            return ScriptedReply(text="answer from steps: " + " ".join(found))
        if "Do these small tasks together" in text:
            merged_runs.append(text)
            return ScriptedReply(text="output of step a and output of step b")
        return ScriptedReply(status=400, error_message="an original task ran")

    async def run_engine(state: ResumeState | None) -> RunResult:
        pool = AgentPool(build_agents(1, [*DEFAULT_ROLES, PLANNER_ROLE], {"scripted": model}))
        config = EngineConfig(optimiser=OptimiserConfig(task_overhead_s=5.0))
        engine = Engine(pool, planner=Planner(model, roles=DEFAULT_ROLES), config=config)
        JournalRecorder(store).attach(engine.events)
        if state is None:
            engine.events.subscribe(
                crash_when(lambda e: isinstance(e, TaskStarted) and e.task_id == "t.1.m")
            )
            return await engine.run(REQUEST, run_id="merge-run")
        return await engine.resume(state)

    async with ScriptedLLMServer(handle) as server:
        endpoint = Endpoint(server.base_url, model=server.model)
        async with OpenAIChatModel(endpoint) as model:
            with JournalStore(tmp_path) as store:
                with pytest.raises((SimulatedCrash, ExceptionGroup)):
                    await run_engine(None)
                _, state = load_resume_state(store, "merge-run")
                result = await run_engine(state)

    states = {task.id: task.state for task in result.tasks}
    assert result.answer == "answer from steps: a b"
    assert len(merged_runs) == 1
    assert states["t.1"] == states["t.2"] == "cancelled"
    assert states["t.1.m"] == "done"
    assert not server.handler_errors


async def test_run_stopped_by_its_budget_finishes_on_resume(tmp_path: Path) -> None:
    """Two model calls per run: the plan and step a, then step b and the answer."""
    workload = PlannedWorkload(steps=("a", "b"))
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path, max_llm_calls=2)) as runner:
            first = await runner.run(REQUEST)
        calls_before = workload.calls.copy()
        second = await resume(server, tmp_path, max_llm_calls=2)

    assert first.status == "stopped"
    assert first.stop is not None and first.stop.not_run == ("answer", "t.2")
    assert calls_before == {"plan": 1, "a": 1}
    assert second.status == "succeeded"
    assert workload.calls - calls_before == {"b": 1, "answer": 1}
    assert second.answer == "answer from steps: a b"


def test_graph_change_with_removed_edges_round_trips() -> None:
    event = GraphChanged(
        "run",
        1.5,
        (TaskSpec(id="m", description="Merged", depends_on=("r",)),),
        (("r", "m"), ("m", "end")),
        ("a", "b"),
        "optimiser: merged tiny sibling tasks",
        edges_removed=(("a", "end"), ("b", "end")),
    )
    payload = encode_event(event)
    old_payload = {key: value for key, value in payload.items() if key != "edges_removed"}

    assert decode_event("GraphChanged", "run", 1.5, payload) == event
    assert decode_event("GraphChanged", "run", 1.5, old_payload).edges_removed == ()  # type: ignore[attr-defined]
