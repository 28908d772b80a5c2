"""Stop a command on SIGINT or SIGTERM and print how to resume the run it stopped.

:class:`RunTracker` runs a command's coroutine with handlers for both
signals. The first signal cancels the coroutine, so ``async with`` blocks
close their servers and the journal as on any error. The tracker then raises
:class:`~dyntaskmas.errors.RunInterruptedError`, which names the run that was
going on and the ``dyntaskmas resume`` command that finishes it. Further
signals during that cleanup are ignored, so a second Ctrl-C cannot leave a
server process behind.

The journal needs nothing more: every event was committed before the engine
went on, and a run whose process is gone shows as ``interrupted``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dyntaskmas.errors import RunInterruptedError

#: The signals that stop a command; the exit status is 128 plus the signal number.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TracksRuns(Protocol):
    """The part of a :class:`~dyntaskmas.runner.Runner` that the tracker reads."""

    @property
    def current_run_id(self) -> str | None: ...

    @property
    def journalled(self) -> bool: ...


@dataclass
class RunTracker:
    """Runs one command until it ends or a stop signal arrives.

    The command sets ``runner`` once it has one, so that the tracker can name
    the current run; ``journal_dir`` is the folder given on the command line,
    repeated in the resume command when it is not the default.
    """

    runner: TracksRuns | None = None
    journal_dir: Path | None = None

    async def run_until_signal(self, work: Coroutine[Any, Any, int]) -> int:
        """Return ``work``'s exit status; raise RunInterruptedError on a stop signal."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None, "called from a coroutine, so a task runs it"
        received: list[signal.Signals] = []

        def on_signal(number: signal.Signals) -> None:
            if not received:
                received.append(number)
                task.cancel()

        for number in STOP_SIGNALS:
            loop.add_signal_handler(number, on_signal, number)
        try:
            return await work
        except asyncio.CancelledError:
            if not received:
                raise
            # The cancellation was ours: turn it into the interruption it stands for.
            task.uncancel()
            raise RunInterruptedError(
                received[0].name, 128 + received[0].value, self.resume_hint()
            ) from None
        finally:
            for number in STOP_SIGNALS:
                loop.remove_signal_handler(number)

    def resume_hint(self) -> str:
        """Return what the user can do about the stopped run, as one sentence."""
        runner = self.runner
        run_id = runner.current_run_id if runner is not None else None
        if run_id is None:
            return "no run had started"
        if runner is not None and not runner.journalled:
            return f"run {run_id} was not journalled (--no-journal), so it cannot be resumed"
        command = [_program(), "resume", run_id]
        if self.journal_dir is not None:
            command += ["--journal-dir", str(self.journal_dir)]
        return f"run {run_id} is in the journal; resume it with: {shlex.join(command)}"


def _program() -> str:
    """Return the command as the user typed it, such as ``.venv/bin/dyntaskmas``.

    A bare ``dyntaskmas`` needs the virtual environment on PATH, which the
    README's commands do not assume; ``python -m dyntaskmas`` falls back to
    the bare name.
    """
    typed = sys.argv[0] if sys.argv else ""
    return typed if os.path.basename(typed) == "dyntaskmas" else "dyntaskmas"
