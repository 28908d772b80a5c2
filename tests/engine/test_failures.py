"""Failures inside a run: retried rate limits, rejected requests, unserved roles.

A failed task cancels only its descendants. The rest of the graph finishes,
and the run still returns a result.
"""

from __future__ import annotations

from dyntaskmas.llm.scripted import ScriptedReply, reply_sequence

from .harness import (
    calls_for,
    end_of,
    make_engine,
    output_of,
    records,
    replies_by_task,
    scripted_model,
    start_of,
    step,
)

RATE_LIMITED = ScriptedReply(
    status=429, headers={"Retry-After": "1"}, error_message="rate limit reached, slow down"
)
REJECTED = ScriptedReply(status=400, error_message="prompt has 9000 tokens, the limit is 2048")


async def test_rate_limited_task_waits_then_succeeds() -> None:
    """Two 429 replies with ``Retry-After: 1`` delay the task by at least 2 s.

    only
    """
    handler = reply_sequence(RATE_LIMITED, RATE_LIMITED, output_of("only"))
    async with scripted_model(handler) as (server, model):
        result = await make_engine(model, 1).run_graph([step("only")])

    only = records(result)["only"]
    first, second, third = server.calls
    assert only.state == "done"
    assert result.answer == output_of("only")
    assert len(server.calls) == 3
    assert end_of(only) - start_of(only) >= 1.95
    assert first.finished_at is not None
    assert second.arrived_at - first.finished_at >= 0.95
    assert second.finished_at is not None
    assert third.arrived_at - second.finished_at >= 0.95
    assert third.status == 200


async def test_rejected_task_fails_and_cancels_descendants() -> None:
    """A 400 fails ``bad`` at once. Its descendants are not run, but ``good`` is.

    bad --> child --> grandchild
    good
    """
    handler = replies_by_task({"bad": REJECTED, "good": 0.3})
    async with scripted_model(handler) as (server, model):
        result = await make_engine(model, 2).run_graph(
            [step("bad"), step("child", "bad"), step("grandchild", "child"), step("good")]
        )

    tasks = records(result)
    bad = tasks["bad"]
    assert bad.state == "failed"
    assert bad.error is not None
    assert "prompt has 9000 tokens, the limit is 2048" in bad.error
    assert "HTTP 400" in bad.error
    assert len(calls_for(server, "bad")) == 1
    assert end_of(bad) - start_of(bad) < 1.0
    for task_id in ("child", "grandchild"):
        cancelled = tasks[task_id]
        assert cancelled.state == "cancelled"
        assert cancelled.error is not None
        assert "not run" in cancelled.error
        assert "'bad'" in cancelled.error
        assert cancelled.started_at is None
        assert calls_for(server, task_id) == []
    assert tasks["good"].state == "done"
    assert result.answer == output_of("good")
    assert any("'bad' failed" in note for note in result.notes)


async def test_unserved_role_fails_only_its_task() -> None:
    """A task whose role no agent serves fails, naming the role. The rest runs.

    legal (role lawyer) --> summary
    facts
    """
    async with scripted_model(replies_by_task({})) as (server, model):
        result = await make_engine(model, 2).run_graph(
            [step("legal", role="lawyer"), step("summary", "legal"), step("facts")]
        )

    tasks = records(result)
    legal = tasks["legal"]
    assert legal.state == "failed"
    assert legal.error is not None
    assert "'lawyer'" in legal.error
    assert calls_for(server, "legal") == []
    assert tasks["summary"].state == "cancelled"
    assert tasks["facts"].state == "done"
    assert result.answer == output_of("facts")


async def test_cancelled_final_task_leaves_no_answer() -> None:
    """When the last sink is cancelled, the run has no answer and says why.

    bad --> answer
    """
    handler = replies_by_task({"bad": REJECTED})
    async with scripted_model(handler) as (server, model):
        result = await make_engine(model, 1).run_graph([step("bad"), step("answer", "bad")])

    assert result.status == "failed"
    assert result.answer is None
    assert any(note.startswith("no answer: not run") for note in result.notes)
    assert len(server.calls) == 1
