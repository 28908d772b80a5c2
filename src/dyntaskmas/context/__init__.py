"""Semantic-aware context management: what each agent's prompt contains.

- :mod:`~dyntaskmas.context.manager`: the façade the engine calls (publish, context_for).
- :mod:`~dyntaskmas.context.scopes`, :mod:`~dyntaskmas.context.entries`: the scope forest
  and versioned entries.
- :mod:`~dyntaskmas.context.repository`: reads across scopes, writes through commit.
- :mod:`~dyntaskmas.context.commit`, :mod:`~dyntaskmas.context.merge`: two-phase commit
  across stores and the merge policies for parallel writes.
- :mod:`~dyntaskmas.context.stores`, :mod:`~dyntaskmas.context.sqlite_store`,
  :mod:`~dyntaskmas.context.redis_store`: the store protocol and its memory, SQLite
  and Redis implementations.
- :mod:`~dyntaskmas.context.analyser`: tags of texts; :mod:`~dyntaskmas.context.relevance`:
  Jaccard and the θ filter; :mod:`~dyntaskmas.context.retrieval`: token budgets, cosine
  ranking, truncation; :mod:`~dyntaskmas.context.embedders`: text to vectors.

Names are imported on first use, so that importing one part does not load
redis-py or the ``openai`` SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyntaskmas._lazy import lazy_exports

if TYPE_CHECKING:
    from dyntaskmas.context.analyser import SemanticAnalyser, Tagging, normalise_tag
    from dyntaskmas.context.commit import (
        CommitCoordinator,
        CommitResult,
        StoreRouter,
        Update,
        Write,
    )
    from dyntaskmas.context.embedders import (
        Embedder,
        HashingEmbedder,
        OnnxMiniLMEmbedder,
        OpenAIEmbedder,
    )
    from dyntaskmas.context.entries import Entry, StagedWrite
    from dyntaskmas.context.manager import (
        ContextManager,
        ContextStats,
        PublishResult,
    )
    from dyntaskmas.context.merge import MergePolicy
    from dyntaskmas.context.redis_store import RedisStore
    from dyntaskmas.context.relevance import DEFAULT_THETA, is_relevant, jaccard
    from dyntaskmas.context.repository import ContextRepository
    from dyntaskmas.context.retrieval import (
        Candidate,
        ContextSelection,
        HeuristicTokenCounter,
        TokenCounter,
        context_budget,
        select_context,
    )
    from dyntaskmas.context.sqlite_store import SQLiteStore
    from dyntaskmas.context.stores import ContextStore, MemoryStore

_MODULE_OF: dict[str, str] = {
    "Candidate": "retrieval",
    "CommitCoordinator": "commit",
    "CommitResult": "commit",
    "ContextManager": "manager",
    "ContextRepository": "repository",
    "ContextSelection": "retrieval",
    "ContextStats": "manager",
    "ContextStore": "stores",
    "DEFAULT_THETA": "relevance",
    "Embedder": "embedders",
    "Entry": "entries",
    "HashingEmbedder": "embedders",
    "HeuristicTokenCounter": "retrieval",
    "MemoryStore": "stores",
    "MergePolicy": "merge",
    "OnnxMiniLMEmbedder": "embedders",
    "OpenAIEmbedder": "embedders",
    "PublishResult": "manager",
    "RedisStore": "redis_store",
    "SQLiteStore": "sqlite_store",
    "SemanticAnalyser": "analyser",
    "StagedWrite": "entries",
    "StoreRouter": "commit",
    "Tagging": "analyser",
    "TokenCounter": "retrieval",
    "Update": "commit",
    "Write": "commit",
    "context_budget": "retrieval",
    "is_relevant": "relevance",
    "jaccard": "relevance",
    "normalise_tag": "analyser",
    "select_context": "retrieval",
}

__all__ = [
    "DEFAULT_THETA",
    "Candidate",
    "CommitCoordinator",
    "CommitResult",
    "ContextManager",
    "ContextRepository",
    "ContextSelection",
    "ContextStats",
    "ContextStore",
    "Embedder",
    "Entry",
    "HashingEmbedder",
    "HeuristicTokenCounter",
    "MemoryStore",
    "MergePolicy",
    "OnnxMiniLMEmbedder",
    "OpenAIEmbedder",
    "PublishResult",
    "RedisStore",
    "SQLiteStore",
    "SemanticAnalyser",
    "StagedWrite",
    "StoreRouter",
    "Tagging",
    "TokenCounter",
    "Update",
    "Write",
    "context_budget",
    "is_relevant",
    "jaccard",
    "normalise_tag",
    "select_context",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals())
