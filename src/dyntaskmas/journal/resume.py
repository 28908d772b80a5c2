"""Load a journalled run for resuming, rejecting runs that cannot be resumed.

Owns the step between the store and the engine: find the run, refuse one
that finished, decode its events and fold them (:mod:`dyntaskmas.journal.replay`).
"""

from __future__ import annotations

import os

from dyntaskmas.errors import JournalError, RunFinishedError
from dyntaskmas.journal.codec import decode_event
from dyntaskmas.journal.replay import ResumeState, fold_events
from dyntaskmas.journal.store import JournalStore, RunRow, process_alive


def load_resume_state(store: JournalStore, run_id: str) -> tuple[RunRow, ResumeState]:
    """Return a run's row and the state to resume it from.

    A failed run (a task failed and the answer was never written) can be
    resumed: its failed tasks run again. So can a run that a budget limit
    stopped: the tasks that did not run start, under limits counted from zero.
    Raises UnknownRunError for an id not in the journal, RunFinishedError
    for a run that succeeded, and JournalError for a run that another live
    process is still running.
    """
    row = store.run(run_id)
    if row.status == "succeeded":
        raise RunFinishedError(run_id, row.status)
    # Two processes running one run would send its tasks twice. This
    # process may resume its own run, as after a crash caught in-process.
    if row.status == "running" and row.pid != os.getpid() and process_alive(row.pid):
        raise JournalError(
            f"run {run_id!r} is still running in process {row.pid}; wait for it to "
            f"finish, or stop that process and resume again"
        )
    events = [
        decode_event(item.kind, run_id, item.at_s, item.payload) for item in store.events(run_id)
    ]
    return row, fold_events(run_id, events)
