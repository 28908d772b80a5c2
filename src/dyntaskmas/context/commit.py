"""The update handler: two-phase commit of one update across every store it touches.

An :class:`Update` is what one task writes at once: values for keys in one
or more scopes, each with the version (and value) the task read. The
:class:`CommitCoordinator` turns it into one transaction:

1. read the current version of every key. Where another update committed
   since the task read it, merge with :func:`dyntaskmas.context.merge.resolve`,
   which may reject the update with :class:`WriteConflictError`;
2. prepare in every store, against the versions read in step 1; a store whose
   version moved meanwhile (another process) raises VersionConflictError, every
   store is aborted and the attempt starts again at step 1;
3. commit in every store; if one raises, every store is aborted, which undoes
   the commits already made, and :class:`CommitFailedError` is raised;
4. release every store, which makes the commit final.

Commits from one coordinator that write a common key run one at a time
(a lock per key, taken in sorted order, so two updates never wait on each
other in a cycle), so updates of one process never conflict at prepare;
only other processes sharing a store can. Updates with no key in common,
such as the outputs of different tasks, commit concurrently.
:class:`StoreRouter` decides which store holds which scope.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from dyntaskmas.clock import Clock, MonotonicClock
from dyntaskmas.context.entries import Entry, JSONValue, StagedWrite, normalise_json
from dyntaskmas.context.merge import MERGE_POLICIES, MergeContext, MergePolicy, resolve
from dyntaskmas.context.scopes import is_within, validate_scope
from dyntaskmas.context.stores import Address, ContextStore
from dyntaskmas.errors import CommitFailedError, VersionConflictError

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
#: First wait after a prepare conflict with another process; doubles per attempt.
DEFAULT_RETRY_DELAY_S = 0.005

#: Writer name in conflict errors when the committed version's writer is unknown
#: (the key was rolled back to absent after the task read it).
UNKNOWN_WRITER = "<unknown>"


@dataclass(frozen=True)
class Write:
    """One key an update writes, with what its writer read.

    ``base_version`` is the version the writer read (0: it saw no value), and
    ``base_value`` the value it saw then. ``base_version=None`` is a blind
    write that replaces any version without merging; a task uses it for keys
    only it writes, such as its own output.
    """

    scope: str
    key: str
    value: JSONValue
    base_version: int | None = 0
    base_value: JSONValue = None
    tags: frozenset[str] = frozenset()
    embedding: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        validate_scope(self.scope)
        if not self.key:
            raise ValueError(f"a write in scope {self.scope!r} has an empty key")
        if self.base_version is not None and self.base_version < 0:
            raise ValueError(f"base_version must be >= 0 or None, got {self.base_version}")
        # Stores keep JSON, so compare and merge the value as it will read back.
        object.__setattr__(self, "value", normalise_json(self.value))
        object.__setattr__(self, "base_value", normalise_json(self.base_value))


@dataclass(frozen=True)
class Update:
    """Everything one task writes at once; committed entirely or not at all."""

    writer: str
    writes: tuple[Write, ...]
    #: Read by the ``priority`` merge policy: the higher priority wins.
    priority: int = 0

    def __post_init__(self) -> None:
        if not self.writer:
            raise ValueError("an update needs the id of the task that writes it")
        addresses = [(w.scope, w.key) for w in self.writes]
        if len(set(addresses)) != len(addresses):
            raise ValueError(f"update by {self.writer!r} writes one key twice: {addresses}")


@dataclass(frozen=True)
class CommitResult:
    """The changes a committed update made."""

    transaction: str
    writer: str
    #: The entries written, at their new versions.
    entries: tuple[Entry, ...]
    #: (scope, key) of writes that merged into no change and were not written.
    unchanged: tuple[tuple[str, str], ...] = ()
    #: ``scope|key|path`` of incoming changes a keep_first or priority policy dropped.
    dropped: tuple[str, ...] = ()
    attempts: int = 1


class StoreRouter:
    """Maps each scope to a store: the longest matching route, else the default."""

    def __init__(
        self, default: ContextStore, routes: Mapping[str, ContextStore] | None = None
    ) -> None:
        self.default = default
        # Longest scope first, so the most specific route wins.
        self._routes = sorted(
            ((validate_scope(scope), store) for scope, store in (routes or {}).items()),
            key=lambda item: -len(item[0]),
        )

    def store_for(self, scope: str) -> ContextStore:
        for prefix, store in self._routes:
            if is_within(scope, prefix):
                return store
        return self.default

    def stores(self) -> list[ContextStore]:
        """Return every distinct store, the default first."""
        found: list[ContextStore] = [self.default]
        for _, store in self._routes:
            if all(store is not known for known in found):
                found.append(store)
        return found


class _KeyLocks:
    """One asyncio lock per (scope, key), created on demand and dropped when unused."""

    def __init__(self) -> None:
        self._locks: dict[Address, asyncio.Lock] = {}
        self._holders: dict[Address, int] = {}

    @asynccontextmanager
    async def hold(self, addresses: Iterable[Address]) -> AsyncIterator[None]:
        """Hold the locks of ``addresses``, taken in sorted order."""
        ordered = sorted(set(addresses))
        for address in ordered:
            self._holders[address] = self._holders.get(address, 0) + 1
            self._locks.setdefault(address, asyncio.Lock())
        acquired: list[Address] = []
        try:
            for address in ordered:
                await self._locks[address].acquire()
                acquired.append(address)
            yield
        finally:
            for address in reversed(acquired):
                self._locks[address].release()
            for address in ordered:
                self._holders[address] -= 1
                if self._holders[address] == 0:
                    del self._holders[address]
                    del self._locks[address]

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class _Participant:
    store: ContextStore
    writes: list[StagedWrite] = field(default_factory=list)


class CommitCoordinator:
    """Commits updates across stores with two-phase commit and merge policies.

    ``policies`` maps a key name (in any scope) to its merge policy; keys not
    listed have none. ``clock`` paces the retries after a prepare conflict
    with another process.
    """

    def __init__(
        self,
        router: StoreRouter,
        *,
        policies: Mapping[str, MergePolicy] | None = None,
        clock: Clock | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_delay_s: float = DEFAULT_RETRY_DELAY_S,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.router = router
        self.policies: dict[str, MergePolicy] = dict(policies or {})
        for key, policy in self.policies.items():
            if policy not in MERGE_POLICIES:
                raise ValueError(
                    f"merge policy {policy!r} for key {key!r} is unknown; "
                    f"use one of {', '.join(MERGE_POLICIES)}"
                )
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self._key_locks = _KeyLocks()

    async def commit(self, update: Update) -> CommitResult:
        """Commit ``update`` in every store it touches, or in none.

        Raises :class:`WriteConflictError` or :class:`MergeError` when a
        parallel write cannot be merged, :class:`CommitFailedError` when a
        store failed and every store was rolled back, and
        :class:`VersionConflictError` when other processes kept changing the
        keys through every attempt.
        """
        async with self._key_locks.hold((write.scope, write.key) for write in update.writes):
            attempt = 1
            while True:
                try:
                    result = await self._attempt(update, attempt)
                except VersionConflictError as exc:
                    if attempt >= self.max_attempts:
                        raise
                    delay_s = self.retry_delay_s * 2 ** (attempt - 1)
                    logger.debug(
                        "update by %s: attempt %d met a concurrent write (%s); retrying in %.3f s",
                        update.writer,
                        attempt,
                        exc,
                        delay_s,
                    )
                    await self.clock.sleep(delay_s)
                    attempt += 1
                else:
                    return result

    async def _attempt(self, update: Update, attempt: int) -> CommitResult:
        txid = f"{update.writer}:{uuid.uuid4().hex}"
        participants: dict[int, _Participant] = {}
        entries: list[Entry] = []
        unchanged: list[tuple[str, str]] = []
        dropped: list[str] = []

        # Read the current versions and merge where another update came first.
        for write in update.writes:
            store = self.router.store_for(write.scope)
            current = await store.get(write.scope, write.key)
            entry = self._resolve(update, write, current, dropped)
            if entry is None:
                unchanged.append((write.scope, write.key))
                continue
            participant = participants.setdefault(id(store), _Participant(store))
            participant.writes.append(StagedWrite(entry.version - 1, entry))
            entries.append(entry)

        if not participants:
            return CommitResult(txid, update.writer, (), tuple(unchanged), tuple(dropped), attempt)

        # Phase 1: prepare everywhere, or abort everywhere.
        involved = list(participants.values())
        try:
            for participant in involved:
                await participant.store.prepare(txid, participant.writes)
        except BaseException:
            await self._abort_all(txid, involved)
            raise

        # Phase 2: commit everywhere; one failure undoes the commits already made.
        # NOTE: between the first and the last store's commit, a reader of the
        # first store can see the new value, even if a later store then fails
        # and the value is rolled back.
        try:
            for participant in involved:
                try:
                    await participant.store.commit(txid)
                except Exception as exc:
                    logger.info(
                        "update by %s: store %s failed in commit of %s (%r); rolling back",
                        update.writer,
                        participant.store.name,
                        txid,
                        exc,
                    )
                    raise CommitFailedError(txid, participant.store.name, repr(exc)) from exc
        except BaseException:
            await self._abort_all(txid, involved)
            raise

        # Phase 3: make it final. A failed release leaves keys locked, not data wrong.
        for participant in involved:
            try:
                await participant.store.release(txid)
            except Exception:
                logger.exception(
                    "store %s failed to release committed transaction %s; its keys stay "
                    "locked until it is aborted",
                    participant.store.name,
                    txid,
                )
        return CommitResult(
            txid, update.writer, tuple(entries), tuple(unchanged), tuple(dropped), attempt
        )

    def _resolve(
        self, update: Update, write: Write, current: Entry | None, dropped: list[str]
    ) -> Entry | None:
        """Return the entry to stage for ``write``, or None when nothing changes."""
        version = current.version if current is not None else 0
        current_value = current.value if current is not None else None
        tags = write.tags

        if write.base_version is not None and write.base_version != version:
            context = MergeContext(
                scope=write.scope,
                key=write.key,
                writer=update.writer,
                other_writer=current.writer if current is not None else UNKNOWN_WRITER,
                policy=self.policies.get(write.key),
                writer_priority=update.priority,
                other_priority=current.priority if current is not None else 0,
            )
            resolution = resolve(write.base_value, current_value, write.value, context)
            dropped.extend(f"{write.scope}|{write.key}|{path}" for path in resolution.dropped)
            if not resolution.changed:
                return None
            value = resolution.value
            if current is not None:
                tags = tags | current.tags
        else:
            value = write.value

        return Entry(
            scope=write.scope,
            key=write.key,
            value=value,
            version=version + 1,
            writer=update.writer,
            tags=tags,
            embedding=write.embedding,
            priority=update.priority,
        )

    async def _abort_all(self, txid: str, participants: Iterable[_Participant]) -> None:
        for participant in participants:
            try:
                await participant.store.abort(txid)
            except Exception:
                # NOTE: this store may now hold a partial commit of txid, and
                # readers may see it, until its pending transaction is aborted.
                logger.exception(
                    "store %s failed to abort transaction %s", participant.store.name, txid
                )
