"""The ``dyntaskmas serve-sim`` command: startup line, responses, clean stop, bad options.

The command runs as a subprocess, so the tests see its real exit status,
signals and stderr. It listens on a free port of 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from dyntaskmas.cli import EXIT_OK, EXIT_USAGE, build_parser, main, sim_server_from_args
from dyntaskmas.errors import ConfigError
from dyntaskmas.sim.capacity import ThrottleWindow

COMMAND = Path(sys.executable).parent / "dyntaskmas"
STARTUP_TIMEOUT_S = 30.0


def command_path() -> Path:
    if not COMMAND.is_file():
        pytest.skip(f"the dyntaskmas command is not installed next to {sys.executable}")
    return COMMAND


@contextlib.asynccontextmanager
async def serve_sim(*options: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """Start ``serve-sim`` on a free loopback port and yield it with its base URL."""
    process = await asyncio.create_subprocess_exec(
        str(command_path()),
        "serve-sim",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), STARTUP_TIMEOUT_S)
        yield process, line.decode().strip()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop_with(process: asyncio.subprocess.Process, signal_number: int) -> tuple[int, str]:
    process.send_signal(signal_number)
    _, stderr = await asyncio.wait_for(process.communicate(), STARTUP_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_serve_sim_prints_url_and_responds() -> None:
    async with serve_sim("--speedup", "1000", "--model", "sim-cli") as (process, url):
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/v1")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/models") as response:
                models = await response.json()
            body = {
                "model": "sim-cli",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 3,
            }
            async with session.post(f"{url}/chat/completions", json=body) as response:
                completion = await response.json()
        code, stderr = await stop_with(process, signal.SIGTERM)

    assert models["data"][0]["id"] == "sim-cli"
    assert completion["usage"]["completion_tokens"] == 3
    assert code == EXIT_OK
    assert "Traceback" not in stderr


async def test_serve_sim_stops_cleanly_on_interrupt() -> None:
    async with serve_sim() as (process, url):
        assert url.startswith("http://127.0.0.1:")
        code, stderr = await stop_with(process, signal.SIGINT)

    assert code == EXIT_OK
    assert "Traceback" not in stderr


async def test_serve_sim_injects_configured_fault() -> None:
    async with serve_sim("--rate-429", "1", "--retry-after", "2") as (process, url):
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(f"{url}/chat/completions", json=body) as response:
                status = response.status
                retry_after = response.headers["Retry-After"]
        await stop_with(process, signal.SIGTERM)

    assert status == 429
    assert retry_after == "2"


async def run_to_exit(*options: str) -> tuple[int | None, bytes, str]:
    process = await asyncio.create_subprocess_exec(
        str(command_path()),
        "serve-sim",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), STARTUP_TIMEOUT_S)
    return process.returncode, stdout, stderr.decode()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate-429", "1.5"], "--rate-429 must be between 0 and 1"),
        (["--slots", "many"], "invalid int value"),
    ],
)
async def test_bad_option_exits_with_one_line(options: list[str], message: str) -> None:
    code, stdout, stderr = await run_to_exit(*options)

    lines = stderr.strip().splitlines()
    assert code == EXIT_USAGE
    assert len(lines) == 1
    assert message in lines[0]
    assert stdout == b""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--rate-500", "0.6", "--rate-slow", "0.6"], "add up to 1.2"),
        (["--rate-truncated", "nan"], "--rate-truncated must be between 0 and 1"),
        (["--slots", "0"], "--slots must be >= 1"),
        (["--speedup", "0"], "--speedup must be a number > 0"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--slow-s", "-1"], "--slow-s must be a number of seconds >= 0"),
        (["--retry-after", "inf"], "--retry-after must be a number of seconds >= 0"),
        (["--max-context-tokens", "0"], "--max-context-tokens must be >= 1"),
        (["--trace-dir", "/nonexistent"], "--trace-dir needs --output-lengths"),
        (["--inflate-above", "0"], "--inflate-above must be >= 1"),
        (["--reject-above", "10"], "--reject-above (10) must be >= --inflate-above (24)"),
        (["--throttle", "0,5"], "--throttle must be three numbers"),
        (["--throttle", "0,-5,2"], "--throttle values must be numbers of seconds >= 0"),
    ],
)
def test_invalid_value_is_usage_error(
    options: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve-sim", *options])

    lines = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_USAGE
    assert len(lines) == 1
    assert message in lines[0]


async def test_busy_port_is_usage_error() -> None:
    async with serve_sim() as (process, url):
        port = url.rsplit(":", 1)[1].split("/")[0]
        code, _, stderr = await run_to_exit("--port", port)
        await stop_with(process, signal.SIGTERM)

    assert code == EXIT_USAGE
    assert f"cannot listen on 127.0.0.1 port {port}" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_options_build_configured_server() -> None:
    args = build_parser().parse_args(
        [
            "serve-sim",
            "--slots",
            "8",
            "--speedup",
            "4",
            "--rate-500",
            "0.25",
            "--max-context-tokens",
            "4096",
            "--output-lengths",
            "code",
        ]
    )

    server = sim_server_from_args(args)

    assert server.simulator.config.slots == 8
    assert server.simulator.config.max_context_tokens == 4096
    assert server.simulator.speedup == 4.0
    assert server.faults.config.rate_500 == 0.25
    assert server.faults.config.rate_429 == 0.0


def test_missing_trace_directory_is_config_error(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["serve-sim", "--output-lengths", "conv", "--trace-dir", str(tmp_path)]
    )

    with pytest.raises(ConfigError, match="does not exist"):
        sim_server_from_args(args)


def test_capacity_options_build_profile() -> None:
    args = build_parser().parse_args(
        ["serve-sim", "--reject-above", "50", "--throttle", "1,5,2", "--retry-after", "3"]
    )

    server = sim_server_from_args(args)

    assert server.capacity is not None
    assert (server.capacity.inflate_above, server.capacity.reject_above) == (24, 50)
    assert server.capacity.retry_after_s == 3.0
    assert server.capacity.throttle == ThrottleWindow(1.0, 5.0, 2.0)
    plain = sim_server_from_args(build_parser().parse_args(["serve-sim"]))
    assert plain.capacity is None
