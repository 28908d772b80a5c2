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
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Literal

from dyntaskmas.bench.theta import TOPICS
from dyntaskmas.context.manager import ContextManager
from dyntaskmas.context.repository import ContextRepository
from dyntaskmas.graph.task import TaskSpec

StoreKind = Literal["memory", "redis"]
REDIS_START_TIMEOUT_S = 10.0
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


def _spawn_redis(binary: str, directory: str) -> tuple[subprocess.Popen[str], int] | None:
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            # No persistence: the benchmark's keys are thrown away with the server.
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            directory,
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    # Readiness is the server's own log line, so there is no polling.
    for line in process.stdout:
        if "Ready to accept connections" in line:
            # Keep reading its log, or a full pipe would block the server.
            threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
            return process, port
        if time.monotonic() > deadline:
            break
    process.kill()
    process.wait()
    return None


@contextmanager
def local_redis() -> Iterator[str | None]:
    """Start redis-server on a free 127.0.0.1 port and yield its URL; stop it on exit.

    Yields None when redis-server or redis-py is not installed. Raises
    RuntimeError when the server does not start in three tries (another
    process can take a probed port before the server binds it).
    """
    binary = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        binary = None
    if binary is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="dyntaskmas-redis-") as directory:
        started = None
        for _ in range(3):
            started = _spawn_redis(binary, directory)
            if started is not None:
                break
        if started is None:
            raise RuntimeError("redis-server did not start on 127.0.0.1 in three tries")
        process, port = started
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)
