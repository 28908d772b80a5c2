"""Which ready task an agent takes first: critical-path priority, then readiness order.

With one agent every task runs alone, so the order of the server's calls is
the dispatch order, and no timing tolerance is needed.
"""

from __future__ import annotations

from .harness import (
    make_engine,
    replies_by_task,
    scripted_model,
    step,
    task_id_of,
)


async def test_long_chain_head_runs_before_lone_task() -> None:
    """The head of the longer chain goes first, although ``lone`` was added first.

        lone
        head --> middle --> tail

    Every task has the same cost estimate, so P(head) includes the chain below
    it and beats P(lone). After ``head`` and ``middle``, ``tail`` and
    ``lone`` tie on priority and ``lone``, ready since the start, goes first.
    """
    async with scripted_model(replies_by_task({})) as (server, model):
        result = await make_engine(model, 1).run_graph(
            [
                step("lone"),
                step("head"),
                step("middle", "head"),
                step("tail", "middle"),
            ]
        )

    order = [task_id_of(call.request) for call in server.calls]
    assert result.status == "succeeded"
    assert order[0] == "head"
    assert order == ["head", "middle", "lone", "tail"]


async def test_equal_priorities_run_in_readiness_order() -> None:
    """Among equal priorities the task that became ready first runs first.

        a --> c
        b --> d        added in the order a, b, d, c

    ``a`` and ``b`` tie and were ready at once, so insertion order decides:
    ``a``. Then ``b`` (it has a successor) beats ``c``. ``c`` became ready
    before ``d``, so it runs before ``d`` although ``d`` was added first.
    Ageing is off, so only the first-come rule separates the ties.
    """
    async with scripted_model(replies_by_task({})) as (server, model):
        result = await make_engine(model, 1, aging_per_s=0.0).run_graph(
            [step("a"), step("b"), step("d", "b"), step("c", "a")]
        )

    order = [task_id_of(call.request) for call in server.calls]
    assert result.status == "succeeded"
    assert order == ["a", "b", "c", "d"]
