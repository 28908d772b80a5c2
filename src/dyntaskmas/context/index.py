"""An in-process index of a run's context entries, kept current from the change feed.

A context request has to find the entries whose tags overlap the task's by
at least θ and rank them by cosine similarity. Weighing every entry of the
run for every request costs O(entries) Python work per request, so O(N²)
per round of N agents. :class:`EntryIndex` avoids that:

- a posting list per tag maps it to the entries carrying it. For θ > 0 an
  entry needs at least one shared tag, so only entries on the task's posting
  lists are weighed, and their intersection sizes are counted in one pass;
- embeddings are stored once, scaled to unit length, as rows of one NumPy
  matrix, so the cosine of a query with many entries is one matrix product;
- :meth:`EntryIndex.apply` takes the changes that
  :meth:`dyntaskmas.context.repository.ContextRepository.changes_under`
  returns, so keeping it current costs O(changes), not O(entries).

The index decides exactly as :func:`dyntaskmas.context.relevance.is_relevant`
does: the same integer counts give the same Jaccard value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from dyntaskmas.context.entries import Entry
from dyntaskmas.context.retrieval import cosine
from dyntaskmas.context.stores import Address

_INITIAL_ROWS = 64

Vector = npt.NDArray[np.float64]


class EntryIndex:
    """Committed entries by address, by tag, and by unit-length embedding."""

    def __init__(self) -> None:
        self._entries: dict[Address, Entry] = {}
        self._postings: dict[str, set[Address]] = {}
        self._by_writer: dict[str, set[Address]] = {}
        # The first embedding seen fixes the matrix's dimension, and embeddings
        # of that dimension live in its rows. Others are kept apart and scored
        # one by one, which only a run that mixes embedders needs.
        self._dimension: int | None = None
        self._matrix: Vector = np.zeros((0, 0))
        self._rows: dict[Address, int] = {}
        self._free_rows: list[int] = []
        self._odd_vectors: dict[Address, tuple[float, ...]] = {}
        #: Position in the repository's change feed that the index has caught up to.
        self.cursor: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, address: Address) -> Entry | None:
        return self._entries.get(address)

    def written_by(self, writer: str) -> set[Address]:
        """Return the addresses of the entries whose current version ``writer`` wrote."""
        return set(self._by_writer.get(writer, ()))

    def apply(self, entries: Iterable[Entry], removed: Iterable[Address]) -> None:
        """Bring the index up to date with changed ``entries`` and ``removed`` addresses."""
        for address in removed:
            self._remove(address)
        for entry in entries:
            self._remove(entry.address)
            self._add(entry)

    def relevant(self, task_tags: frozenset[str], theta: float) -> list[Address]:
        """Return the addresses of entries relevant to a task with ``task_tags``, sorted.

        Relevant means Jaccard(entry tags, task tags) >= θ, and neither set is
        empty, as in :func:`dyntaskmas.context.relevance.is_relevant`.
        """
        if not task_tags:
            return []
        if theta <= 0.0:
            return sorted(address for address, entry in self._entries.items() if entry.tags)

        shared: dict[Address, int] = {}
        for tag in task_tags:
            for address in self._postings.get(tag, ()):
                shared[address] = shared.get(address, 0) + 1
        task_size = len(task_tags)
        found = []
        for address, intersection in shared.items():
            union = task_size + len(self._entries[address].tags) - intersection
            if intersection / union >= theta:
                found.append(address)
        found.sort()
        return found

    def scores(self, query: Sequence[float] | None, addresses: Sequence[Address]) -> list[float]:
        """Return the cosine similarity of ``query`` to each entry's embedding.

        An entry without an embedding, or with one of another dimension than
        ``query``, scores 0.0, as does every entry when ``query`` is None.
        """
        result = [0.0] * len(addresses)
        if query is None or not addresses:
            return result

        if len(query) == self._dimension:
            unit_query = _unit(query)
            positions = [i for i, address in enumerate(addresses) if address in self._rows]
            if positions:
                rows = [self._rows[addresses[i]] for i in positions]
                products = self._matrix[rows] @ unit_query
                for position, value in zip(positions, products.tolist(), strict=True):
                    result[position] = value
        for position, address in enumerate(addresses):
            vector = self._odd_vectors.get(address)
            if vector is not None and len(vector) == len(query):
                result[position] = cosine(query, vector)
        return result

    # --- maintenance ----------------------------------------------------------------

    def _add(self, entry: Entry) -> None:
        address = entry.address
        self._entries[address] = entry
        self._by_writer.setdefault(entry.writer, set()).add(address)
        for tag in entry.tags:
            self._postings.setdefault(tag, set()).add(address)
        if entry.embedding is None:
            return
        if self._dimension is None:
            self._dimension = len(entry.embedding)
            self._matrix = np.zeros((_INITIAL_ROWS, self._dimension))
        if len(entry.embedding) != self._dimension:
            self._odd_vectors[address] = entry.embedding
            return
        row = self._free_rows.pop() if self._free_rows else self._grow()
        self._matrix[row] = _unit(entry.embedding)
        self._rows[address] = row

    def _remove(self, address: Address) -> None:
        entry = self._entries.pop(address, None)
        if entry is None:
            return
        _discard(self._by_writer, entry.writer, address)
        for tag in entry.tags:
            _discard(self._postings, tag, address)
        row = self._rows.pop(address, None)
        if row is not None:
            self._free_rows.append(row)
        self._odd_vectors.pop(address, None)

    def _grow(self) -> int:
        # Called only when no row is free, so the rows in use are 0 .. used - 1.
        used = len(self._rows)
        if used == self._matrix.shape[0]:
            bigger = np.zeros((max(_INITIAL_ROWS, 2 * used), self._matrix.shape[1]))
            bigger[:used] = self._matrix
            self._matrix = bigger
        return used


def _discard(lists: dict[str, set[Address]], name: str, address: Address) -> None:
    members = lists.get(name)
    if members is not None:
        members.discard(address)
        if not members:
            del lists[name]


def _unit(vector: Sequence[float]) -> Vector:
    array = np.asarray(vector, dtype=np.float64)
    norm = math.sqrt(float(array @ array))
    # A zero vector stays zero, so it scores 0.0 as cosine() returns.
    return array / norm if norm > 0 else array
