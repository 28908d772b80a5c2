"""Load test of the context manager: many concurrent agents publishing and asking for context.

Each agent is an asyncio task that, per round, waits ``think_s`` of real
time (standing in for its model call), publishes an output, and requests
its context. Every agent shares one :class:`ContextManager`, on the memory
store or on a Redis server. Throughput is counted from the manager's own
stats over real wall time:

- commits: updates committed (``ContextStats.updates_published``);
- decisions: θ decisions, one per (entry, asking task) pair that
  ``context_for`` weighed (``filtered_out + relevant_offers``).

Without contention, per-agent commits per second stay near
``1 / (think_s + cost of one round)`` however many agents run, until the
rounds' CPU time fills the process's one core. ``cpu_ms_per_round`` is that
cost: process CPU time over rounds. With ``processes > 1`` (Redis only),
the agents are split over that many worker processes sharing one Redis
key prefix, as agents on several machines would share a server, and the
rates add up over the slowest worker's wall time. This module also starts
and stops the private redis-server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
import queue
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from dyntaskmas.bench.theta import TOPICS
from dyntaskmas.context.local_redis import local_redis as start_local_redis
from dyntaskmas.context.local_redis import redis_available
from dyntaskmas.context.manager import ContextManager
from dyntaskmas.context.repository import ContextRepository
from dyntaskmas.graph.task import TaskSpec

StoreKind = Literal["memory", "redis"]
# A prompt budget large enough that selection never drops an entry for room.
BUDGET_TOKENS = 4000

_prefixes = itertools.count()


@dataclass(frozen=True)
class LoadPoint:
    """Throughput of one (agents, store) run, over its real wall time."""

    agents: int
    store: StoreKind
    commits: int
    decisions: int
    wall_s: float
    #: Process CPU time, summed over the worker processes.
    cpu_s: float = 0.0
    processes: int = 1

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.wall_s

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.wall_s

    def cpu_ms_per_round(self, rounds: int) -> float:
        return 1000.0 * self.cpu_s / (self.agents * rounds)


async def _agent(manager: ContextManager, index: int, rounds: int, think_s: float) -> None:
    task_id = f"agent.{index}"
    fact, need = TOPICS[index % len(TOPICS)]
    spec = TaskSpec(id=task_id, description=need)
    for round_number in range(rounds):
        await asyncio.sleep(think_s)
        await manager.publish(task_id, f"{fact} Round {round_number}.", description=need)
        await manager.context_for(spec, (), BUDGET_TOKENS)


async def _run_load(
    agents: int,
    store: StoreKind,
    rounds: int,
    think_s: float,
    redis_url: str | None,
    *,
    prefix: str | None = None,
    first_index: int = 0,
    start: Any = None,
) -> LoadPoint:
    if store == "redis":
        if redis_url is None:
            raise ValueError("the redis store needs a redis_url")
        from dyntaskmas.context.redis_store import RedisStore

        prefix = prefix if prefix is not None else f"bench:{os.getpid()}:{next(_prefixes)}"
        repository = ContextRepository(RedisStore(redis_url, prefix=prefix))
    else:
        repository = ContextRepository.in_memory()
    manager = ContextManager("load", repository)
    try:
        if start is not None:
            # A multiprocessing barrier: every worker starts its clock together.
            await asyncio.get_running_loop().run_in_executor(None, start.wait)
        started = time.perf_counter()
        cpu_started = time.process_time()
        async with asyncio.TaskGroup() as group:
            for index in range(first_index, first_index + agents):
                group.create_task(_agent(manager, index, rounds, think_s))
        wall_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    finally:
        await manager.close()
    stats = manager.stats
    return LoadPoint(
        agents=agents,
        store=store,
        commits=stats.updates_published,
        decisions=stats.filtered_out + stats.relevant_offers,
        wall_s=wall_s,
        cpu_s=cpu_s,
    )


def _worker(
    agents: int,
    rounds: int,
    think_s: float,
    redis_url: str,
    prefix: str,
    first_index: int,
    start: Any,
    results: Any,
) -> None:
    point = asyncio.run(
        _run_load(
            agents,
            "redis",
            rounds,
            think_s,
            redis_url,
            prefix=prefix,
            first_index=first_index,
            start=start,
        )
    )
    results.put(point)


def _run_processes(
    agents: int, rounds: int, think_s: float, redis_url: str, processes: int
) -> LoadPoint:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    prefix = f"bench:{os.getpid()}:{next(_prefixes)}"
    shares = [agents // processes + (1 if i < agents % processes else 0) for i in range(processes)]
    workers = [
        context.Process(
            target=_worker,
            args=(share, rounds, think_s, redis_url, prefix, sum(shares[:i]), start, results),
        )
        for i, share in enumerate(shares)
    ]
    for worker in workers:
        worker.start()
    points: list[LoadPoint] = []
    try:
        while len(points) < len(workers):
            try:
                points.append(results.get(timeout=1.0))
            except queue.Empty:
                failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if failed:
                    raise RuntimeError(
                        f"context load workers failed with exit codes {failed}"
                    ) from None
    finally:
        for worker in workers:
            if len(points) < len(workers):
                # A failed worker leaves the others waiting at the barrier.
                worker.terminate()
            worker.join()
    return LoadPoint(
        agents=agents,
        store="redis",
        commits=sum(p.commits for p in points),
        decisions=sum(p.decisions for p in points),
        wall_s=max(p.wall_s for p in points),
        cpu_s=sum(p.cpu_s for p in points),
        processes=processes,
    )


def run_load(
    agents: int,
    store: StoreKind,
    *,
    rounds: int,
    think_s: float,
    redis_url: str | None = None,
    processes: int = 1,
) -> LoadPoint:
    """Run ``agents`` agents for ``rounds`` rounds each and measure the context manager.

    With ``processes > 1`` the agents are split over that many worker
    processes, one manager each, over one Redis key prefix.
    """
    if agents < 1 or rounds < 1:
        raise ValueError(f"agents and rounds must be >= 1, got {agents} and {rounds}")
    if processes < 1 or processes > agents:
        raise ValueError(f"processes must be from 1 to agents ({agents}), got {processes}")
    if processes == 1:
        return asyncio.run(_run_load(agents, store, rounds, think_s, redis_url))
    if store != "redis" or redis_url is None:
        raise ValueError("several processes share context only through Redis; pass redis_url")
    return _run_processes(agents, rounds, think_s, redis_url, processes)


# --- a private redis-server ------------------------------------------------------


@contextmanager
def local_redis() -> Iterator[str | None]:
    """Yield the URL of a private redis-server on 127.0.0.1, or None without one.

    None means redis-server or redis-py is not installed, so the caller can
    skip its Redis rows; see :func:`dyntaskmas.context.local_redis.local_redis`.
    """
    if not redis_available():
        yield None
        return
    with start_local_redis() as url:
        yield url
