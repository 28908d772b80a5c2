"""The store protocol of the context repository, and the in-memory store.

Every store keeps the latest committed :class:`Entry` of each (scope, key)
and takes part in a two-phase commit through four calls, all keyed by a
transaction id:

``prepare(txid, writes)``
    checks that each key is still at the version the writer read and that no
    other transaction has locked it, then locks the keys and keeps the writes and
    the entries they replace (the before-images). All or nothing: on
    :class:`VersionConflictError` nothing is locked.
``commit(txid)``
    applies the prepared writes atomically. The keys stay locked and the
    before-images are kept, so the commit can still be undone.
``abort(txid)``
    undoes the transaction in this store: drops prepared writes, or restores
    the before-images of a commit that was not released yet; then unlocks.
``release(txid)``
    makes the commit final: drops the before-images and unlocks.

Every store also keeps a change feed for readers that cache entries:
each commit, and each abort that undoes a commit, gives the keys it
changed a new sequence number, larger than any before it.
``changes_since(scope, cursor)`` returns what changed under a scope after
a cursor, so a reader fetches only what is new instead of every entry.

The coordinator (:mod:`dyntaskmas.context.commit`) releases only after every
store has committed, so a store that fails during commit can be undone in
all the others. SQLite and Redis stores live in their own modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dyntaskmas.context.entries import Entry, StagedWrite
from dyntaskmas.context.scopes import is_within
from dyntaskmas.errors import VersionConflictError

Address = tuple[str, str]


@dataclass(frozen=True)
class ChangeSet:
    """What changed under a scope after a cursor, and the cursor to ask from next."""

    #: Entries committed now whose last change came after the cursor, oldest change first.
    entries: tuple[Entry, ...]
    #: Keys that were removed after the cursor (an undone first commit removes its key).
    removed: tuple[Address, ...]
    #: Pass this to the next ``changes_since`` call. 0 asks for everything.
    cursor: int


class ContextStore(Protocol):
    """Storage for entries; the module docstring describes the commit protocol."""

    @property
    def name(self) -> str:
        """A short name for messages and logs, such as ``"sqlite"``."""
        ...

    async def get(self, scope: str, key: str) -> Entry | None:
        """Return the committed entry of (scope, key), or None when it is absent."""
        ...

    async def list_entries(self, scope: str) -> list[Entry]:
        """Return the committed entries of ``scope`` and of every scope below it."""
        ...

    async def changes_since(self, scope: str, cursor: int) -> ChangeSet:
        """Return the changes under ``scope`` (itself and below) after ``cursor``."""
        ...

    async def prepare(self, txid: str, writes: Sequence[StagedWrite]) -> None:
        """Check versions and lock the keys of ``writes``; raise VersionConflictError."""
        ...

    async def commit(self, txid: str) -> None:
        """Apply the writes prepared under ``txid``; the keys stay locked until release."""
        ...

    async def abort(self, txid: str) -> None:
        """Undo ``txid`` here, prepared or committed but not released; unknown ids are ignored."""
        ...

    async def release(self, txid: str) -> None:
        """Make ``txid``'s commit final and unlock its keys."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


@dataclass
class _Transaction:
    writes: tuple[StagedWrite, ...]
    # The entry each write replaces, None where the key was absent.
    before: dict[Address, Entry | None] = field(default_factory=dict)
    committed: bool = False


class MemoryStore:
    """A store in this process's memory: fast, not shared, lost at exit.

    No method awaits anything, so each call is atomic under asyncio.
    """

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._entries: dict[Address, Entry] = {}
        # Key -> id of the transaction that has locked it, from prepare to release or abort.
        self._locks: dict[Address, str] = {}
        self._transactions: dict[str, _Transaction] = {}
        self._sequence = 0
        # Key -> sequence number of its last change. A changed key is moved to
        # the end, so the dict is in change order and a read walks back only
        # over the changes it has not seen. Removed keys stay as tombstones.
        self._changed: dict[Address, int] = {}

    @property
    def name(self) -> str:
        return self._name

    async def get(self, scope: str, key: str) -> Entry | None:
        return self._entries.get((scope, key))

    async def list_entries(self, scope: str) -> list[Entry]:
        return [entry for entry in self._entries.values() if is_within(entry.scope, scope)]

    async def changes_since(self, scope: str, cursor: int) -> ChangeSet:
        entries: list[Entry] = []
        removed: list[Address] = []
        for address, sequence in reversed(self._changed.items()):
            if sequence <= cursor:
                break
            if not is_within(address[0], scope):
                continue
            entry = self._entries.get(address)
            if entry is None:
                removed.append(address)
            else:
                entries.append(entry)
        entries.reverse()
        removed.reverse()
        return ChangeSet(tuple(entries), tuple(removed), max(cursor, self._sequence))

    async def prepare(self, txid: str, writes: Sequence[StagedWrite]) -> None:
        if txid in self._transactions:
            raise ValueError(f"transaction {txid!r} is already prepared in store {self._name!r}")
        check_distinct(writes)

        # Check every write before locking any, so a conflict leaves nothing locked.
        for write in writes:
            current = self._entries.get(write.address)
            actual = current.version if current is not None else 0
            holder = self._locks.get(write.address)
            if holder is not None or actual != write.expected_version:
                raise VersionConflictError(
                    self._name,
                    write.entry.scope,
                    write.entry.key,
                    expected_version=write.expected_version,
                    actual_version=actual,
                    locked_by=holder,
                )

        transaction = _Transaction(tuple(writes))
        for write in writes:
            self._locks[write.address] = txid
            transaction.before[write.address] = self._entries.get(write.address)
        self._transactions[txid] = transaction

    async def commit(self, txid: str) -> None:
        transaction = self._transaction(txid)
        if transaction.committed:
            return
        for write in transaction.writes:
            self._entries[write.address] = write.entry
            self._record_change(write.address)
        transaction.committed = True

    async def abort(self, txid: str) -> None:
        transaction = self._transactions.pop(txid, None)
        if transaction is None:
            return
        if transaction.committed:
            for address, before in transaction.before.items():
                if before is None:
                    self._entries.pop(address, None)
                else:
                    self._entries[address] = before
                self._record_change(address)
        self._unlock(txid, transaction)

    async def release(self, txid: str) -> None:
        transaction = self._transactions.pop(txid, None)
        if transaction is not None:
            self._unlock(txid, transaction)

    async def close(self) -> None:
        return None

    def _transaction(self, txid: str) -> _Transaction:
        try:
            return self._transactions[txid]
        except KeyError:
            raise ValueError(
                f"transaction {txid!r} is not prepared in store {self._name!r}; prepare it first"
            ) from None

    def _record_change(self, address: Address) -> None:
        self._sequence += 1
        self._changed.pop(address, None)
        self._changed[address] = self._sequence

    def _unlock(self, txid: str, transaction: _Transaction) -> None:
        for write in transaction.writes:
            if self._locks.get(write.address) == txid:
                del self._locks[write.address]


def check_distinct(writes: Sequence[StagedWrite]) -> None:
    """Raise ValueError when two writes of one transaction share a (scope, key)."""
    seen: set[Address] = set()
    for write in writes:
        if write.address in seen:
            scope, key = write.address
            raise ValueError(
                f"one transaction writes key {key!r} in scope {scope!r} twice; "
                f"merge the values into one write"
            )
        seen.add(write.address)
