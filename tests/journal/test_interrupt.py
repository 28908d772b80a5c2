"""SIGINT and SIGTERM during 'dyntaskmas run': the run id, the resume command, no traceback."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import sys
from pathlib import Path

import pytest

from dyntaskmas.journal.resume import load_resume_state
from dyntaskmas.journal.store import JournalStore, with_shown_status
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.runner import Runner

from .workload import REQUEST, PlannedWorkload, options_for

RESUME_COMMAND = re.compile(r"resume it with: (dyntaskmas resume \S+ --journal-dir \S+)$")


class HeldWorkload(PlannedWorkload):
    """Plans at once, then holds every work request until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(steps=("a", "b"))
        self.release = asyncio.Event()

    async def handle(self, request: ScriptedRequest) -> ScriptedReply:
        if self.key(request) != "plan":
            await self.release.wait()
        return await super().handle(request)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parents[2] / "src")
    for name in ("DYNTASKMAS_BASE_URL", "DYNTASKMAS_MODEL"):
        env.pop(name, None)
    return env


@pytest.mark.parametrize(("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_signal_prints_resume_command(
    tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    workload = HeldWorkload()
    async with ScriptedLLMServer(workload.handle) as server:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dyntaskmas.cli",
            "run",
            REQUEST,
            "--base-url",
            server.base_url,
            "--model",
            server.model,
            "--journal-dir",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env(),
        )
        # The plan call and both work calls: the run is under way and held.
        await server.wait_for_calls(3, timeout_s=30)
        process.send_signal(stop)
        _, stderr_bytes = await asyncio.wait_for(process.communicate(), timeout=30)
        stderr = stderr_bytes.decode()

        assert process.returncode == status, stderr
        assert "Traceback" not in stderr
        lines = stderr.strip().splitlines()
        assert len(lines) == 1, stderr
        assert f"interrupted by {stop.name}" in lines[0]
        match = RESUME_COMMAND.search(lines[0])
        assert match is not None, stderr
        run_id = shlex.split(match.group(1))[2]

        with JournalStore(tmp_path) as store:
            shown = {row.run_id: status for row, status in with_shown_status(store.runs())}
            assert shown == {run_id: "interrupted"}
            _, state = load_resume_state(store, run_id)
        workload.release.set()
        async with Runner(options_for(server, tmp_path)) as runner:
            result = await runner.resume(state)

    assert result.status == "succeeded"
    assert result.answer == "answer from steps: a b"
