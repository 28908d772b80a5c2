"""One model endpoint and the flow control that all its callers share.

An :class:`Endpoint` is what agents calling the same server have in common:
its URL, the model and API key to use, the structured-output form the server
accepts, and the :class:`ConcurrencyLimiter` and :class:`BackoffGate` that
every request to it passes through. It sends nothing itself;
:class:`dyntaskmas.llm.openai_backend.OpenAIChatModel` does.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import TYPE_CHECKING, Literal

from dyntaskmas.clock import Clock, MonotonicClock
from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.limiter import BackoffGate, ConcurrencyLimiter

if TYPE_CHECKING:
    from dyntaskmas.llm.attempts import AttemptListener

#: Request form that carries the JSON schema of a structured-output call.
#: ``"json_schema"`` is OpenAI's form,
#: ``{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``.
#: ``"json_object"`` is llama-cpp-python's, ``{"type": "json_object", "schema": ...}``.
#: llama-cpp-python 0.3.36 rejects the OpenAI form with HTTP 500, not 400,
#: so a wrong mode there costs every retry before the error surfaces.
#: ``"none"`` sends no response format, for servers that reject both forms;
#: the caller's prompt and its validation of the output then do all the work.
StructuredOutputMode = Literal["json_schema", "json_object", "none"]

DEFAULT_CONCURRENCY = 4

MODEL_ENV_VAR = "DYNTASKMAS_MODEL"
#: Checked in this order; the first one set and non-empty wins.
API_KEY_ENV_VARS = ("DYNTASKMAS_API_KEY", "OPENAI_API_KEY")
#: Sent when no key is configured. Local servers (llama.cpp, vLLM, Ollama)
#: ignore the key, but the OpenAI SDK requires one.
PLACEHOLDER_API_KEY = "not-needed"

STRUCTURED_OUTPUT_MODES: tuple[StructuredOutputMode, ...] = ("json_schema", "json_object", "none")


class Endpoint:
    """An OpenAI-compatible server, the model to call on it, and its shared limits.

    ``model`` defaults to the ``DYNTASKMAS_MODEL`` environment variable and
    ``api_key`` to ``DYNTASKMAS_API_KEY``, then ``OPENAI_API_KEY``, then a
    placeholder for local servers. ``concurrency`` is the initial limit of
    requests in flight; change it later through ``endpoint.limiter.limit``.
    ``stream`` makes requests streamed, which measures the time to first
    token; it needs a server that sends usage in streams
    (``stream_options.include_usage``), or token counts read 0.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        name: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        structured_output: StructuredOutputMode = "json_schema",
        stream: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.base_url = _validate_base_url(base_url)
        self.name = name if name else _default_name(self.base_url)
        self.model = _resolve_model(model, self.name)
        self._api_key = _resolve_api_key(api_key)

        if structured_output not in STRUCTURED_OUTPUT_MODES:
            raise ConfigError(
                f"structured_output must be one of {sorted(STRUCTURED_OUTPUT_MODES)}, "
                f"got {structured_output!r}"
            )
        self.structured_output: StructuredOutputMode = structured_output
        self.stream = stream

        self.clock: Clock = clock if clock is not None else MonotonicClock()
        # TODO: requests-per-minute and tokens-per-minute limits. Until then
        # a rate-limited endpoint is throttled only by its 429 responses,
        # through the retry policy and the backoff gate.
        self.limiter = ConcurrencyLimiter(concurrency)
        self.gate = BackoffGate(self.clock)
        #: Called with every attempt's record; see :mod:`dyntaskmas.llm.attempts`.
        self.attempt_listeners: list[AttemptListener] = []

    @property
    def api_key(self) -> str:
        """The key sent as the bearer token; kept out of ``repr`` and logs."""
        return self._api_key

    def __repr__(self) -> str:
        return (
            f"Endpoint(name={self.name!r}, base_url={self.base_url!r}, model={self.model!r}, "
            f"concurrency={self.limiter.limit}, structured_output={self.structured_output!r}, "
            f"stream={self.stream})"
        )


def _validate_base_url(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"endpoint base URL {base_url!r} is invalid; "
            f"give an http(s) URL such as 'http://127.0.0.1:8080/v1'"
        )
    return base_url.rstrip("/")


def _default_name(base_url: str) -> str:
    parts = urllib.parse.urlsplit(base_url)
    return parts.netloc or base_url


def _resolve_model(model: str | None, endpoint_name: str) -> str:
    if model:
        return model
    from_env = os.environ.get(MODEL_ENV_VAR, "").strip()
    if from_env:
        return from_env
    raise ConfigError(
        f"no model name for endpoint {endpoint_name!r}; "
        f"pass model=... or set the {MODEL_ENV_VAR} environment variable"
    )


def _resolve_api_key(api_key: str | None) -> str:
    if api_key:
        return api_key
    for variable in API_KEY_ENV_VARS:
        from_env = os.environ.get(variable, "").strip()
        if from_env:
            return from_env
    return PLACEHOLDER_API_KEY
