"""The journal's event-bus subscriber: writes each event of a run before the run goes on.

:class:`JournalRecorder` subscribes to an engine's
:class:`~dyntaskmas.observe.events.EventBus`. The bus calls subscribers
synchronously, before the engine acts on the change. Each event is
committed in its own transaction before :meth:`JournalRecorder.record`
returns, so a change the engine goes on with is already in the journal. A
write that fails raises and stops the run instead of leaving a gap.

    store = JournalStore(default_journal_dir())
    recorder = JournalRecorder(store, options={"agents": 4})
    recorder.attach(engine.events)
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from dyntaskmas.journal.codec import encode_event
from dyntaskmas.journal.store import JournalStore, RunStatus
from dyntaskmas.observe.events import Event, EventBus, RunFinished, RunStarted

logger = logging.getLogger(__name__)


class JournalRecorder:
    """Appends every event of every run on one engine to a journal store.

    ``options`` is stored with each new run so that a resume can rebuild the
    same setup. It must contain no secret: the runner passes the name of the
    API key's environment variable, never the key.
    """

    def __init__(self, store: JournalStore, *, options: Mapping[str, Any] | None = None) -> None:
        self.store = store
        self.options = dict(options or {})

    def attach(self, bus: EventBus) -> Callable[[], None]:
        """Subscribe to ``bus``; return the function that unsubscribes."""
        return bus.subscribe(self.record)

    def record(self, event: Event) -> None:
        """Commit ``event`` to the journal; raise if it cannot be written."""
        if isinstance(event, RunStarted):
            self.store.begin_run(event.run_id, event.request, self.options)
        self.store.append(event.run_id, type(event).__name__, event.at_s, encode_event(event))
        if isinstance(event, RunFinished):
            status: RunStatus = "failed"
            if event.status == "succeeded":
                status = "succeeded"
            elif event.status == "stopped":
                status = "stopped"
            self.store.finish_run(event.run_id, status)
            logger.debug("journal: run %s recorded as %s", event.run_id, status)


def new_run_id() -> str:
    """Return a new run id: UTC time to the second, then 6 random hex digits.

    Ids sort by start time, and the random part (24 bits) keeps runs
    started in the same second by different processes apart.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{secrets.token_hex(3)}"
