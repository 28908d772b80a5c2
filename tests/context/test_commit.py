"""Two-phase commit across stores: atomicity, rollback, retries, merge policies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from dyntaskmas.context.commit import CommitCoordinator, StoreRouter, Update, Write
from dyntaskmas.context.entries import Entry, StagedWrite
from dyntaskmas.context.stores import ContextStore, MemoryStore
from dyntaskmas.errors import CommitFailedError, VersionConflictError, WriteConflictError


class InstantClock:
    """A clock whose sleeps return at once and only add to the time."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def now(self) -> float:
        return sum(self.slept)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


class CommitFailingStore(MemoryStore):
    """A memory store that accepts prepares and raises on every commit."""

    async def commit(self, txid: str) -> None:
        raise RuntimeError("disk full")


class RacingStore(MemoryStore):
    """A memory store where another process commits just before the first prepare."""

    def __init__(self, rival: Update) -> None:
        super().__init__()
        self.rival: Update | None = rival
        self.prepares = 0

    async def prepare(self, txid: str, writes: Sequence[StagedWrite]) -> None:
        self.prepares += 1
        if self.rival is not None:
            rival, self.rival = self.rival, None
            await CommitCoordinator(StoreRouter(self)).commit(rival)
        await super().prepare(txid, writes)


def update(writer: str, *writes: Write, priority: int = 0) -> Update:
    return Update(writer=writer, writes=writes, priority=priority)


async def test_failed_commit_leaves_both_stores_unchanged(store: ContextStore) -> None:
    failing = CommitFailingStore(name="failing")
    coordinator = CommitCoordinator(StoreRouter(store, {"run/b": failing}))
    await coordinator.commit(update("t.0", Write("run/a", "k", "old a")))
    before = await store.list_entries("run")

    with pytest.raises(CommitFailedError) as caught:
        await coordinator.commit(
            update(
                "t.1",
                Write("run/a", "k", "new a", base_version=1, base_value="old a"),
                Write("run/a", "fresh", "x"),
                Write("run/b", "k", "new b"),
            )
        )

    assert caught.value.store == "failing"
    assert await store.list_entries("run") == before
    assert await failing.list_entries("run") == []
    # Nothing stays locked: the next update of the same keys goes through.
    await coordinator.commit(update("t.2", Write("run/a", "fresh", "y")))


async def test_failed_commit_in_first_store_leaves_second_unprepared(
    store: ContextStore,
) -> None:
    failing = CommitFailingStore(name="failing")
    coordinator = CommitCoordinator(StoreRouter(failing, {"run/b": store}))

    with pytest.raises(CommitFailedError):
        await coordinator.commit(
            update("t.1", Write("run/a", "k", "new a"), Write("run/b", "k", "new b"))
        )

    assert await store.list_entries("run") == []
    await coordinator.commit(update("t.2", Write("run/b", "k", "later")))


async def test_conflict_on_one_key_rejects_whole_update() -> None:
    store = MemoryStore()
    coordinator = CommitCoordinator(StoreRouter(store))
    await coordinator.commit(update("t.1", Write("run", "price", 200)))

    with pytest.raises(WriteConflictError):
        await coordinator.commit(
            update("t.2", Write("run", "note", "cheap"), Write("run", "price", 250))
        )

    assert await store.get("run", "note") is None


async def test_read_version_makes_overwrite_sequential() -> None:
    store = MemoryStore()
    coordinator = CommitCoordinator(StoreRouter(store))
    await coordinator.commit(update("t.1", Write("run", "price", 200)))

    result = await coordinator.commit(
        update("t.2", Write("run", "price", 250, base_version=1, base_value=200))
    )

    assert [e.value for e in result.entries] == [250]
    assert [e.version for e in result.entries] == [2]


async def test_blind_write_replaces_any_version() -> None:
    store = MemoryStore()
    coordinator = CommitCoordinator(StoreRouter(store))
    await coordinator.commit(update("t.1", Write("run/t.1", "output", "first")))

    await coordinator.commit(update("t.1", Write("run/t.1", "output", "rerun", base_version=None)))

    stored = await store.get("run/t.1", "output")
    assert stored is not None
    assert stored.value == "rerun"
    assert stored.version == 2


async def test_unchanged_write_skipped() -> None:
    store = MemoryStore()
    coordinator = CommitCoordinator(StoreRouter(store))
    await coordinator.commit(update("t.1", Write("run", "state", {"a": 1, "b": 1})))
    await coordinator.commit(
        update(
            "t.2",
            Write("run", "state", {"a": 2, "b": 1}, base_version=1, base_value={"a": 1, "b": 1}),
        )
    )

    result = await coordinator.commit(
        update(
            "t.3",
            Write("run", "state", {"a": 1, "b": 1}, base_version=1, base_value={"a": 1, "b": 1}),
        )
    )

    assert result.entries == ()
    assert result.unchanged == (("run", "state"),)


async def test_merged_entry_names_latest_writer_and_tags() -> None:
    store = MemoryStore()
    coordinator = CommitCoordinator(StoreRouter(store))
    await coordinator.commit(
        update("t.1", Write("run", "prices", {"paris": 200}, tags=frozenset({"paris"})))
    )

    await coordinator.commit(
        update("t.2", Write("run", "prices", {"rome": 150}, tags=frozenset({"rome"})))
    )

    stored = await store.get("run", "prices")
    assert stored is not None
    assert stored.value == {"paris": 200, "rome": 150}
    assert stored.writer == "t.2"
    assert stored.tags == {"paris", "rome"}


async def test_concurrent_process_write_retried_and_merged() -> None:
    rival = update("other", Write("run", "prices", {"rome": 150}))
    store = RacingStore(rival)
    clock = InstantClock()
    coordinator = CommitCoordinator(StoreRouter(store), clock=clock)

    result = await coordinator.commit(update("t.1", Write("run", "prices", {"paris": 200})))

    stored = await store.get("run", "prices")
    assert stored is not None
    assert stored.value == {"rome": 150, "paris": 200}
    assert result.attempts == 2
    assert len(clock.slept) == 1


async def test_retries_give_up_after_max_attempts() -> None:
    store = MemoryStore()
    await store.prepare("stuck", [StagedWrite(0, _entry("run", "k"))])
    clock = InstantClock()
    coordinator = CommitCoordinator(StoreRouter(store), clock=clock, max_attempts=3)

    with pytest.raises(VersionConflictError) as caught:
        await coordinator.commit(update("t.1", Write("run", "k", "mine")))

    assert caught.value.locked_by == "stuck"
    assert len(clock.slept) == 2
    assert clock.slept[1] == 2 * clock.slept[0]


async def test_unknown_policy_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown"):
        CommitCoordinator(StoreRouter(MemoryStore()), policies={"k": "newest"})  # type: ignore[dict-item]


def test_router_picks_longest_route() -> None:
    default, shared, deep = MemoryStore("default"), MemoryStore("shared"), MemoryStore("deep")
    router = StoreRouter(default, {"run": shared, "run/t.1": deep})

    assert router.store_for("run/t.1/t.1.2") is deep
    assert router.store_for("run/t.2") is shared
    assert router.store_for("run2") is default
    assert router.stores() == [default, deep, shared]


def test_update_rejects_duplicate_key() -> None:
    with pytest.raises(ValueError, match="twice"):
        update("t.1", Write("run", "k", 1), Write("run", "k", 2))


def test_write_rejects_non_json_value() -> None:
    with pytest.raises(TypeError, match="not a JSON value"):
        Write("run", "k", {"when": object()})


def _entry(scope: str, key: str) -> Entry:
    return Entry(scope=scope, key=key, value="held", version=1, writer="stuck")


class MeetingStore(MemoryStore):
    """A memory store whose prepares wait until ``parties`` prepares are in progress."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self.barrier = asyncio.Barrier(parties)
        self.in_prepare = 0
        self.most_in_prepare = 0

    async def prepare(self, txid: str, writes: Sequence[StagedWrite]) -> None:
        self.in_prepare += 1
        self.most_in_prepare = max(self.most_in_prepare, self.in_prepare)
        try:
            await self.barrier.wait()
        finally:
            self.in_prepare -= 1
        await super().prepare(txid, writes)


async def test_disjoint_keys_commit_concurrently() -> None:
    store = MeetingStore(parties=3)
    coordinator = CommitCoordinator(StoreRouter(store))

    # Each prepare waits for the other two, so this finishes only if all three run at once.
    async with asyncio.timeout(10):
        await asyncio.gather(
            *(coordinator.commit(update(f"t.{i}", Write("run", f"k{i}", i))) for i in range(3))
        )

    assert store.most_in_prepare == 3
    assert [(await store.get("run", f"k{i}")) is not None for i in range(3)] == [True] * 3


async def test_same_key_commits_one_at_a_time() -> None:
    store = MeetingStore(parties=1)
    coordinator = CommitCoordinator(StoreRouter(store), policies={"notes": "append"})

    results = await asyncio.gather(
        *(coordinator.commit(update(f"t.{i}", Write("run", "notes", [i]))) for i in range(4))
    )
    stored = await store.get("run", "notes")

    assert store.most_in_prepare == 1
    assert all(result.attempts == 1 for result in results)
    assert stored is not None
    assert sorted(stored.value) == [0, 1, 2, 3]
