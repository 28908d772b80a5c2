"""API keys stay out of the logs and the journal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from dyntaskmas.llm.scripted import ScriptedLLMServer
from dyntaskmas.runner import Runner

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
