"""Planned runs over real HTTP against the simulated server's faults, each at 20 %.

Every run must finish, journal each task's output exactly once, and the
server must have answered each request of a finished task, fault-free and
whole, exactly once: a retry never repeats a request that had succeeded.
Runs stream their responses, as runs on remote endpoints do by default, so
a truncated fault cuts a stream; the faults that damage a body also run
unstreamed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dyntaskmas.journal.store import JournalStore
from dyntaskmas.runner import Runner, RunOptions
from dyntaskmas.sim.faults import FAULTS, Fault, FaultConfig
from dyntaskmas.sim.http_server import SimulatedLLMServer

RATE = 0.2
MIXED_RATE = 0.1
# A slow fault waits longer than the client's timeout, so it always times out.
CLIENT_TIMEOUT_S = 1.0
SLOW_S = 2.0
# The planner allows six subtasks by default: five parallel ones and their combination.
FANOUT = 6

RATE_FIELDS: dict[Fault, str] = {
    "rate_limited": "rate_429",
    "server_error": "rate_500",
    "slow": "rate_slow",
    "malformed": "rate_malformed",
    "truncated": "rate_truncated",
}


def fault_config(kinds: tuple[Fault, ...]) -> FaultConfig:
    # One kind at 20 %; all five mixed at 10 % each, so half the requests fail.
    rate = RATE if len(kinds) == 1 else MIXED_RATE
    rates = {RATE_FIELDS[kind]: rate for kind in kinds}
    return FaultConfig(retry_after_s=0.02, slow_s=SLOW_S, **rates)  # type: ignore[arg-type]


CASES: list[tuple[tuple[Fault, ...], bool]] = [
    *(((kind,), True) for kind in FAULTS),
    (FAULTS, True),
    (("malformed",), False),
    (("truncated",), False),
]


@pytest.mark.parametrize(
    ("kinds", "stream"),
    CASES,
    ids=[
        f"{'mixed' if len(kinds) > 1 else kinds[0]}-{'streamed' if stream else 'unstreamed'}"
        for kinds, stream in CASES
    ],
)
async def test_planned_run_survives_faults(
    tmp_path: Path, kinds: tuple[Fault, ...], stream: bool
) -> None:
    server = SimulatedLLMServer(
        faults=fault_config(kinds), speedup=1000.0, seed=7, plan_fanout=FANOUT
    )
    options = RunOptions(
        model=server.model,
        agents=4,
        request_timeout_s=CLIENT_TIMEOUT_S,
        max_attempts=12,
        retry_base_delay_s=0.01,
        work_max_tokens=32,
        answer_max_tokens=32,
        journal_dir=str(tmp_path),
        stream=stream,
        # The check counts the plan's subtasks; the optimiser would merge them.
        optimise=False,
    )
    async with server:
        options = RunOptions(**{**options.__dict__, "base_url": server.base_url})
        async with Runner(options) as runner:
            result = await runner.run("Find the parts and combine them")
            run_id = runner.current_run_id
            # Streamed calls, and only those, report a time to first token.
            (endpoint,) = runner.endpoints
            ttft_p50_s = runner.allocator.monitor.attempt_summary(endpoint.name).ttft_p50_s

    assert (ttft_p50_s is not None) == stream

    assert result.status == "succeeded", result.notes
    # The plan was used: all its subtasks, no fallback to a single task.
    work = [task for task in result.tasks if task.kind == "work"]
    assert len(work) == FANOUT
    assert not any("single task" in note for note in result.notes)
    # The faults happened.
    assert all(server.faults.counts[kind] > 0 for kind in kinds), server.faults.counts

    # The server answered each request of the run whole and fault-free once:
    # the plan, the subtasks and the answer.
    assert set(server.completed.values()) == {1}
    assert sum(server.completed.values()) == result.llm_calls == FANOUT + 2

    # The journal records each task's output once, and it is the output the run kept.
    assert run_id is not None
    with JournalStore(tmp_path) as store:
        finishes = [row for row in store.events(run_id) if row.kind == "TaskFinished"]
    counts = Counter(row.payload["task_id"] for row in finishes)
    assert counts == Counter(task.id for task in result.tasks)
    recorded = {row.payload["task_id"]: row.payload["output"] for row in finishes}
    assert recorded == {task.id: task.output for task in result.tasks}
