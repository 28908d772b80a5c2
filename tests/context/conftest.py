"""Fixtures of the context tests: stores of every kind, and a private redis-server.

The Redis tests start Debian's ``redis-server`` on a free port of 127.0.0.1,
with persistence off, once per test session, and each test gets its own key
prefix. They skip with the reason when the binary or redis-py is missing.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import pytest

from dyntaskmas.context.sqlite_store import SQLiteStore
from dyntaskmas.context.stores import ContextStore, MemoryStore

REDIS_START_TIMEOUT_S = 10.0
STORE_KINDS = ("memory", "sqlite", "redis")

_prefixes = itertools.count()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass


def _start_redis(binary: str, directory: Path) -> tuple[subprocess.Popen[str], int]:
    # Another process can take the probed port before redis-server binds it;
    # a few fresh ports make that race harmless.
    failures = []
    for _ in range(3):
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        lines = []
        # Readiness is the server's own log line, so no polling or sleeping.
        for line in process.stdout:
            lines.append(line)
            if "Ready to accept connections" in line:
                # Keep reading its log, or a full pipe would block the server.
                threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
                return process, port
            if time.monotonic() > deadline:
                break
        process.kill()
        process.wait()
        failures.append("".join(lines[-5:]))
    pytest.fail(f"redis-server did not start on 127.0.0.1: {failures}")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a redis-server this test session started on 127.0.0.1."""
    pytest.importorskip("redis", reason="redis-py is not installed (the 'redis' extra)")
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed; install Debian's redis-server package")
    process, port = _start_redis(binary, tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


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
