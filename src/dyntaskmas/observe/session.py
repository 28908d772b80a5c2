"""Everything that watches one CLI run: the run view, live progress, spans, trace and report.

:class:`RunObserver` is the CLI's single entry point to observability. It
subscribes a :class:`~dyntaskmas.observe.run_view.RunViewBuilder` to the
engine's bus, and optionally the live progress display and OpenTelemetry
spans. When the run's block ends it stops the display and writes the
Chrome trace and the HTML report that were asked for.

    with RunObserver(engine.events, ObserveOptions(trace=Path("run.json"))) as observer:
        result = await engine.run(request)
    print(format_accounting(observer.accounting()))
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from dyntaskmas.errors import ConfigError
from dyntaskmas.observe.accounting import Accounting, Prices, account
from dyntaskmas.observe.events import Event, EventBus
from dyntaskmas.observe.run_view import RunView, RunViewBuilder

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class ObserveOptions:
    """Observers of a CLI run and the files to write.

    Live progress is drawn on ``console``; with None, none is drawn.
    """

    console: Console | None = None
    trace: Path | None = None
    report: Path | None = None
    prices: Prices | None = None
    # Environment with OTEL_TRACES_EXPORTER; None, or no exporter named, makes no spans.
    otel_environ: Mapping[str, str] | None = None


def check_output_path(path: Path, flag: str) -> None:
    """Raise ConfigError unless ``path`` can be written, checked before a run spends anything.

    The check opens the file for appending, which changes no content, and
    removes it again if it did not exist, because permission bits alone miss
    read-only and special file systems and root's rights.
    """
    if path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        raise ConfigError(
            f"{flag} {str(path)!r}: folder {str(path.parent)!r} does not exist; create it first"
        )
    existed = path.exists()
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{flag} {str(path)!r} cannot be written: {exc.strerror}; choose another path"
        ) from None
    if not existed:
        path.unlink(missing_ok=True)


class RunObserver:
    """Watches the runs on ``bus`` while open; see the module docstring."""

    def __init__(
        self, bus: EventBus, options: ObserveOptions | None = None, *, write_on_exit: bool = True
    ) -> None:
        self.options = options or ObserveOptions()
        # False: the caller writes the files itself, with write_files().
        self._write_on_exit = write_on_exit
        self._builder = RunViewBuilder()
        self._unsubscribe: list[Callable[[], None]] = [bus.subscribe(self._builder.add)]
        self._stack = contextlib.ExitStack()
        if self.options.otel_environ is not None:
            self._attach_otel(bus, self.options.otel_environ)
        if self.options.console is not None:
            from dyntaskmas.observe.progress import LiveProgress

            progress = LiveProgress(self.options.console)
            self._unsubscribe.append(progress.attach(bus))
            self._stack.enter_context(progress)

    def _attach_otel(self, bus: EventBus, environ: Mapping[str, str]) -> None:
        if not environ.get("OTEL_TRACES_EXPORTER"):
            return
        try:
            from dyntaskmas.observe.otel import OtelSpans, provider_from_environment
        except ImportError:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER is set, but OpenTelemetry is not installed; install it "
                "with pip install 'dyntaskmas[otel]', or unset the variable"
            ) from None
        provider = provider_from_environment(environ)
        if provider is not None:
            self._unsubscribe.append(OtelSpans(provider).attach(bus))
            # Flushes the batch of spans when the run ends.
            self._stack.callback(provider.shutdown)

    def __enter__(self) -> RunObserver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if exc_type is None and self._write_on_exit:
            self.write_files()

    def view(self) -> RunView:
        return self._builder.view()

    def add_history(self, events: Iterable[Event]) -> None:
        """Fold events of the run's earlier sessions, read from its journal, into the view."""
        for event in events:
            self._builder.add(event)

    def accounting(self) -> Accounting:
        return account(self.view(), self.options.prices)

    def write_files(self) -> None:
        """Write the trace and report that were asked for; raise ConfigError if one fails."""
        write_observed_files(self.view(), self.options)


def write_observed_files(view: RunView, options: ObserveOptions) -> None:
    """Write the trace and report of ``view`` that ``options`` name; ConfigError if one fails."""
    from dyntaskmas.observe.chrome_trace import write_chrome_trace
    from dyntaskmas.observe.report import write_report

    try:
        if options.trace is not None:
            write_chrome_trace(view, options.trace)
        if options.report is not None:
            write_report(view, options.report, options.prices)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {str(exc.filename)!r}: {exc.strerror}; check the path"
        ) from None
