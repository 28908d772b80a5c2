"""RunResult.to_json: the fields a caller reads, with times from the run's start."""

from __future__ import annotations

import json

import pytest

from dyntaskmas.llm.scripted import ScriptedReply

from .harness import (
    make_engine,
    records,
    replies_by_task,
    scripted_model,
    step,
)

TASK_FIELDS = {
    "id",
    "description",
    "role",
    "kind",
    "depends_on",
    "state",
    "agent",
    "started_at",
    "finished_at",
    "output",
    "error",
}


async def test_json_has_run_and_task_fields() -> None:
    """Every field is present and every time lies within the run.

        a (0.2 s) --\\
                      +--> c
        b (0.3 s) --/
    """
    async with scripted_model(replies_by_task({"a": 0.2, "b": 0.3})) as (_, model):
        result = await make_engine(model, 2).run_graph(
            [step("a"), step("b"), step("c", "a", "b")], request="compare a and b"
        )

    data = result.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["request"] == "compare a and b"
    assert data["answer"] == result.answer
    assert data["status"] == "succeeded"
    assert [task["id"] for task in data["tasks"]] == ["a", "b", "c"]
    for task in data["tasks"]:
        assert set(task) >= TASK_FIELDS
        assert task["state"] == "done"
        assert task["agent"] in {"agent-1", "agent-2"}
        assert 0.0 <= task["started_at"] <= task["finished_at"] <= data["makespan_s"]
    c = data["tasks"][2]
    assert c["depends_on"] == ["a", "b"]
    assert c["role"] == "worker"
    assert c["description"] == "Step c"
    durations = [record.duration_s or 0.0 for record in result.tasks]
    assert data["sequential_s"] == pytest.approx(sum(durations), abs=0.002)
    assert data["sequential_s"] >= 0.5
    assert data["makespan_s"] >= 0.3
    assert data["makespan_s"] < data["sequential_s"]
    assert data["max_concurrency"] == 2
    assert data["llm_calls"] == 3
    assert data["usage"]["completion_tokens"] > 0


async def test_json_of_failed_run_keeps_errors() -> None:
    """A failed task keeps its error. A cancelled one has no times and no agent.

    bad --> after
    """
    rejected = ScriptedReply(status=400, error_message="unsupported parameter: foo")
    async with scripted_model(replies_by_task({"bad": rejected})) as (_, model):
        result = await make_engine(model, 1).run_graph([step("bad"), step("after", "bad")])

    data = result.to_json()
    tasks = {task["id"]: task for task in data["tasks"]}
    assert data["status"] == "failed"
    assert data["answer"] is None
    assert tasks["bad"]["state"] == "failed"
    assert "unsupported parameter: foo" in tasks["bad"]["error"]
    assert tasks["after"]["state"] == "cancelled"
    assert tasks["after"]["agent"] is None
    assert tasks["after"]["started_at"] is None
    assert tasks["after"]["output"] is None
    assert records(result)["after"].duration_s is None
    assert any("no answer" in note for note in data["notes"])
