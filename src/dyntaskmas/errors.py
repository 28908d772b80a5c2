"""Exceptions raised by dyntaskmas.

Every exception derives from :class:`DynTaskMASError`, so a caller can catch
the whole family in one clause. Messages say what went wrong, on which value,
and what to do next; the offending ids and limits are kept as attributes.

    DynTaskMASError
    ├── ConfigError                  bad option, config value or environment
    │   ├── ModelFileNotFoundError   embedded model weights are not installed
    │   └── PriceTableError          a table of per-model token prices is invalid
    ├── GraphError                   a task graph or delta is invalid
    │   ├── CycleError
    │   ├── UnknownDependencyError
    │   ├── DuplicateTaskError
    │   ├── EmptyDescriptionError
    │   ├── UnknownTaskError
    │   ├── ImmutableTaskError       a delta touches a running or finished task
    │   └── TooManyTasksError        a graph larger than the run's task limit
    ├── PlanError                    planner output could not be used
    │   └── InvalidPlanError         still invalid after the repair call
    ├── LLMError                     a call to a model endpoint failed
    │   ├── EndpointUnavailableError connection refused, DNS, server never ready
    │   ├── TransientLLMError        429, 5xx, timeout, bad JSON: retried, then raised
    │   │   └── LLMTimeoutError      the request timed out
    │   ├── LLMRequestError          4xx other than 429: not retried
    │   └── LLMResponseError         the endpoint responded with something unusable
    ├── TaskFailedError              a task's execution raised
    ├── StuckRunError                pending tasks can never become ready
    ├── ContextError                 the context repository rejected a read or write
    │   ├── WriteConflictError       parallel writes to one key, no merge policy
    │   ├── MergeError               values that the key's merge policy cannot merge
    │   ├── VersionConflictError     a store's version moved after it was read
    │   ├── CommitFailedError        a store failed in commit; all stores rolled back
    │   └── ContextBudgetError       the prompt fills the window before any context
    ├── JournalError                 the run journal cannot be read, written or resumed
    │   ├── JournalVersionError      the journal was written by a newer format version
    │   ├── UnknownRunError          no run with this id in the journal
    │   └── RunFinishedError         the run already succeeded; nothing to resume
    └── RunInterruptedError          SIGINT or SIGTERM stopped a command
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dyntaskmas.llm.types import Completion


class DynTaskMASError(Exception):
    """Base class of every error raised by dyntaskmas."""


# --- configuration -----------------------------------------------------------


class ConfigError(DynTaskMASError):
    """An option, config value or environment variable is invalid."""


class ModelFileNotFoundError(ConfigError):
    """The embedded model's weights file cannot be found."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class PriceTableError(ConfigError):
    """A table of per-model token prices is invalid; ``model`` names the entry, if any."""

    def __init__(self, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


# --- task graph --------------------------------------------------------------


class GraphError(DynTaskMASError):
    """A task graph or a graph delta is invalid; nothing was changed."""


class CycleError(GraphError):
    """The dependencies form a cycle."""

    def __init__(self, cycle: Iterable[str]) -> None:
        self.cycle = tuple(cycle)
        path = " -> ".join([*self.cycle, self.cycle[0]]) if self.cycle else "?"
        super().__init__(f"dependencies form a cycle: {path}; remove one of these dependencies")


class UnknownDependencyError(GraphError):
    """A task depends on a task id that is not in the graph."""

    def __init__(self, task_id: str, dependency: str) -> None:
        self.task_id = task_id
        self.dependency = dependency
        super().__init__(
            f"task {task_id!r} depends on {dependency!r}, which is not in the graph; "
            f"add {dependency!r} or remove the dependency"
        )


class DuplicateTaskError(GraphError):
    """Two tasks share an id."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task id {task_id!r} is used more than once; give each task a unique id")


class EmptyDescriptionError(GraphError):
    """A task has an empty or blank description."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id!r} has an empty description; describe the work it must do")


class UnknownTaskError(GraphError):
    """A delta or query names a task id that is not in the graph."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id!r} is not in the graph")


class ImmutableTaskError(GraphError):
    """A delta would change a task that is running or finished."""

    def __init__(self, task_id: str, state: str) -> None:
        self.task_id = task_id
        self.state = state
        super().__init__(
            f"task {task_id!r} is {state} and can no longer be changed; "
            f"only pending or ready tasks can be cancelled or rewired"
        )


class TooManyTasksError(GraphError):
    """A graph has more tasks than the run's limit allows."""

    def __init__(self, count: int, limit: int) -> None:
        self.count = count
        self.limit = limit
        super().__init__(
            f"the graph has {count} tasks, more than the limit of {limit}; "
            f"split the work into several runs, or raise max_tasks"
        )


# --- planning ----------------------------------------------------------------


class PlanError(DynTaskMASError):
    """Planner output is unusable, even after the repair attempt."""

    def __init__(self, message: str, problems: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class InvalidPlanError(PlanError):
    """The model's decomposition was still invalid after the one repair call.

    ``problems`` are those of the last attempt. ``completions`` contains every
    model call made for the plan, so their tokens can still be accounted.
    """

    def __init__(
        self,
        task_id: str,
        problems: Iterable[str],
        completions: Iterable[Completion] = (),
    ) -> None:
        listed = tuple(problems)
        first = listed[0] if listed else "no problem was recorded"
        more = f" (and {len(listed) - 1} more problems)" if len(listed) > 1 else ""
        super().__init__(
            f"the decomposition of task {task_id!r} is invalid after one repair call: "
            f"{first}{more}; run the task without decomposing it, or use a larger model",
            listed,
        )
        self.task_id = task_id
        self.completions = tuple(completions)


# --- LLM endpoints -----------------------------------------------------------


class LLMError(DynTaskMASError):
    """A call to a model endpoint failed."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class EndpointUnavailableError(LLMError):
    """The endpoint cannot be reached or never became ready."""


class TransientLLMError(LLMError):
    """A retryable failure (429, 5xx, timeout, invalid JSON) that outlasted every retry."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after_s = retry_after_s


class LLMTimeoutError(TransientLLMError):
    """A request to a model endpoint timed out; retried like other transient failures."""


class LLMRequestError(LLMError):
    """The endpoint rejected the request (a 4xx other than 429); not retried."""


class LLMResponseError(LLMError):
    """The endpoint responded, but its response is unusable (no choices, bad JSON)."""


# --- execution ---------------------------------------------------------------


class TaskFailedError(DynTaskMASError):
    """A task failed; its descendants are not run."""

    def __init__(self, task_id: str, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id!r} failed: {reason}")


class StuckRunError(DynTaskMASError):
    """Pending tasks remain, none can become ready, and nothing is running."""

    def __init__(self, task_ids: Iterable[str]) -> None:
        self.task_ids = tuple(task_ids)
        shown = ", ".join(repr(t) for t in self.task_ids[:10])
        more = f" and {len(self.task_ids) - 10} more" if len(self.task_ids) > 10 else ""
        super().__init__(
            f"run is stuck: tasks {shown}{more} wait on dependencies that will never "
            f"finish; this is a bug in the graph update that created them"
        )


# --- context -----------------------------------------------------------------


class ContextError(DynTaskMASError):
    """The context repository rejected a read or a write; no store was changed."""


class WriteConflictError(ContextError):
    """Two parallel updates changed one key (or one field of it) and no merge policy applies.

    ``writer`` is the task whose update was rejected; ``other_writer`` wrote
    the version that was committed first. ``field`` names the field of a
    mapping value both changed, or is None for the whole value.
    """

    def __init__(
        self,
        scope: str,
        key: str,
        *,
        writer: str,
        other_writer: str,
        field: str | None = None,
    ) -> None:
        self.scope = scope
        self.key = key
        self.writer = writer
        self.other_writer = other_writer
        self.field = field
        target = f"field {field!r} of key {key!r}" if field is not None else f"key {key!r}"
        super().__init__(
            f"task {writer!r} and task {other_writer!r} both changed {target} in scope "
            f"{scope!r}; the update of {writer!r} was rejected because the key has no merge "
            f"policy; declare one (append, union, keep_first, priority) or write distinct keys"
        )


class MergeError(ContextError):
    """The values written under a key do not fit the key's merge policy."""

    def __init__(self, scope: str, key: str, policy: str, reason: str) -> None:
        self.scope = scope
        self.key = key
        self.policy = policy
        super().__init__(
            f"cannot merge key {key!r} in scope {scope!r} with policy {policy!r}: {reason}"
        )


class VersionConflictError(ContextError):
    """A prepared write found a newer version, or another transaction has locked the key.

    The commit coordinator retries these; one reaches the caller only after
    the retries are used up. ``locked_by`` is the id of the transaction that
    has locked the key, or None when the version alone moved.
    """

    def __init__(
        self,
        store: str,
        scope: str,
        key: str,
        *,
        expected_version: int,
        actual_version: int,
        locked_by: str | None = None,
    ) -> None:
        self.store = store
        self.scope = scope
        self.key = key
        self.expected_version = expected_version
        self.actual_version = actual_version
        self.locked_by = locked_by
        if locked_by is not None:
            reason = f"transaction {locked_by!r} has locked the key"
        else:
            reason = f"expected version {expected_version}, found {actual_version}"
        super().__init__(
            f"store {store!r}: key {key!r} in scope {scope!r} changed after it was read "
            f"({reason}); read it again and retry"
        )


class CommitFailedError(ContextError):
    """A store raised while committing; every store of the update was rolled back."""

    def __init__(self, transaction: str, store: str, reason: str) -> None:
        self.transaction = transaction
        self.store = store
        super().__init__(
            f"transaction {transaction!r} failed to commit in store {store!r} ({reason}); "
            f"every store of the update was rolled back, so nothing was written"
        )


class ContextBudgetError(ContextError):
    """The prompt without any context already leaves no room in the model's window."""

    def __init__(self, window_tokens: int, prompt_tokens: int, completion_tokens: int) -> None:
        self.window_tokens = window_tokens
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        super().__init__(
            f"the prompt needs {prompt_tokens} tokens and the completion {completion_tokens}, "
            f"which fills the model's {window_tokens}-token window before any context; "
            f"shorten the task description, lower max_tokens or use a model with a larger window"
        )


# --- run journal -------------------------------------------------------------


class JournalError(DynTaskMASError):
    """The run journal cannot be read, written or resumed from."""


class JournalVersionError(JournalError):
    """The journal file was written by a newer dyntaskmas than this one reads."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"journal {path!r} has format version {found}, newer than version {supported} "
            f"that this dyntaskmas reads; upgrade dyntaskmas or use another --journal-dir"
        )


class UnknownRunError(JournalError):
    """No run with this id is in the journal."""

    def __init__(self, run_id: str, path: str) -> None:
        self.run_id = run_id
        self.path = path
        super().__init__(
            f"run {run_id!r} is not in the journal {path!r}; "
            f"list the runs with 'dyntaskmas runs' or check --journal-dir"
        )


class RunFinishedError(JournalError):
    """The run already succeeded, so there is nothing to resume."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(
            f"run {run_id!r} already {status}, so there is nothing to resume; "
            f"start a new run with 'dyntaskmas run'"
        )


# --- interruption ----------------------------------------------------------------


class RunInterruptedError(DynTaskMASError):
    """A stop signal ended a command; ``exit_status`` is 128 plus the signal number."""

    def __init__(self, signal_name: str, exit_status: int, hint: str) -> None:
        self.signal_name = signal_name
        self.exit_status = exit_status
        super().__init__(f"interrupted by {signal_name}; {hint}")
