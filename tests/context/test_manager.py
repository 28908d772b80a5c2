"""The context manager: parallel writers, distribution by θ, prompts within the window.

Parallel tasks are asyncio tasks that meet at a barrier after reading, so
both have read before either writes, whatever order the loop runs them in.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dyntaskmas.context.commit import Update, Write
from dyntaskmas.context.entries import JSONValue
from dyntaskmas.context.manager import ContextManager, PublishResult
from dyntaskmas.context.repository import ContextRepository
from dyntaskmas.context.retrieval import HeuristicTokenCounter, truncate_to_tokens
from dyntaskmas.context.stores import ContextStore, MemoryStore
from dyntaskmas.engine.prompts import work_messages
from dyntaskmas.errors import CommitFailedError, WriteConflictError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage

COUNTER = HeuristicTokenCounter()
WINDOW_TOKENS = 8192
MAX_TOKENS = 256


async def parallel_writers(
    manager: ContextManager, key: str, writes: dict[str, JSONValue]
) -> dict[str, PublishResult]:
    """Run one task per writer: read ``key``, wait for all, then publish its value."""
    barrier = asyncio.Barrier(len(writes))
    results: dict[str, PublishResult] = {}

    async def task(task_id: str, value: JSONValue) -> None:
        await manager.read(task_id, key)
        await barrier.wait()
        results[task_id] = await manager.publish(task_id, f"{task_id} done", writes={key: value})

    async with asyncio.TaskGroup() as group:
        for task_id, value in writes.items():
            group.create_task(task(task_id, value))
    return results


@pytest.fixture
def manager(store: ContextStore) -> ContextManager:
    return ContextManager("run", ContextRepository(store))


async def test_parallel_subkeys_both_kept(manager: ContextManager) -> None:
    results = await parallel_writers(
        manager, "hotels", {"t.paris": {"paris": 220}, "t.rome": {"rome": 150}}
    )

    assert all(result.ok for result in results.values())
    assert await manager.read("checker", "hotels") == {"paris": 220, "rome": 150}


async def test_parallel_scalar_writes_reject_later(manager: ContextManager) -> None:
    async def bystander() -> PublishResult:
        return await manager.publish("t.other", "Tokyo is rainy in April.")

    async with asyncio.TaskGroup() as group:
        writers = group.create_task(
            parallel_writers(manager, "price", {"t.a": "200 euros", "t.b": "250 euros"})
        )
        other = group.create_task(bystander())
    results = writers.result()

    rejected = [r for r in results.values() if not r.ok]
    accepted = [r for r in results.values() if r.ok]
    assert len(rejected) == 1
    assert len(accepted) == 1
    [error] = rejected[0].errors
    assert isinstance(error, WriteConflictError)
    assert {error.writer, error.other_writer} == {"t.a", "t.b"}
    assert error.writer == rejected[0].task_id
    assert "t.a" in str(error)
    assert "t.b" in str(error)
    # The run carries on: the winner's value remains, and every output is stored.
    assert await manager.read("checker", "price") == (
        "200 euros" if error.writer == "t.b" else "250 euros"
    )
    assert rejected[0].output is not None
    assert other.result().ok
    assert manager.stats.conflicts_rejected == 1


async def test_whole_state_handback_merges_changed_fields(manager: ContextManager) -> None:
    initial = {"city": "Paris", "nights": 3, "budget": 900, "hotel": None}
    await manager.publish("t.plan", "planned", writes={"trip": initial})

    results = await parallel_writers(
        manager,
        "trip",
        {
            "t.nights": {**initial, "nights": 4},
            "t.hotel": {**initial, "hotel": "Hotel du Louvre"},
        },
    )

    assert all(result.ok for result in results.values())
    assert await manager.read("checker", "trip") == {
        "city": "Paris",
        "nights": 4,
        "budget": 900,
        "hotel": "Hotel du Louvre",
    }


async def test_merge_policy_declared_per_key(store: ContextStore) -> None:
    manager = ContextManager("run", ContextRepository(store, policies={"notes": "append"}))

    results = await parallel_writers(manager, "notes", {"t.a": ["from a"], "t.b": ["from b"]})

    assert all(result.ok for result in results.values())
    notes = await manager.read("checker", "notes")
    assert sorted(notes) == ["from a", "from b"]


async def test_paris_task_gets_hotel_update_not_weather() -> None:
    manager = ContextManager("run", theta=0.3)
    await manager.publish("t.hotels", "Hotels cost 220 euros.", tags={"hotels", "paris", "prices"})
    await manager.publish("t.weather", "Rain all week.", tags={"weather", "tokyo"})

    selection = await manager.context_for(
        TaskSpec(id="t.budget", description="Work out hotel budgets in Paris"), [], 4000
    )

    assert [item.candidate.source for item in selection.items] == ["t.hotels"]
    assert manager.stats.filtered_out == 1
    assert manager.delivered_to("t.budget") == {"t.hotels"}


async def test_predecessor_output_delivered_regardless_of_tags() -> None:
    manager = ContextManager("run", theta=0.9)
    await manager.publish("t.1", "Rain all week.", tags={"weather", "tokyo"})

    selection = await manager.context_for(
        TaskSpec(id="t.2", description="Work out hotel budgets in Paris"), ["t.1"], 4000
    )

    assert [item.candidate.source for item in selection.items] == ["t.1"]
    assert selection.items[0].candidate.required
    assert manager.stats.required_deliveries == 1


async def test_own_output_not_offered_back() -> None:
    manager = ContextManager("run", theta=0.0)
    await manager.publish("t.1", "Hotels in Paris cost 220 euros.")

    selection = await manager.context_for(
        TaskSpec(id="t.1", description="Hotels in Paris"), [], 4000
    )

    assert selection.items == ()


async def test_shared_entry_delivered_by_relevance() -> None:
    manager = ContextManager("run", theta=0.1)
    await manager.publish(
        "t.1", "done", tags={"paris", "hotel"}, writes={"hotel_prices": {"paris": 220}}
    )

    selection = await manager.context_for(
        TaskSpec(id="t.2", description="Paris hotel budget"), [], 4000
    )

    shared = [item for item in selection.items if item.candidate.key == "hotel_prices"]
    assert len(shared) == 1
    assert '"paris": 220' in shared[0].text
    assert "key:hotel_prices" in manager.delivered_to("t.2")


def chain_output(step: int) -> str:
    sentence = f"Step {step} refines the Paris hotel price estimate for July. "
    text = sentence * 1000
    output = truncate_to_tokens(text, 5000, COUNTER)
    assert COUNTER.count(output) >= 4990
    return output


def prompt_without_context(spec: TaskSpec) -> list[ChatMessage]:
    messages = work_messages("Estimate Paris hotel prices", spec, [], "refines estimates")
    system, user = messages
    return [system, ChatMessage("user", user.content + "\n\nContext:\n\n")]


async def test_chain_of_long_outputs_fits_window() -> None:
    """t.1 -> t.2 -> ... -> t.6, each step writing 5,000 tokens, on an 8,192-token window."""
    manager = ContextManager("run")
    told_left_out = []
    for step in range(1, 7):
        spec = TaskSpec(id=f"t.{step}", description=f"Refine the Paris hotel price estimate {step}")
        predecessors = [f"t.{step - 1}"] if step > 1 else []
        messages = prompt_without_context(spec)
        budget = manager.budget_for(WINDOW_TOKENS, messages, MAX_TOKENS)

        selection = await manager.context_for(spec, predecessors, budget)

        prompt_tokens = sum(COUNTER.count(m.content) for m in messages)
        total = prompt_tokens + COUNTER.count(selection.render()) + MAX_TOKENS
        assert total <= WINDOW_TOKENS, f"step {step}: {total} tokens"
        assert [i.candidate.source for i in selection.items if i.candidate.required] == predecessors
        not_whole = [o.candidate.source for o in selection.omitted] + [
            i.candidate.source for i in selection.truncated
        ]
        for source in not_whole:
            assert f"output of {source} (" in selection.notice
        told_left_out.append(bool(not_whole) and selection.notice.startswith("Left out"))
        await manager.publish(spec.id, chain_output(step), description=spec.description)

    # From t.3 on, earlier outputs are relevant but cannot fit beside the predecessor's.
    assert told_left_out == [False, False, True, True, True, True]
    assert manager.stats.left_out + manager.stats.truncated >= 4


async def test_fan_in_of_long_outputs_truncates_both() -> None:
    manager = ContextManager("run")
    for step in (1, 2):
        await manager.publish(f"t.{step}", chain_output(step), description=f"estimate {step}")
    spec = TaskSpec(id="t.3", description="Combine the Paris hotel price estimates")
    messages = prompt_without_context(spec)
    budget = manager.budget_for(WINDOW_TOKENS, messages, MAX_TOKENS)

    selection = await manager.context_for(spec, ["t.1", "t.2"], budget)

    prompt_tokens = sum(COUNTER.count(m.content) for m in messages)
    assert prompt_tokens + selection.used_tokens + MAX_TOKENS <= WINDOW_TOKENS
    assert [i.candidate.source for i in selection.truncated] == ["t.1", "t.2"]
    assert "output of t.1 (truncated" in selection.notice
    assert "output of t.2 (truncated" in selection.notice


async def test_failed_store_reported_not_raised() -> None:
    class Failing(MemoryStore):
        async def commit(self, txid: str) -> None:
            raise RuntimeError("disk full")

    repository = ContextRepository(MemoryStore(), routes={"run/t.1": Failing("failing")})
    manager = ContextManager("run", repository)

    result = await manager.publish("t.1", "Hotels cost 220 euros.")

    assert not result.ok
    assert isinstance(result.errors[0], CommitFailedError)
    assert result.output is None
    assert manager.stats.commits_failed == 1


async def test_record_needed_counts_missing() -> None:
    manager = ContextManager("run", theta=0.3)
    await manager.publish("t.1", "x", tags={"paris", "hotel"})
    await manager.publish("t.2", "y", tags={"tokyo"})
    await manager.context_for(TaskSpec(id="t.3", description="Paris hotel"), [], 1000)

    missing = manager.record_needed("t.3", ["t.1", "t.2"])

    assert missing == 1
    assert manager.stats.missing_fact_rate == 0.5


async def test_sqlite_repository_survives_reopen(tmp_path: Path) -> None:
    first = ContextManager("run", ContextRepository.sqlite(tmp_path))
    await first.publish("t.1", "Hotels in Paris cost 220 euros.", writes={"price": 220})
    await first.close()

    second = ContextManager("run", ContextRepository.sqlite(tmp_path))
    selection = await second.context_for(
        TaskSpec(id="t.2", description="Paris hotels"), ["t.1"], 1000
    )
    price = await second.read("t.2", "price")
    await second.close()

    assert selection.items[0].candidate.source == "t.1"
    assert price == 220


def test_run_id_with_separator_rejected() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        ContextManager("run/1")


async def test_other_manager_output_reaches_context(tmp_path: Path) -> None:
    # Two managers over one SQLite file, as two processes of one run would have.
    writer = ContextManager("run", ContextRepository.sqlite(tmp_path))
    reader = ContextManager("run", ContextRepository.sqlite(tmp_path))
    task = TaskSpec(id="t.3", description="Hotel budget in Paris")
    try:
        before = await reader.context_for(task, ["t.1"], 1000)
        await writer.publish("t.1", "Hotels in Paris cost 220 euros.")
        await writer.publish("t.2", "Hotel prices in Paris peak in June.", tags={"paris", "hotel"})
        after = await reader.context_for(task, ["t.1"], 1000)
    finally:
        await writer.close()
        await reader.close()

    assert before.items == ()
    assert [item.candidate.source for item in after.items] == ["t.1", "t.2"]


async def test_undone_commit_leaves_context() -> None:
    task = TaskSpec(id="t.9", description="Paris hotel prices")
    seen_mid_commit: list[str] = []

    class FailingAfterLook(MemoryStore):
        async def commit(self, txid: str) -> None:
            # The first store has committed; a request now sees its entry.
            selection = await manager.context_for(task, [], 1000)
            seen_mid_commit.extend(item.candidate.key for item in selection.items)
            raise RuntimeError("disk full")

    repository = ContextRepository(MemoryStore(), routes={"run/t.5": FailingAfterLook("failing")})
    manager = ContextManager("run", repository)
    update = Update(
        writer="t.1",
        writes=(
            Write(
                scope="run",
                key="hotels",
                value="Paris hotels cost 220 euros.",
                tags=frozenset({"paris", "hotel", "price"}),
            ),
            Write(scope="run/t.5", key="note", value="x", tags=frozenset({"paris"})),
        ),
    )

    with pytest.raises(CommitFailedError):
        await repository.commit(update)
    after = await manager.context_for(task, [], 1000)

    assert seen_mid_commit == ["hotels"]
    assert after.items == ()
