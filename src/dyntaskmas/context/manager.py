"""The context manager: what each task publishes, and what each task gets to see.

This is the façade the engine calls. Per run it keeps one scope tree:
``{run_id}`` contains shared state that tasks write, ``{run_id}/{task_id}``
contains each task's output under the key ``"output"``.

Policy:

- **Publish.** :meth:`ContextManager.publish` commits a task's output (tagged
  ST(output) by the analyser unless tags are given, and embedded for
  retrieval) into the task's own scope, which only that task writes. Shared
  writes, if any, go in a second update against the versions the task read;
  a conflict rejects that update only, is logged and counted, and is
  returned in :class:`PublishResult`, never raised, so the run carries on.
- **Distribute.** A task always receives its direct predecessors' outputs.
  Any other entry u reaches task a only when Jaccard(ST(u), ST(a)) >= θ,
  where ST(a) is the analyser's tags of a's description plus its own tags.
- **Retrieve.** Entries that reach a task are ranked by cosine similarity to
  its description and fitted into the prompt's token budget by
  :func:`dyntaskmas.context.retrieval.select_context`; the selection says
  what was left out.

State: the repository (entries), each task's read set (versions and values
of shared entries it was shown or read, the base of its later writes), the
sources delivered to each task, and :class:`ContextStats` counters.

Example::

    manager = ContextManager("run-1", theta=0.3)
    await manager.publish("t.1", "Hotels in Paris cost 150-400 euros a night.",
                          tags={"hotels", "paris", "prices"})
    selection = await manager.context_for(
        TaskSpec(id="t.3", description="Hotel budget for a week in Paris"),
        predecessors=[], budget_tokens=2000)
    # t.1 is no predecessor of t.3, but Jaccard({hotel, paris, price},
    # {hotel, budget, paris}) = 2/4 >= 0.3, so its output is in
    # selection.items. selection.render() is the text for the prompt:
    # "[t.1]\\nHotels in Paris cost 150-400 euros a night."
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dyntaskmas.context.analyser import SemanticAnalyser, normalise_tags
from dyntaskmas.context.commit import CommitResult, Update, Write
from dyntaskmas.context.embedders import Embedder, HashingEmbedder
from dyntaskmas.context.entries import Entry, JSONValue
from dyntaskmas.context.index import EntryIndex
from dyntaskmas.context.relevance import DEFAULT_THETA, check_theta
from dyntaskmas.context.repository import ContextRepository
from dyntaskmas.context.retrieval import (
    DEFAULT_MIN_PARTIAL_TOKENS,
    DEFAULT_TOP_K,
    Candidate,
    ContextSelection,
    HeuristicTokenCounter,
    TokenCounter,
    context_budget,
    preselect_count,
    select_context,
)
from dyntaskmas.context.scopes import child_scope, validate_scope
from dyntaskmas.errors import CommitFailedError, ContextError, VersionConflictError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage

logger = logging.getLogger(__name__)

OUTPUT_KEY = "output"


@dataclass
class ContextStats:
    """Counters of what the context manager moved; the engine reports them."""

    #: Outputs and shared updates committed.
    updates_published: int = 0
    #: (update, task) pairs placed in a prompt, whole or truncated.
    deliveries: int = 0
    #: Of those, predecessors' outputs.
    required_deliveries: int = 0
    #: Non-predecessor entries that θ let through (delivered or later left out).
    relevant_offers: int = 0
    #: Non-predecessor entries that θ kept away.
    filtered_out: int = 0
    #: Tokens of context placed in prompts, notices included.
    tokens_moved: int = 0
    truncated: int = 0
    #: Entries that passed θ (or were required) but found no room.
    left_out: int = 0
    #: Shared updates rejected by a write conflict or an unmergeable policy.
    conflicts_rejected: int = 0
    #: Updates lost because a store failed (every store was rolled back) or
    #: because other processes kept changing the keys through every retry.
    commits_failed: int = 0
    #: Facts a task needed, and how many of them it was not given, from record_needed.
    needed_facts: int = 0
    missing_facts: int = 0

    @property
    def missing_fact_rate(self) -> float:
        """Needed facts not delivered, over all needed facts; 0.0 when none were recorded."""
        return self.missing_facts / self.needed_facts if self.needed_facts else 0.0


@dataclass(frozen=True)
class PublishResult:
    """Outcome of :meth:`ContextManager.publish`: the committed entries and the errors."""

    task_id: str
    tags: frozenset[str]
    #: The committed output entry; None when its commit failed (see ``errors``).
    output: Entry | None
    #: The committed shared update; None when there was none or it was rejected.
    shared: CommitResult | None = None
    #: Errors caught while committing: conflicts, merge errors, store failures.
    errors: tuple[ContextError, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class _TaskView:
    """The manager's record of one consuming task."""

    tags: frozenset[str] = frozenset()
    query: tuple[float, ...] | None = None
    # The description and given tags that ``tags`` was computed from.
    tagged: tuple[str, frozenset[str]] | None = None
    # (scope, key) -> (version, value) of shared entries shown to or read by the task.
    reads: dict[tuple[str, str], tuple[int, JSONValue]] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)


class ContextManager:
    """Publishes outputs, distributes them by relevance, selects context under a budget.

    See the module docstring for the policy. ``repository`` defaults to an
    in-memory one; pass ``ContextRepository.sqlite(data_dir)`` for a durable
    run or one with a Redis route for several processes.
    """

    def __init__(
        self,
        run_id: str,
        repository: ContextRepository | None = None,
        *,
        theta: float = DEFAULT_THETA,
        analyser: SemanticAnalyser | None = None,
        embedder: Embedder | None = None,
        counter: TokenCounter | None = None,
        top_k: int = DEFAULT_TOP_K,
        min_partial_tokens: int = DEFAULT_MIN_PARTIAL_TOKENS,
    ) -> None:
        self.run_scope = validate_scope(run_id)
        if "/" in run_id:
            raise ValueError(f"run id {run_id!r} must not contain '/'")
        self.repository = repository if repository is not None else ContextRepository.in_memory()
        self.theta = check_theta(theta)
        self.analyser = analyser if analyser is not None else SemanticAnalyser()
        self.embedder: Embedder = embedder if embedder is not None else HashingEmbedder()
        self.counter: TokenCounter = counter if counter is not None else HeuristicTokenCounter()
        self.top_k = top_k
        self.min_partial_tokens = min_partial_tokens
        self.stats = ContextStats()
        self._views: dict[str, _TaskView] = {}
        # Entries of this run, caught up from the repository's change feed
        # before each request; the lock lets one request at a time catch up.
        self._index = EntryIndex()
        self._index_lock = asyncio.Lock()

    def task_scope(self, task_id: str) -> str:
        """Return the scope that contains ``task_id``'s output."""
        return child_scope(self.run_scope, task_id)

    # --- publishing -------------------------------------------------------------

    async def publish(
        self,
        task_id: str,
        output: str,
        *,
        description: str = "",
        tags: Iterable[str] | None = None,
        writes: Mapping[str, JSONValue] | None = None,
        priority: int = 0,
    ) -> PublishResult:
        """Commit ``task_id``'s output and its shared ``writes``; never raises ContextError.

        ``tags`` replace the analyser's tags of ``output``. ``writes`` maps
        keys of the run scope to the values the task wants there; each is
        merged against the version the task read (see :meth:`read`).
        ``priority`` is the task's rank for keys with the ``priority`` policy.
        Errors of the embedder, such as an unreachable embeddings endpoint,
        are raised.
        """
        update_tags = normalise_tags(tags) if tags is not None else self.analyser.tags(output)
        [embedding] = await self.embedder.embed([output])
        errors: list[ContextError] = []

        output_update = Update(
            writer=task_id,
            writes=(
                Write(
                    scope=self.task_scope(task_id),
                    key=OUTPUT_KEY,
                    value={"text": output, "description": description},
                    # Only this task writes its scope, so a rerun replaces its output.
                    base_version=None,
                    tags=update_tags,
                    embedding=embedding,
                ),
            ),
            priority=priority,
        )
        output_entry: Entry | None = None
        try:
            committed = await self.repository.commit(output_update)
        except ContextError as exc:
            self._count_failure(task_id, exc)
            errors.append(exc)
        else:
            output_entry = committed.entries[0] if committed.entries else None
            self.stats.updates_published += 1

        shared: CommitResult | None = None
        if writes:
            shared, error = await self._publish_shared(task_id, writes, update_tags, priority)
            if error is not None:
                errors.append(error)

        return PublishResult(task_id, update_tags, output_entry, shared, tuple(errors))

    async def _publish_shared(
        self,
        task_id: str,
        writes: Mapping[str, JSONValue],
        tags: frozenset[str],
        priority: int,
    ) -> tuple[CommitResult | None, ContextError | None]:
        view = self._view(task_id)
        embeddings = await self.embedder.embed([_shared_text(value) for value in writes.values()])
        staged = []
        for (key, value), embedding in zip(writes.items(), embeddings, strict=True):
            version, base_value = view.reads.get((self.run_scope, key), (0, None))
            staged.append(
                Write(
                    scope=self.run_scope,
                    key=key,
                    value=value,
                    base_version=version,
                    base_value=base_value,
                    tags=tags,
                    embedding=embedding,
                )
            )
        try:
            result = await self.repository.commit(
                Update(writer=task_id, writes=tuple(staged), priority=priority)
            )
        except ContextError as exc:
            self._count_failure(task_id, exc)
            return None, exc

        self.stats.updates_published += 1
        # The task has now seen what it wrote; a later write of its own builds on it.
        for entry in result.entries:
            view.reads[entry.address] = (entry.version, entry.value)
        return result, None

    def _count_failure(self, task_id: str, exc: ContextError) -> None:
        if isinstance(exc, CommitFailedError | VersionConflictError):
            self.stats.commits_failed += 1
        else:
            self.stats.conflicts_rejected += 1
        logger.info("update by task %s rejected: %s", task_id, exc)

    # --- reading ------------------------------------------------------------------

    async def read(self, task_id: str, key: str) -> JSONValue:
        """Return the run-scope ``key`` for ``task_id`` and record the version it read.

        Returns None when the key is absent. A later :meth:`publish` that
        writes ``key`` is merged against exactly this version.
        """
        entry = await self.repository.get(self.run_scope, key)
        view = self._view(task_id)
        if entry is None:
            view.reads[(self.run_scope, key)] = (0, None)
            return None
        view.reads[entry.address] = (entry.version, entry.value)
        return entry.value

    def budget_for(
        self, window_tokens: int, messages: Sequence[ChatMessage], max_tokens: int
    ) -> int:
        """Return the context budget of a prompt made of ``messages`` plus context.

        ``messages`` is the prompt without its context; ``max_tokens`` is the
        completion's limit. Raises ContextBudgetError when nothing is left.
        """
        prompt_tokens = sum(self.counter.count(message.content) for message in messages)
        return context_budget(window_tokens, prompt_tokens, max_tokens)

    async def context_for(
        self, task: TaskSpec, predecessors: Sequence[str], budget_tokens: int
    ) -> ContextSelection:
        """Select the context for ``task``'s prompt within ``budget_tokens``.

        ``predecessors`` are the ids of the task's direct predecessors, whose
        outputs are required. Every other entry of the run is offered by θ.
        """
        view = self._view(task.id)
        given_tags = frozenset(task.tags)
        if view.tagged != (task.description, given_tags):
            view.tags = normalise_tags(given_tags) | self.analyser.tags(task.description)
            view.tagged = (task.description, given_tags)
        if view.query is None:
            [view.query] = await self.embedder.embed([task.description])
        index = await self._current_index()

        own = (self.task_scope(task.id), OUTPUT_KEY)
        required = sorted(
            address
            for source in set(predecessors)
            for address in index.written_by(source)
            if address[1] == OUTPUT_KEY and address != own
        )
        skipped = set(required)
        skipped.add(own)
        optional = [a for a in index.relevant(view.tags, self.theta) if a not in skipped]
        weighed = len(index) - (1 if index.get(own) is not None else 0) - len(required)
        self.stats.relevant_offers += len(optional)
        self.stats.filtered_out += weighed - len(optional)

        # Only the best optional entries can be selected or named in the
        # notice; the rest are counted, without building candidates for them.
        optional_scores = index.scores(view.query, optional)
        ranked = sorted(range(len(optional)), key=lambda i: (-optional_scores[i], i))
        kept = sorted(ranked[: preselect_count(self.top_k)])
        required_scores = index.scores(view.query, required)

        candidates: list[Candidate] = []
        shared: dict[str, Entry] = {}
        offered = [(a, True, s) for a, s in zip(required, required_scores, strict=True)]
        offered.extend((optional[i], False, optional_scores[i]) for i in kept)
        for address, is_required, score in offered:
            entry = index.get(address)
            assert entry is not None
            if entry.key != OUTPUT_KEY:
                shared[self._source_of(entry)] = entry
            candidates.append(self._candidate(entry, is_required, score))

        selection = select_context(
            candidates,
            budget_tokens,
            counter=self.counter,
            k=self.top_k,
            min_partial_tokens=self.min_partial_tokens,
            more_omitted=len(optional) - len(kept),
        )

        for item in selection.items:
            source = _candidate_source(item.candidate)
            view.delivered.add(source)
            if source in shared:
                entry = shared[source]
                view.reads[entry.address] = (entry.version, entry.value)
        self.stats.deliveries += len(selection.items)
        self.stats.required_deliveries += sum(1 for i in selection.items if i.candidate.required)
        self.stats.truncated += len(selection.truncated)
        self.stats.left_out += len(selection.omitted) + selection.more_omitted
        self.stats.tokens_moved += selection.used_tokens
        return selection

    def delivered_to(self, task_id: str) -> frozenset[str]:
        """Return the sources placed in ``task_id``'s prompts so far.

        A source is a task id for an output, or ``key:NAME`` for a shared key.
        """
        view = self._views.get(task_id)
        return frozenset(view.delivered) if view is not None else frozenset()

    def record_needed(self, task_id: str, needed: Iterable[str]) -> int:
        """Count the sources ``task_id`` needed and return how many it was not given.

        Benchmarks call this with the ground truth of which outputs a task
        needs; :attr:`ContextStats.missing_fact_rate` sums it up. A truncated
        source counts as given, though the cut may have removed the fact.
        """
        wanted = set(needed)
        missing = len(wanted - self.delivered_to(task_id))
        self.stats.needed_facts += len(wanted)
        self.stats.missing_facts += missing
        return missing

    async def close(self) -> None:
        """Close the repository's stores."""
        await self.repository.close()

    # --- helpers ------------------------------------------------------------------

    def _view(self, task_id: str) -> _TaskView:
        return self._views.setdefault(task_id, _TaskView())

    async def _current_index(self) -> EntryIndex:
        """Return the index with every change committed before this call applied."""
        async with self._index_lock:
            changes = await self.repository.changes_under(self.run_scope, self._index.cursor)
            self._index.apply(changes.entries, changes.removed)
            self._index.cursor = changes.cursor
        return self._index

    def _source_of(self, entry: Entry) -> str:
        if entry.key == OUTPUT_KEY:
            return entry.writer
        return f"key:{entry.key}"

    def _candidate(self, entry: Entry, required: bool, score: float) -> Candidate:
        if entry.key == OUTPUT_KEY and isinstance(entry.value, Mapping):
            text = str(entry.value.get("text", ""))
            description = str(entry.value.get("description", ""))
            label = f"[{entry.writer}] {description}".rstrip()
        else:
            text = _shared_text(entry.value)
            label = f"[shared {entry.key!r}, written by {entry.writer}]"
        return Candidate(
            source=entry.writer,
            key=entry.key,
            label=label,
            text=text,
            required=required,
            score=score,
        )


def _shared_text(value: JSONValue) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _candidate_source(candidate: Candidate) -> str:
    return candidate.source if candidate.key == OUTPUT_KEY else f"key:{candidate.key}"
