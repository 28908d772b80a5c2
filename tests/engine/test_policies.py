"""The comparison policies: level-synchronous execution, FIFO and the paper's formula.

With one agent the order of the server's calls is the dispatch order, so
ordering tests need no timing tolerance.
"""

from __future__ import annotations

from .harness import (
    end_of,
    make_engine,
    records,
    replies_by_task,
    scripted_model,
    start_of,
    step,
    task_id_of,
)


async def test_level_sync_waits_for_slowest_of_level() -> None:
    """A level-1 task waits for every level-0 task, not only its own dependency.

        slow               (level 0, 0.6 s)
        fast --> next      (level 0, then level 1)

    Dataflow would start ``next`` right after ``fast``; the superstep barrier
    holds it until ``slow`` has finished too.
    """
    async with scripted_model(replies_by_task({"slow": 0.6, "fast": 0.05})) as (_, model):
        result = await make_engine(model, 2, level_sync=True).run_graph(
            [step("slow"), step("fast"), step("next", "fast")]
        )

    tasks = records(result)
    assert result.status == "succeeded"
    assert start_of(tasks["next"]) >= end_of(tasks["slow"])


async def test_dataflow_does_not_wait_for_level() -> None:
    """The same graph without the barrier starts ``next`` before ``slow`` ends.

    slow
    fast --> next
    """
    async with scripted_model(replies_by_task({"slow": 0.6, "fast": 0.05})) as (_, model):
        result = await make_engine(model, 2).run_graph(
            [step("slow"), step("fast"), step("next", "fast")]
        )

    tasks = records(result)
    assert start_of(tasks["next"]) < end_of(tasks["slow"])


async def test_fifo_ignores_chain_length() -> None:
    """FIFO runs tasks in readiness order, so ``lone`` (added first) goes first.

    lone
    head --> middle --> tail
    """
    async with scripted_model(replies_by_task({})) as (server, model):
        await make_engine(model, 1, aging_per_s=0.0, priority="fifo").run_graph(
            [step("lone"), step("head"), step("middle", "head"), step("tail", "middle")]
        )

    order = [task_id_of(call.request) for call in server.calls]
    assert order == ["lone", "head", "middle", "tail"]


async def test_paper_formula_prefers_short_future() -> None:
    """The paper's printed formula ranks the lone task above the chain head.

        lone                      P = C = 1
        head --> middle --> tail  P(head) = 1 / (W + P(middle)) < 1

    The critical path would run ``head`` first (see test_priority); the
    printed formula divides by the future, so ``lone`` wins.
    """
    async with scripted_model(replies_by_task({})) as (server, model):
        await make_engine(model, 1, aging_per_s=0.0, priority="paper_summary").run_graph(
            [step("head"), step("middle", "head"), step("tail", "middle"), step("lone")]
        )

    order = [task_id_of(call.request) for call in server.calls]
    assert order[0] == "lone"
