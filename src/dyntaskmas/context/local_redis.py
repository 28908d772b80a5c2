"""A private redis-server on 127.0.0.1, for the Redis store's tests and benchmarks.

:func:`local_redis` starts Debian's ``redis-server`` on a free loopback port
with persistence off, yields its URL and stops it on exit. Readiness is the
server's own "Ready to accept connections" log line, so nothing polls.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

START_TIMEOUT_S = 10.0
# Another process can take a probed port before the server binds it; a few
# fresh ports make that race harmless.
START_ATTEMPTS = 3


def redis_available() -> bool:
    """Tell whether both the redis-server binary and redis-py are installed."""
    if shutil.which("redis-server") is None:
        return False
    try:
        import redis  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def local_redis(directory: str | None = None) -> Iterator[str]:
    """Start redis-server on a free 127.0.0.1 port and yield its ``redis://`` URL.

    ``directory`` is the server's working folder (a temporary one by
    default). Raises RuntimeError, quoting the server's last log lines, when
    it does not start in :data:`START_ATTEMPTS` tries, and FileNotFoundError
    when redis-server is not installed.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed; install Debian's redis-server")
    with tempfile.TemporaryDirectory(prefix="dyntaskmas-redis-") as scratch:
        process, port = _start(binary, directory or scratch)
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _start(binary: str, directory: str) -> tuple[subprocess.Popen[str], int]:
    failures = []
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                # No persistence: the keys are thrown away with the server.
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
        deadline = time.monotonic() + START_TIMEOUT_S
        lines = []
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
        failures.append("".join(lines[-5:]).strip())
    raise RuntimeError(f"redis-server did not start on 127.0.0.1: {failures}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _drain(stream: IO[str]) -> None:
    for _ in stream:
        pass
