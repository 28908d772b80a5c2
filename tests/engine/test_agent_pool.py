"""The agent pool's load balancing and per-endpoint slot limits."""

from __future__ import annotations

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.llm.limiter import ConcurrencyLimiter

from .harness import ROLE, make_engine, records, replies_by_task, scripted_model, step


class _Unused:
    """A model the pool never calls; balancing needs none."""

    async def complete(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the pool must not call models")


def _pool(agents: int, limit: int) -> AgentPool:
    built = build_agents(agents, [ROLE], {"one": _Unused()})  # type: ignore[dict-item]
    return AgentPool(built, limits={"one": ConcurrencyLimiter(limit)})


def test_pool_stops_at_endpoint_limit() -> None:
    pool = _pool(agents=4, limit=2)

    first = pool.choose(ROLE)
    assert first is not None
    pool.assign(first, "a")
    second = pool.choose(ROLE)
    assert second is not None
    pool.assign(second, "b")

    assert pool.choose(ROLE) is None
    assert pool.idle_roles() == set()


def test_pool_frees_slot_on_release() -> None:
    pool = _pool(agents=3, limit=1)
    agent = pool.choose(ROLE)
    assert agent is not None
    pool.assign(agent, "a")

    pool.release(agent, busy_s=1.0)

    assert pool.choose(ROLE) is not None


def test_pool_reads_changed_limit() -> None:
    limiter = ConcurrencyLimiter(1)
    built = build_agents(3, [ROLE], {"one": _Unused()})  # type: ignore[dict-item]
    pool = AgentPool(built, limits={"one": limiter})
    agent = pool.choose(ROLE)
    assert agent is not None
    pool.assign(agent, "a")
    assert pool.choose(ROLE) is None

    limiter.limit = 2

    assert pool.choose(ROLE) is not None


def test_pool_prefers_least_busy_agent() -> None:
    pool = _pool(agents=2, limit=2)
    first = pool.choose(ROLE)
    assert first is not None
    pool.assign(first, "a")
    pool.release(first, busy_s=5.0)

    chosen = pool.choose(ROLE)

    assert chosen is not None
    assert chosen.name != first.name


def test_pool_skips_full_endpoint() -> None:
    built = build_agents(4, [ROLE], {"one": _Unused(), "two": _Unused()})  # type: ignore[dict-item]
    pool = AgentPool(built, limits={"one": ConcurrencyLimiter(1)})
    first = pool.choose(ROLE)
    assert first is not None
    pool.assign(first, "a")

    chosen = pool.choose(ROLE)

    assert first.endpoint == "one"
    assert chosen is not None
    assert chosen.endpoint == "two"


def test_pool_serves_only_agents_roles() -> None:
    built = build_agents(1, ["writer"], {"one": _Unused()})  # type: ignore[dict-item]
    built += build_agents(1, [ROLE], {"one": _Unused()})  # type: ignore[dict-item]
    built[1].name = "agent-2"
    pool = AgentPool(built)
    writer = pool.choose("writer")
    assert writer is not None
    pool.assign(writer, "a")

    assert pool.idle_roles() == {ROLE}
    assert pool.choose("writer") is None
    assert pool.roles == {"writer", ROLE}


async def test_engine_respects_endpoint_slots() -> None:
    """Four agents on an endpoint with two slots run at most two tasks at once.

        a   b   c   d      (independent, 0.2 s each)

    Tasks start only when a slot is free, so recorded start times are real:
    the third task starts after one of the first two has finished.
    """
    async with scripted_model(replies_by_task(dict.fromkeys("abcd", 0.2))) as (server, model):
        agents = build_agents(4, [ROLE], {"scripted": model})
        engine = make_engine(model, agents)
        engine.pool.limits = {"scripted": ConcurrencyLimiter(2)}
        result = await engine.run_graph([step(name) for name in "abcd"])

    tasks = sorted(records(result).values(), key=lambda r: r.started_at or 0.0)
    first_end = min(r.finished_at or 0.0 for r in tasks[:2])
    assert result.status == "succeeded"
    assert result.max_concurrency == 2
    assert server.peak_in_flight <= 2
    assert (tasks[2].started_at or 0.0) >= first_end - 0.01
