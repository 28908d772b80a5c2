"""Live terminal progress of a run, drawn with rich from the event stream.

:class:`LiveProgress` subscribes to an engine's
:class:`~dyntaskmas.observe.events.EventBus` and redraws, a few times a
second, one status line (tasks done out of those known, running, failed,
tokens, elapsed time, each endpoint's current concurrency limit) and a
table of the running tasks with their agents and how long each has run.
It draws on a rich ``Console`` (stderr in the CLI, so ``--json`` on stdout
is unaffected) and erases itself when the run ends, leaving the printed
result alone.

:func:`should_draw_progress` is the CLI's rule: draw only when both stdout
and stderr are terminals, so that output redirected to a file or a pipe
stays clean, and never with ``--quiet``.

    with LiveProgress(Console(stderr=True)) as progress:
        progress.attach(runner.engine.events)
        result = await runner.run(request)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dyntaskmas.observe.events import Event, EventBus, RunStarted, TaskStarted
from dyntaskmas.observe.run_view import RunViewBuilder

# Rows of running tasks shown; the rest are counted in one line.
MAX_ROWS = 12
DESCRIPTION_CHARS = 60


def should_draw_progress(*, quiet: bool, streams: Sequence[IO[str]]) -> bool:
    """Return whether to draw live progress: not quiet, and every one of ``streams`` a terminal."""
    if quiet:
        return False
    for stream in streams:
        isatty = getattr(stream, "isatty", None)
        if isatty is None or not isatty():
            return False
    return True


class LiveProgress:
    """Draws a run's progress on ``console`` while it is open.

    Events arrive on the engine's thread and rich redraws from its own
    refresh thread, so the state is read and written under a lock.
    ``clock`` gives wall seconds for elapsed times (injectable for tests).
    """

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_per_second: float = 4.0,
    ) -> None:
        self.console = console
        self._clock = clock
        self._lock = threading.Lock()
        self._builder = RunViewBuilder()
        self._run_started_at: float | None = None
        # Wall time at which each running task started, by task id.
        self._task_started_at: dict[str, float] = {}
        self._live = Live(
            self,
            console=console,
            refresh_per_second=refresh_per_second,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Subscribe to ``bus``; return the function that unsubscribes."""
        return bus.subscribe(self.handle)

    def handle(self, event: Event) -> None:
        """Fold ``event`` into the state drawn at the next refresh."""
        now = self._clock()
        with self._lock:
            if isinstance(event, RunStarted) and (
                self._run_started_at is None or event.run_id != self._builder.view().run_id
            ):
                self._run_started_at = now
                self._task_started_at.clear()
            if isinstance(event, TaskStarted):
                self._task_started_at[event.task_id] = now
            self._builder.add(event)

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._live.stop()

    def __rich__(self) -> RenderableType:
        with self._lock:
            return self.render()

    def render(self) -> RenderableType:
        """Return the current status line and table of running tasks."""
        view = self._builder.view()
        now = self._clock()
        elapsed = now - self._run_started_at if self._run_started_at is not None else 0.0
        failed = sum(1 for task in view.tasks.values() if task.state == "failed")
        running = view.running
        status = Text()
        status.append(f"{view.done_count}/{len(view.tasks)} tasks done", style="bold")
        status.append(f"  {len(running)} running")
        if failed:
            status.append(f"  {failed} failed", style="red")
        status.append(
            f"  {view.prompt_tokens + view.completion_tokens:,} tokens"
            f" ({view.prompt_tokens:,} prompt, {view.completion_tokens:,} completion)"
        )
        status.append(f"  {elapsed:.1f} s")
        limits = view.current_limits()
        if limits:
            shown = ", ".join(f"{endpoint} {limit}" for endpoint, limit in sorted(limits.items()))
            status.append(f"  limit {shown}")
        if not running:
            return status

        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        # Ids, agents and times keep their width; the description is cut to fit.
        table.add_column("task", no_wrap=True, min_width=6)
        table.add_column("agent", no_wrap=True, min_width=7)
        table.add_column("running", justify="right", no_wrap=True, min_width=7)
        table.add_column("description", overflow="ellipsis", no_wrap=True, ratio=1)
        for task in running[:MAX_ROWS]:
            started = self._task_started_at.get(task.id, now)
            description = " ".join(task.description.split())
            if len(description) > DESCRIPTION_CHARS:
                description = description[: DESCRIPTION_CHARS - 3] + "..."
            # Text, not str: rich would read brackets in planner output as markup.
            table.add_row(
                Text(task.id), Text(task.agent or "-"), f"{now - started:.1f} s", Text(description)
            )
        parts: list[RenderableType] = [status, table]
        if len(running) > MAX_ROWS:
            parts.append(Text(f"... and {len(running) - MAX_ROWS} more running", style="dim"))
        return Group(*parts)
