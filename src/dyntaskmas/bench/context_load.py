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
``1 / (think_s + cost of one round)`` however many agents run. This module
also starts and stops the private redis-server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

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

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.wall_s

    @property
    def decisions_per_s(self) -> float:
        return self.decisions / self.wall_s


async def _agent(manager: ContextManager, index: int, rounds: int, think_s: float) -> None:
    task_id = f"agent.{index}"
    fact, need = TOPICS[index % len(TOPICS)]
    spec = TaskSpec(id=task_id, description=need)
    for round_number in range(rounds):
        await asyncio.sleep(think_s)
        await manager.publish(task_id, f"{fact} Round {round_number}.", description=need)
        await manager.context_for(spec, (), BUDGET_TOKENS)


async def _run_load(
    agents: int, store: StoreKind, rounds: int, think_s: float, redis_url: str | None
) -> LoadPoint:
    if store == "redis":
        if redis_url is None:
            raise ValueError("the redis store needs a redis_url")
        from dyntaskmas.context.redis_store import RedisStore

        repository = ContextRepository(RedisStore(redis_url, prefix=f"bench:{next(_prefixes)}"))
    else:
        repository = ContextRepository.in_memory()
    manager = ContextManager("load", repository)
    try:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for index in range(agents):
                group.create_task(_agent(manager, index, rounds, think_s))
        wall_s = time.perf_counter() - started
    finally:
        await manager.close()
    stats = manager.stats
    return LoadPoint(
        agents=agents,
        store=store,
        commits=stats.updates_published,
        decisions=stats.filtered_out + stats.relevant_offers,
        wall_s=wall_s,
    )


def run_load(
    agents: int,
    store: StoreKind,
    *,
    rounds: int,
    think_s: float,
    redis_url: str | None = None,
) -> LoadPoint:
    """Run ``agents`` agents for ``rounds`` rounds each against one manager and measure it."""
    if agents < 1 or rounds < 1:
        raise ValueError(f"agents and rounds must be >= 1, got {agents} and {rounds}")
    return asyncio.run(_run_load(agents, store, rounds, think_s, redis_url))


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
