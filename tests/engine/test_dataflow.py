"""Dataflow execution over real HTTP: tasks start when their own dependencies finish.

Times come from the engine's task records (seconds from the run's start)
and the scripted server's recorded calls. Upper bounds leave room for a
loaded two-core machine, and lower bounds follow from the scripted delays.
"""

from __future__ import annotations

from dyntaskmas.engine.agent_pool import Agent

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


async def test_fast_branch_skips_slow_sibling() -> None:
    """The fast branch's second step runs while the slow branch is still busy.

        slow (1 s)
        fast (0.1 s) --> fast2 (0.1 s)

    A superstep scheduler would hold ``fast2`` until ``slow`` ends at 1 s.
    """
    handler = replies_by_task({"slow": 1.0, "fast": 0.1, "fast2": 0.1})
    async with scripted_model(handler) as (server, model):
        result = await make_engine(model, 2).run_graph(
            [step("slow"), step("fast"), step("fast2", "fast")]
        )

    tasks = records(result)
    assert result.status == "succeeded"
    assert start_of(tasks["fast2"]) >= end_of(tasks["fast"])
    assert start_of(tasks["fast2"]) < 0.6
    assert end_of(tasks["fast2"]) < end_of(tasks["slow"])
    assert end_of(tasks["slow"]) >= 1.0
    assert len(server.calls) == 3


async def test_join_runs_once_after_both_inputs() -> None:
    """A task with two predecessors of unequal length runs once, after both.

        short (0.05 s) --\\
                           +--> join
        long  (0.4 s)  --/
    """
    handler = replies_by_task({"short": 0.05, "long": 0.4})
    async with scripted_model(handler) as (server, model):
        result = await make_engine(model, 3).run_graph(
            [step("short"), step("long"), step("join", "short", "long")]
        )

    tasks = records(result)
    join_calls = calls_for(server, "join")
    assert len(join_calls) == 1
    assert start_of(tasks["join"]) >= end_of(tasks["short"])
    assert start_of(tasks["join"]) >= end_of(tasks["long"])
    prompt = join_calls[0].request.last_user_text
    assert output_of("short") in prompt
    assert output_of("long") in prompt
    assert tasks["join"].depends_on == ("long", "short")
    assert result.answer == output_of("join")


async def test_eight_agents_run_eight_tasks_at_once() -> None:
    """Eight independent 0.5 s tasks on eight agents take about 0.5 s.

    t1  t2  t3  t4  t5  t6  t7  t8      (no edges)
    """
    ids = [f"t{k}" for k in range(1, 9)]
    handler = replies_by_task(dict.fromkeys(ids, 0.5))
    async with scripted_model(handler) as (server, model):
        result = await make_engine(model, 8).run_graph([step(task_id) for task_id in ids])

    assert result.status == "succeeded"
    assert result.makespan_s >= 0.5
    assert result.makespan_s < 1.2
    assert result.max_concurrency == 8
    assert server.peak_in_flight == 8
    assert result.sequential_s >= 8 * 0.5


async def test_two_agents_run_eight_tasks_in_four_rounds() -> None:
    """Eight independent 0.5 s tasks on two agents take about 2 s.

    t1  t2  t3  t4  t5  t6  t7  t8      (no edges)
    """
    ids = [f"t{k}" for k in range(1, 9)]
    handler = replies_by_task(dict.fromkeys(ids, 0.5))
    async with scripted_model(handler) as (server, model):
        result = await make_engine(model, 2).run_graph([step(task_id) for task_id in ids])

    assert result.status == "succeeded"
    assert result.makespan_s > 1.9
    assert result.makespan_s < 3.5
    assert result.max_concurrency == 2
    assert server.peak_in_flight == 2
    assert {record.agent for record in result.tasks} == {"agent-1", "agent-2"}


async def test_one_agent_for_role_runs_tasks_in_turn() -> None:
    """Two ready tasks of a role only agent ``a`` serves run one after the other.

        first  (role x, 0.2 s)
        second (role x, 0.2 s)        agents: a serves x, b serves y

    Agent ``b`` stays idle: it does not serve role ``x``.
    """
    roles = {"x": "does x", "y": "does y"}
    handler = replies_by_task({"first": 0.2, "second": 0.2})
    async with scripted_model(handler) as (server, model):
        agents = [
            Agent("a", frozenset({"x"}), model),
            Agent("b", frozenset({"y"}), model),
        ]
        engine = make_engine(model, agents, roles=roles)
        result = await engine.run_graph([step("first", role="x"), step("second", role="x")])

    tasks = records(result)
    first, second = sorted(tasks.values(), key=start_of)
    assert result.status == "succeeded"
    assert tasks["first"].agent == "a"
    assert tasks["second"].agent == "a"
    assert start_of(second) >= end_of(first)
    assert result.max_concurrency == 1
    assert server.peak_in_flight == 1
    assert len(server.calls) == 2
    assert engine.pool.agents[0].tasks_run == 2
    assert engine.pool.agents[1].tasks_run == 0
