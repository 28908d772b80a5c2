"""The run journal: every state change of a run in SQLite, and resuming from it.

- :mod:`~dyntaskmas.journal.store`: the SQLite file (schema, format version, durability);
- :mod:`~dyntaskmas.journal.codec`: events to JSON payloads and back;
- :mod:`~dyntaskmas.journal.recorder`: the event-bus subscriber that writes them;
- :mod:`~dyntaskmas.journal.replay`: folds a run's events into the state to resume;
- :mod:`~dyntaskmas.journal.resume`: loads that state, refusing finished runs.
"""

from dyntaskmas.journal.recorder import JournalRecorder, new_run_id
from dyntaskmas.journal.replay import FinishedTask, ResumeState, fold_events
from dyntaskmas.journal.resume import load_resume_state
from dyntaskmas.journal.store import (
    FORMAT_VERSION,
    JOURNAL_DIR_ENV_VAR,
    JournalStore,
    RunRow,
    default_journal_dir,
)

__all__ = [
    "FORMAT_VERSION",
    "JOURNAL_DIR_ENV_VAR",
    "FinishedTask",
    "JournalRecorder",
    "JournalStore",
    "ResumeState",
    "RunRow",
    "default_journal_dir",
    "fold_events",
    "load_resume_state",
    "new_run_id",
]
