"""Model backends: everything that talks to an LLM endpoint.

- :mod:`~dyntaskmas.llm.types`: messages, completions and the ChatModel protocol.
- :mod:`~dyntaskmas.llm.retry`: the retry policy (pure).
- :mod:`~dyntaskmas.llm.limiter`: per-endpoint concurrency limit and backoff gate.
- :mod:`~dyntaskmas.llm.attempts`: the shared retry loop and the record of each attempt.
- :mod:`~dyntaskmas.llm.endpoint`: an endpoint and the limits its callers share.
- :mod:`~dyntaskmas.llm.openai_backend`: the OpenAI-compatible HTTP backend.
- :mod:`~dyntaskmas.llm.scripted`: a scripted OpenAI-compatible server for tests.
- :mod:`~dyntaskmas.llm.embedded`: the embedded llama-cpp-python model server.
- :mod:`~dyntaskmas.llm.openai_http`: serving helpers shared by our own HTTP servers.

Names are imported on first use, so that code needing only the data types
does not pay for importing the ``openai`` SDK (about 0.6 s) and aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyntaskmas._lazy import lazy_exports

if TYPE_CHECKING:
    from dyntaskmas.llm.attempts import (
        AttemptRecord,
        LocalFlow,
        RetryingChatModel,
        call_with_retries,
    )
    from dyntaskmas.llm.embedded import EmbeddedServer, find_model_file
    from dyntaskmas.llm.endpoint import Endpoint, StructuredOutputMode
    from dyntaskmas.llm.limiter import BackoffGate, ConcurrencyLimiter
    from dyntaskmas.llm.openai_backend import OpenAIChatModel, translate_error
    from dyntaskmas.llm.retry import RetryPolicy
    from dyntaskmas.llm.scripted import (
        RecordedCall,
        ScriptedLLMServer,
        ScriptedReply,
        ScriptedRequest,
        reply_sequence,
    )
    from dyntaskmas.llm.types import ChatMessage, ChatModel, Completion, Usage

_MODULE_OF: dict[str, str] = {
    "AttemptRecord": "attempts",
    "LocalFlow": "attempts",
    "RetryingChatModel": "attempts",
    "call_with_retries": "attempts",
    "BackoffGate": "limiter",
    "ChatMessage": "types",
    "ChatModel": "types",
    "Completion": "types",
    "ConcurrencyLimiter": "limiter",
    "EmbeddedServer": "embedded",
    "Endpoint": "endpoint",
    "OpenAIChatModel": "openai_backend",
    "RecordedCall": "scripted",
    "RetryPolicy": "retry",
    "ScriptedLLMServer": "scripted",
    "ScriptedReply": "scripted",
    "ScriptedRequest": "scripted",
    "StructuredOutputMode": "endpoint",
    "Usage": "types",
    "find_model_file": "embedded",
    "reply_sequence": "scripted",
    "translate_error": "openai_backend",
}

__all__ = [
    "AttemptRecord",
    "BackoffGate",
    "ChatMessage",
    "ChatModel",
    "Completion",
    "ConcurrencyLimiter",
    "EmbeddedServer",
    "Endpoint",
    "LocalFlow",
    "OpenAIChatModel",
    "RecordedCall",
    "RetryPolicy",
    "RetryingChatModel",
    "ScriptedLLMServer",
    "ScriptedReply",
    "ScriptedRequest",
    "StructuredOutputMode",
    "Usage",
    "call_with_retries",
    "find_model_file",
    "reply_sequence",
    "translate_error",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals())
