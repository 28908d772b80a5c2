"""The context repository: reads across the scope forest, writes through two-phase commit.

:class:`ContextRepository` puts the pieces together: a :class:`StoreRouter`
saying which store contains which scope, and a :class:`CommitCoordinator`
that commits each update in all of them or in none. Reads see committed
entries only. It owns no policy about what a task should see; that is
:mod:`dyntaskmas.context.manager`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dyntaskmas.clock import Clock
from dyntaskmas.context.commit import CommitCoordinator, CommitResult, StoreRouter, Update
from dyntaskmas.context.entries import Entry
from dyntaskmas.context.merge import MergePolicy
from dyntaskmas.context.scopes import ancestors, validate_scope
from dyntaskmas.context.sqlite_store import SQLiteStore
from dyntaskmas.context.stores import Address, ContextStore, MemoryStore


@dataclass(frozen=True)
class RepositoryChanges:
    """What changed under a scope in every store after a cursor; see ``changes_under``."""

    entries: tuple[Entry, ...]
    removed: tuple[Address, ...]
    #: One position per store, in the order of ``StoreRouter.stores()``.
    cursor: tuple[int, ...]


class ContextRepository:
    """Versioned entries in a forest of scopes, kept in one or more stores.

    ``routes`` sends the scopes under a path to a store other than
    ``store``, for example a run's shared scope to Redis while task scopes
    stay in SQLite. ``policies`` maps key names to merge policies.
    """

    def __init__(
        self,
        store: ContextStore,
        *,
        routes: Mapping[str, ContextStore] | None = None,
        policies: Mapping[str, MergePolicy] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.router = StoreRouter(store, routes)
        self.coordinator = CommitCoordinator(self.router, policies=policies, clock=clock)

    @classmethod
    def in_memory(cls, *, policies: Mapping[str, MergePolicy] | None = None) -> ContextRepository:
        """Return a repository kept in this process's memory."""
        return cls(MemoryStore(), policies=policies)

    @classmethod
    def sqlite(
        cls, data_dir: str | Path, *, policies: Mapping[str, MergePolicy] | None = None
    ) -> ContextRepository:
        """Return a repository in ``data_dir/context.sqlite3``, the durable default."""
        return cls(SQLiteStore.in_data_dir(data_dir), policies=policies)

    async def get(self, scope: str, key: str) -> Entry | None:
        """Return the committed entry of ``key`` in ``scope`` itself, or None."""
        return await self.router.store_for(validate_scope(scope)).get(scope, key)

    async def lookup(self, scope: str, key: str) -> Entry | None:
        """Return ``key`` as visible from ``scope``: from the nearest of it and its ancestors."""
        for candidate in ancestors(scope):
            entry = await self.get(candidate, key)
            if entry is not None:
                return entry
        return None

    async def entries_under(self, scope: str) -> list[Entry]:
        """Return the committed entries of ``scope`` and every scope below it."""
        validate_scope(scope)
        found: dict[tuple[str, str], Entry] = {}
        for store in self.router.stores():
            for entry in await store.list_entries(scope):
                # A scope routed to another store may leave old copies in the
                # default one; the routed store is the one that counts.
                if self.router.store_for(entry.scope) is store:
                    found[entry.address] = entry
        return sorted(found.values(), key=lambda entry: entry.address)

    async def changes_under(
        self, scope: str, cursor: tuple[int, ...] | None = None
    ) -> RepositoryChanges:
        """Return what changed under ``scope`` after ``cursor``; None asks for everything.

        Pass the returned cursor to the next call. Within each store, entries
        come in the order they changed.
        """
        validate_scope(scope)
        stores = self.router.stores()
        positions = cursor if cursor is not None else (0,) * len(stores)
        if len(positions) != len(stores):
            raise ValueError(
                f"cursor {positions!r} has {len(positions)} positions for {len(stores)} stores; "
                f"pass a cursor this repository returned"
            )
        entries: list[Entry] = []
        removed: list[Address] = []
        next_positions: list[int] = []
        for store, position in zip(stores, positions, strict=True):
            changes = await store.changes_since(scope, position)
            # As in entries_under, only the store a scope is routed to counts.
            entries.extend(e for e in changes.entries if self.router.store_for(e.scope) is store)
            removed.extend(a for a in changes.removed if self.router.store_for(a[0]) is store)
            next_positions.append(changes.cursor)
        return RepositoryChanges(tuple(entries), tuple(removed), tuple(next_positions))

    async def commit(self, update: Update) -> CommitResult:
        """Commit ``update`` in every store it touches, or in none; see CommitCoordinator."""
        return await self.coordinator.commit(update)

    async def close(self) -> None:
        """Close every store."""
        for store in self.router.stores():
            await store.close()
