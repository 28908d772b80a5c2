"""Resuming journalled runs on a scripted server: what runs again and what never does."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from dyntaskmas.engine.executor import decomposition_reason
from dyntaskmas.engine.result import RunResult
from dyntaskmas.errors import JournalError, RunFinishedError
from dyntaskmas.journal.recorder import JournalRecorder
from dyntaskmas.journal.resume import load_resume_state
from dyntaskmas.journal.store import JournalStore
from dyntaskmas.llm.scripted import ScriptedLLMServer
from dyntaskmas.observe.events import Event, GraphChanged, TaskFinished
from dyntaskmas.runner import Runner

from .workload import REQUEST, PlannedWorkload, options_for

ROOT_DECOMPOSITION = decomposition_reason("t.plan")


class SimulatedCrash(Exception):
    """Raised by a test's event subscriber to stop a run as a crash would."""


def crash_when(predicate: Callable[[Event], bool]) -> Callable[[Event], None]:
    def subscriber(event: Event) -> None:
        if predicate(event):
            raise SimulatedCrash(f"crash at {type(event).__name__}")

    return subscriber


def only_run_id(journal_dir: Path) -> str:
    with JournalStore(journal_dir) as store:
        (row,) = store.runs()
    return row.run_id


async def resume(server: ScriptedLLMServer, journal_dir: Path) -> RunResult:
    run_id = only_run_id(journal_dir)
    with JournalStore(journal_dir) as store:
        _, state = load_resume_state(store, run_id)
    async with Runner(options_for(server, journal_dir)) as runner:
        return await runner.resume(state)


def descriptions(result: RunResult) -> list[str]:
    return [task.description for task in result.tasks]


async def test_resume_reruns_only_failed_parallel_task(tmp_path: Path) -> None:
    """Plan -> (a, b) in parallel -> answer; b is the longer one and fails once."""
    workload = PlannedWorkload(steps=("a", "b"), latency_s={"a": 0.01, "b": 0.1}, failures={"b": 1})
    async with ScriptedLLMServer(workload.handle) as server:
        # No re-plan, so that b's failure ends the first run.
        async with Runner(options_for(server, tmp_path, max_replans=0)) as runner:
            first = await runner.run(REQUEST)
        calls_before = workload.calls.copy()
        second = await resume(server, tmp_path)

    assert first.status == "failed"
    assert calls_before == {"plan": 1, "a": 1, "b": 1}
    assert second.status == "succeeded"
    assert workload.calls - calls_before == {"b": 1, "answer": 1}
    assert second.answer == "answer from steps: a b"


async def test_crash_after_decomposition_recorded_adds_subtasks_once(tmp_path: Path) -> None:
    workload = PlannedWorkload(steps=("a", "b", "c"))
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path)) as runner:
            # Subscribed after the journal, so the delta is recorded, then the run stops
            # before the plan task's finish is.
            runner.engine.events.subscribe(
                crash_when(lambda e: isinstance(e, GraphChanged) and e.reason == ROOT_DECOMPOSITION)
            )
            with pytest.raises((SimulatedCrash, ExceptionGroup)):
                await runner.run(REQUEST)
        result = await resume(server, tmp_path)

    assert result.status == "succeeded"
    assert workload.calls["plan"] == 1
    assert sorted(descriptions(result)).count("Find fact a") == 1
    assert len(result.tasks) == 5
    assert result.answer == "answer from steps: a b c"


async def test_crash_before_decomposition_recorded_plans_again_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workload = PlannedWorkload(steps=("a", "b", "c"))
    original = JournalRecorder.record

    def record_or_crash(self: JournalRecorder, event: Event) -> None:
        if isinstance(event, GraphChanged) and event.reason == ROOT_DECOMPOSITION:
            raise SimulatedCrash("crash before the decomposition is written")
        original(self, event)

    async with ScriptedLLMServer(workload.handle) as server:
        with monkeypatch.context() as patch:
            patch.setattr(JournalRecorder, "record", record_or_crash)
            async with Runner(options_for(server, tmp_path)) as runner:
                with pytest.raises((SimulatedCrash, ExceptionGroup)):
                    await runner.run(REQUEST)
        result = await resume(server, tmp_path)

    assert result.status == "succeeded"
    assert workload.calls["plan"] == 2
    assert sorted(descriptions(result)).count("Find fact a") == 1
    assert len(result.tasks) == 5


async def test_crash_after_task_output_keeps_output(tmp_path: Path) -> None:
    workload = PlannedWorkload(steps=("a", "b"), latency_s={"a": 0.01, "b": 0.2})
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path)) as runner:
            runner.engine.events.subscribe(
                crash_when(lambda e: isinstance(e, TaskFinished) and e.output == "output of step a")
            )
            with pytest.raises((SimulatedCrash, ExceptionGroup)):
                await runner.run(REQUEST)
        result = await resume(server, tmp_path)

    outputs = {task.description: task.output for task in result.tasks}
    assert workload.calls["a"] == 1
    assert outputs["Find fact a"] == "output of step a"
    assert result.answer == "answer from steps: a b"


async def test_succeeded_run_cannot_be_resumed(tmp_path: Path) -> None:
    workload = PlannedWorkload(steps=("a", "b"))
    async with (
        ScriptedLLMServer(workload.handle) as server,
        Runner(options_for(server, tmp_path)) as runner,
    ):
        await runner.run(REQUEST)
    with JournalStore(tmp_path) as store, pytest.raises(RunFinishedError):
        load_resume_state(store, only_run_id(tmp_path))


async def test_run_without_journal_writes_nothing(tmp_path: Path) -> None:
    workload = PlannedWorkload(steps=("a", "b"))
    async with (
        ScriptedLLMServer(workload.handle) as server,
        Runner(options_for(server, tmp_path, journal=False)) as runner,
    ):
        result = await runner.run(REQUEST)
    assert result.status == "succeeded"
    assert not (tmp_path / "journal.sqlite3").exists()


async def test_run_without_recorded_graph_starts_again(tmp_path: Path) -> None:
    workload = PlannedWorkload(steps=("a", "b"))
    with JournalStore(tmp_path) as store:
        store.begin_run("20260101T000000Z-cccccc", REQUEST, {})
        store.append(
            "20260101T000000Z-cccccc", "RunStarted", 0.0, {"request": REQUEST, "agents": 2}
        )
    async with ScriptedLLMServer(workload.handle) as server:
        result = await resume(server, tmp_path)
    with JournalStore(tmp_path) as store:
        row = store.run("20260101T000000Z-cccccc")
    assert result.status == "succeeded"
    assert row.status == "succeeded"
    assert workload.calls["plan"] == 1


def test_run_alive_in_other_process_cannot_be_resumed(tmp_path: Path) -> None:
    with JournalStore(tmp_path) as store:
        store.begin_run("r1", REQUEST, {})
        # Pretend the run belongs to the parent process, which is alive.
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE runs SET pid = ? WHERE run_id = 'r1'", (os.getppid(),))
        with pytest.raises(JournalError, match="still running in process"):
            load_resume_state(store, "r1")


async def test_resume_from_every_event_prefix(tmp_path: Path) -> None:
    """A crash after any journalled event: resume sends no finished task again."""
    workload = PlannedWorkload(steps=("a", "b", "c"), latency_s={"a": 0.01, "b": 0.02})
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path / "full")) as runner:
            reference = await runner.run(REQUEST)
        with JournalStore(tmp_path / "full") as store:
            (row,) = store.runs()
            events = store.events(row.run_id)
        key_of = {task.id: workload_key(task.description) for task in reference.tasks}

        for cut in range(1, len(events)):
            journal_dir = tmp_path / f"cut-{cut}"
            with JournalStore(journal_dir) as store:
                store.begin_run(row.run_id, row.request, row.options)
                for event in events[:cut]:
                    store.append(row.run_id, event.kind, event.at_s, event.payload)
            finished = {
                key_of[event.payload["task_id"]]
                for event in events[:cut]
                if event.kind == "TaskFinished"
            }
            if any(e.payload.get("reason") == ROOT_DECOMPOSITION for e in events[:cut]):
                finished.add("plan")
            before = workload.calls.copy()

            result = await resume(server, journal_dir)

            sent_again = set(workload.calls - before) & finished
            assert sent_again == set(), f"cut after event {cut}"
            assert result.answer == reference.answer, f"cut after event {cut}"


def workload_key(description: str) -> str:
    """Return the PlannedWorkload key of a task from its description."""
    if description.startswith("Find fact "):
        return description.removeprefix("Find fact ")
    if description == REQUEST:
        return "plan"
    return "answer"


async def test_inconsistent_journal_is_reported(tmp_path: Path) -> None:
    """The initial graph and the answer's finish, without the plan's: not a valid run."""
    workload = PlannedWorkload(steps=("a",))
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path / "full")) as runner:
            await runner.run(REQUEST)
        with JournalStore(tmp_path / "full") as store:
            (row,) = store.runs()
            events = store.events(row.run_id)
        graph_events = [e for e in events if e.kind == "GraphChanged"][:1]
        answer_finish = [e for e in events if e.kind == "TaskFinished"][-1:]
        with JournalStore(tmp_path / "bad") as store:
            store.begin_run(row.run_id, REQUEST, {})
            for event in [*graph_events, *answer_finish]:
                store.append(row.run_id, event.kind, event.at_s, event.payload)
        with pytest.raises(JournalError, match="does not rebuild a valid graph"):
            await resume(server, tmp_path / "bad")
