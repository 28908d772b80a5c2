"""The contract every context store keeps, run against memory, SQLite and Redis."""

from __future__ import annotations

import pytest

from dyntaskmas.context.entries import Entry, StagedWrite
from dyntaskmas.context.stores import ContextStore
from dyntaskmas.errors import VersionConflictError


def entry(scope: str, key: str, value: object, version: int = 1, writer: str = "t.1") -> Entry:
    return Entry(
        scope=scope,
        key=key,
        value=value,
        version=version,
        writer=writer,
        tags=frozenset({"paris", "hotel"}),
        embedding=(0.6, 0.8),
        priority=2,
    )


def write(scope: str, key: str, value: object, over: int = 0, writer: str = "t.1") -> StagedWrite:
    return StagedWrite(over, entry(scope, key, value, version=over + 1, writer=writer))


async def put(store: ContextStore, txid: str, *writes: StagedWrite) -> None:
    await store.prepare(txid, writes)
    await store.commit(txid)
    await store.release(txid)


async def test_absent_key_reads_none(store: ContextStore) -> None:
    assert await store.get("run", "missing") is None


async def test_committed_entry_round_trips(store: ContextStore) -> None:
    await put(store, "tx1", write("run", "state", {"city": "Paris", "nights": [1, 2]}))

    stored = await store.get("run", "state")

    assert stored == entry("run", "state", {"city": "Paris", "nights": [1, 2]})


async def test_prepared_write_invisible_until_commit(store: ContextStore) -> None:
    await store.prepare("tx1", [write("run", "k", "v")])

    before = await store.get("run", "k")
    await store.commit("tx1")
    after = await store.get("run", "k")

    assert before is None
    assert after is not None
    assert after.value == "v"


async def test_prepare_rejects_stale_version(store: ContextStore) -> None:
    await put(store, "tx1", write("run", "k", "first"))

    with pytest.raises(VersionConflictError) as caught:
        await store.prepare("tx2", [write("run", "k", "second", over=0)])

    assert caught.value.expected_version == 0
    assert caught.value.actual_version == 1
    assert caught.value.locked_by is None


async def test_prepare_rejects_key_held_by_other_transaction(store: ContextStore) -> None:
    await store.prepare("tx1", [write("run", "k", "first")])

    with pytest.raises(VersionConflictError) as caught:
        await store.prepare("tx2", [write("run", "k", "second")])

    assert caught.value.locked_by == "tx1"


async def test_failed_prepare_locks_nothing(store: ContextStore) -> None:
    await put(store, "tx0", write("run", "taken", "x"))

    with pytest.raises(VersionConflictError):
        await store.prepare("tx1", [write("run", "free", "a"), write("run", "taken", "b")])
    await store.prepare("tx2", [write("run", "free", "c")])
    await store.commit("tx2")

    stored = await store.get("run", "free")
    assert stored is not None
    assert stored.value == "c"


async def test_abort_before_commit_discards(store: ContextStore) -> None:
    await store.prepare("tx1", [write("run", "k", "v")])
    await store.abort("tx1")

    assert await store.get("run", "k") is None
    await put(store, "tx2", write("run", "k", "again"))


async def test_abort_after_commit_restores_before_images(store: ContextStore) -> None:
    await put(store, "tx0", write("run", "old", "kept"))
    await store.prepare("tx1", [write("run", "old", "changed", over=1), write("run", "new", "x")])
    await store.commit("tx1")

    await store.abort("tx1")

    restored = await store.get("run", "old")
    assert restored is not None
    assert restored.value == "kept"
    assert restored.version == 1
    assert await store.get("run", "new") is None
    assert [e.key for e in await store.list_entries("run")] == ["old"]


async def test_release_makes_commit_final(store: ContextStore) -> None:
    await store.prepare("tx1", [write("run", "k", "v")])
    await store.commit("tx1")
    await store.release("tx1")

    await store.abort("tx1")

    stored = await store.get("run", "k")
    assert stored is not None
    assert stored.value == "v"


async def test_release_unlocks_keys(store: ContextStore) -> None:
    await put(store, "tx1", write("run", "k", "v1"))

    await put(store, "tx2", write("run", "k", "v2", over=1))

    stored = await store.get("run", "k")
    assert stored is not None
    assert stored.version == 2


async def test_commit_of_unknown_transaction_raises(store: ContextStore) -> None:
    with pytest.raises(ValueError, match="not prepared"):
        await store.commit("nobody")


async def test_abort_of_unknown_transaction_ignored(store: ContextStore) -> None:
    await store.abort("nobody")


async def test_same_key_twice_in_one_transaction_rejected(store: ContextStore) -> None:
    with pytest.raises(ValueError, match="twice"):
        await store.prepare("tx1", [write("run", "k", 1), write("run", "k", 2)])


async def test_list_entries_covers_subtree_only(store: ContextStore) -> None:
    await put(
        store,
        "tx1",
        write("run", "shared", 1),
        write("run/t.1", "output", 2),
        write("run/t.1/t.1.1", "output", 3),
        write("run2/t.1", "output", 4),
        write("run_x", "other", 5),
    )

    listed = sorted((e.scope, e.key) for e in await store.list_entries("run"))
    below_task = sorted((e.scope, e.key) for e in await store.list_entries("run/t.1"))

    assert listed == [("run", "shared"), ("run/t.1", "output"), ("run/t.1/t.1.1", "output")]
    assert below_task == [("run/t.1", "output"), ("run/t.1/t.1.1", "output")]


async def test_scope_names_match_literally(store: ContextStore) -> None:
    await put(store, "tx1", write("r%n", "k", 1), write("rxn", "k", 2))

    listed = [e.scope for e in await store.list_entries("r%n")]

    assert listed == ["r%n"]


async def test_changes_from_zero_list_subtree(store: ContextStore) -> None:
    await put(store, "tx1", write("run", "shared", 1), write("run/t.1", "output", 2))
    await put(store, "tx2", write("other", "k", 3))

    changes = await store.changes_since("run", 0)

    assert sorted(e.address for e in changes.entries) == [("run", "shared"), ("run/t.1", "output")]
    assert changes.removed == ()
    assert changes.cursor > 0


async def test_changes_after_cursor_only_new(store: ContextStore) -> None:
    await put(store, "tx1", write("run", "a", 1), write("run", "b", 1))
    first = await store.changes_since("run", 0)
    await put(store, "tx2", write("run", "b", 2, over=1))

    second = await store.changes_since("run", first.cursor)
    third = await store.changes_since("run", second.cursor)

    assert [(e.key, e.value) for e in second.entries] == [("b", 2)]
    assert second.cursor > first.cursor
    assert third.entries == ()
    assert third.cursor == second.cursor


async def test_changes_report_undone_commit(store: ContextStore) -> None:
    await put(store, "tx0", write("run", "old", "kept"))
    before = await store.changes_since("run", 0)
    await store.prepare("tx1", [write("run", "old", "changed", over=1), write("run", "new", "x")])
    await store.commit("tx1")
    await store.abort("tx1")

    changes = await store.changes_since("run", before.cursor)

    assert [(e.key, e.value, e.version) for e in changes.entries] == [("old", "kept", 1)]
    assert changes.removed == (("run", "new"),)


async def test_changes_skip_prepared_writes(store: ContextStore) -> None:
    await store.prepare("tx1", [write("run", "k", "v")])

    changes = await store.changes_since("run", 0)

    assert changes.entries == ()
    assert changes.removed == ()
