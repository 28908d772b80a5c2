"""API keys stay out of the logs and the journal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dyntaskmas.config import apply_config, load_config
from dyntaskmas.engine.prompts import DEFAULT_ROLES
from dyntaskmas.llm.scripted import ScriptedLLMServer
from dyntaskmas.runner import Runner, RunOptions

from .workload import REQUEST, PlannedWorkload, options_for

PLANTED_KEY = "sk-planted-3f9c1e7a5b2d4c6e8f0a"
KEY_VAR = "DYNTASKMAS_TEST_PLANTED_KEY"


async def test_planted_key_is_in_no_log_or_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(KEY_VAR, PLANTED_KEY)
    caplog.set_level(logging.DEBUG)
    workload = PlannedWorkload(steps=("a", "b"))
    async with ScriptedLLMServer(workload.handle) as server:
        async with Runner(options_for(server, tmp_path, api_key_env=KEY_VAR)) as runner:
            result = await runner.run(REQUEST)
        sent = [call.request.headers.get("authorization", "") for call in server.calls]

    journal_bytes = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.is_file())
    assert result.status == "succeeded"
    # The key did reach the server, so its absence below means something.
    assert all(PLANTED_KEY in header for header in sent)
    assert PLANTED_KEY not in caplog.text
    assert PLANTED_KEY.encode() not in journal_bytes


async def test_key_from_config_file_is_in_no_log_or_journal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    journal_dir = tmp_path / "journal"
    workload = PlannedWorkload(steps=("a", "b"))
    async with ScriptedLLMServer(workload.handle) as server:
        config_file = tmp_path / "run.toml"
        config_file.write_text(
            f'[[endpoint]]\nname = "main"\nbase_url = "{server.base_url}"\n'
            f'model = "{server.model}"\napi_key = "{PLANTED_KEY}"\n[limits]\nagents = 2\n',
            encoding="utf-8",
        )
        options = apply_config(
            RunOptions(journal_dir=str(journal_dir)),
            load_config(config_file, known_roles=DEFAULT_ROLES),
        )
        async with Runner(options) as runner:
            result = await runner.run(REQUEST)
        sent = [call.request.headers.get("authorization", "") for call in server.calls]

    journal_bytes = b"".join(path.read_bytes() for path in journal_dir.iterdir() if path.is_file())
    assert result.status == "succeeded"
    assert sent
    assert all(PLANTED_KEY in header for header in sent)
    assert PLANTED_KEY not in caplog.text
    assert PLANTED_KEY.encode() not in journal_bytes
    # The journal names the file, so a resume reads the key from it again.
    assert str(config_file).encode() in journal_bytes
