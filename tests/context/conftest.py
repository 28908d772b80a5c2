"""Fixtures of the context tests: stores of every kind, and a private redis-server.

The Redis tests start Debian's ``redis-server`` on a free port of 127.0.0.1,
with persistence off, once per test session, and each test gets its own key
prefix. They skip with the reason when the binary or redis-py is missing.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from dyntaskmas.context.local_redis import local_redis
from dyntaskmas.context.sqlite_store import SQLiteStore
from dyntaskmas.context.stores import ContextStore, MemoryStore

STORE_KINDS = ("memory", "sqlite", "redis")

_prefixes = itertools.count()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server this test session started on 127.0.0.1."""
    pytest.importorskip("redis", reason="redis-py is not installed (the 'redis' extra)")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed; install Debian's redis-server package")
    with local_redis(str(tmp_path_factory.mktemp("redis"))) as url:
        yield url


def redis_prefix() -> str:
    """Return a key prefix no other test of this session uses."""
    return f"test:{next(_prefixes)}"


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ContextStore]:
    """A fresh, empty store of each kind."""
    made: ContextStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "sqlite":
        made = SQLiteStore.in_data_dir(tmp_path / "data")
    else:
        from dyntaskmas.context.redis_store import RedisStore

        url = request.getfixturevalue("redis_url")
        made = RedisStore(url, prefix=redis_prefix())
    try:
        yield made
    finally:
        await made.close()
