"""The ready queue: tasks whose dependencies are done, best first, per role.

Policy: the task with the highest priority P(v) runs first; among equal
priorities, the one that became ready first. Ageing adds ``aging_per_s`` to a
task's priority for every second it has waited, so that on a graph that keeps
growing a low-priority task is not passed over for ever. Because every ready
task ages at the same rate, ageing only shifts the static key
``P - aging_per_s * ready_at``, and the heap never needs reordering as time
passes.

State: one heap per role of entries ``(-key, sequence, task_id)``; tasks are
never compared, and the sequence number keeps ties first-come-first-served.
Changing a task's priority or removing it leaves a stale entry behind, which
``_entries`` (the live key of each task) lets the heap skip when popping.

Example: with ``a`` (P = 3) and ``b`` (P = 5) ready for role ``worker``,
``pop_best(["worker"])`` returns ``b``, then ``a``.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Entry:
    role: str
    key: float
    sequence: int


class ReadyQueue:
    """Ready tasks ordered by ageing-adjusted priority, one heap per role."""

    def __init__(self, *, aging_per_s: float = 0.0) -> None:
        if aging_per_s < 0:
            raise ValueError(f"aging_per_s must be >= 0, got {aging_per_s}")
        self.aging_per_s = aging_per_s
        self._heaps: dict[str, list[tuple[float, int, str]]] = {}
        self._entries: dict[str, _Entry] = {}
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._entries

    def push(self, task_id: str, *, role: str, priority: float, ready_at: float) -> None:
        """Add a ready task, or move it if it is already queued."""
        key = priority - self.aging_per_s * ready_at
        old = self._entries.get(task_id)
        if old is not None and old.key == key and old.role == role:
            return
        # Keep the original sequence so a priority update does not lose the
        # task's first-come place among equals.
        sequence = old.sequence if old is not None else next(self._sequence)
        entry = _Entry(role=role, key=key, sequence=sequence)
        self._entries[task_id] = entry
        heapq.heappush(self._heaps.setdefault(role, []), (-key, sequence, task_id))

    def discard(self, task_id: str) -> None:
        """Remove a task if it is queued; its heap entry is skipped later."""
        self._entries.pop(task_id, None)

    def roles(self) -> list[str]:
        """Return the roles that have at least one queued task."""
        return [role for role in self._heaps if self._head(role) is not None]

    def peek(self, role: str) -> tuple[float, int, str] | None:
        """Return the best entry ``(-key, sequence, task_id)`` of ``role``, or None."""
        return self._head(role)

    def pop_best(self, roles: Iterable[str]) -> str | None:
        """Remove and return the best task over ``roles``, or None if all are empty."""
        best: tuple[float, int, str] | None = None
        for role in roles:
            head = self._head(role)
            if head is not None and (best is None or head < best):
                best = head
        if best is None:
            return None
        task_id = best[2]
        role = self._entries[task_id].role
        heapq.heappop(self._heaps[role])
        del self._entries[task_id]
        return task_id

    def _head(self, role: str) -> tuple[float, int, str] | None:
        heap = self._heaps.get(role)
        while heap:
            neg_key, _, task_id = heap[0]
            live = self._entries.get(task_id)
            if live is not None and live.role == role and live.key == -neg_key:
                return heap[0]
            heapq.heappop(heap)  # stale: removed, re-keyed or moved to another role
        return None
