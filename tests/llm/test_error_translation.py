"""Tests that translate_error maps every exception type of the installed openai SDK."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx2
import openai
import openai.resources.embeddings  # loads openai._extras, which defines one more error
import pytest
from openai.types.chat import ChatCompletion

from dyntaskmas.errors import (
    EndpointUnavailableError,
    LLMError,
    LLMRequestError,
    LLMResponseError,
    LLMTimeoutError,
    TransientLLMError,
)
from dyntaskmas.llm.openai_backend import translate_error

URL = "http://127.0.0.1:9/v1/chat/completions"
REQUEST = httpx2.Request("POST", URL)
NOW = 1_700_000_000.0


def response(status: int, headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(status, request=REQUEST, headers=headers or {})


def status_error(
    error_class: type[openai.APIStatusError], status: int, headers: dict[str, str] | None = None
) -> openai.APIStatusError:
    return error_class(
        f"Error code: {status}",
        response=response(status, headers),
        body={"message": "the server's own words", "type": "x", "code": None},
    )


def empty_completion() -> ChatCompletion:
    return ChatCompletion.model_construct(
        id="x", choices=[], created=0, model="m", object="chat.completion"
    )


def bare(error_class: type[BaseException]) -> BaseException:
    """Build an exception whose constructor needs arguments these tests cannot supply."""
    error = error_class.__new__(error_class)
    Exception.__init__(error, f"{error_class.__name__} raised")
    return error


# Every exception class in the SDK, keyed by module and name, with a
# factory and the dyntaskmas error it must become. Errors that no chat
# completion request can raise (client misuse, websockets, webhooks) map to
# the generic LLMError.
CASES: dict[str, tuple[Callable[[], BaseException], type[LLMError]]] = {
    "openai.OpenAIError": (lambda: openai.OpenAIError("misconfigured"), LLMError),
    "openai.APIError": (lambda: openai.APIError("odd", REQUEST, body=None), LLMError),
    "openai.APIConnectionError": (
        lambda: openai.APIConnectionError(request=REQUEST),
        EndpointUnavailableError,
    ),
    "openai.APITimeoutError": (lambda: openai.APITimeoutError(REQUEST), LLMTimeoutError),
    "openai.APIResponseValidationError": (
        lambda: openai.APIResponseValidationError(response(200), body=None),
        LLMResponseError,
    ),
    "openai.APIStatusError": (
        lambda: status_error(openai.APIStatusError, 418),
        LLMRequestError,
    ),
    "openai.BadRequestError": (
        lambda: status_error(openai.BadRequestError, 400),
        LLMRequestError,
    ),
    "openai.AuthenticationError": (
        lambda: status_error(openai.AuthenticationError, 401),
        LLMRequestError,
    ),
    "openai.OAuthError": (
        lambda: openai.OAuthError(response=response(401), body={"error": "invalid_grant"}),
        LLMRequestError,
    ),
    "openai.PermissionDeniedError": (
        lambda: status_error(openai.PermissionDeniedError, 403),
        LLMRequestError,
    ),
    "openai.NotFoundError": (lambda: status_error(openai.NotFoundError, 404), LLMRequestError),
    "openai.ConflictError": (lambda: status_error(openai.ConflictError, 409), LLMRequestError),
    "openai.UnprocessableEntityError": (
        lambda: status_error(openai.UnprocessableEntityError, 422),
        LLMRequestError,
    ),
    "openai.RateLimitError": (
        lambda: status_error(openai.RateLimitError, 429),
        TransientLLMError,
    ),
    "openai.InternalServerError": (
        lambda: status_error(openai.InternalServerError, 502),
        TransientLLMError,
    ),
    "openai.LengthFinishReasonError": (
        lambda: openai.LengthFinishReasonError(completion=empty_completion()),
        LLMResponseError,
    ),
    "openai.ContentFilterFinishReasonError": (
        lambda: openai.ContentFilterFinishReasonError(),
        LLMResponseError,
    ),
    "openai.WebSocketConnectionClosedError": (
        lambda: openai.WebSocketConnectionClosedError("closed", unsent_messages=[]),
        LLMError,
    ),
    "openai.WebSocketQueueFullError": (lambda: openai.WebSocketQueueFullError("full"), LLMError),
    "openai._exceptions.SubjectTokenProviderError": (
        lambda: bare(_sdk_class("openai._exceptions.SubjectTokenProviderError")),
        LLMError,
    ),
    "openai._AmbiguousModuleClientUsageError": (
        lambda: bare(_sdk_class("openai._AmbiguousModuleClientUsageError")),
        LLMError,
    ),
    "openai._response.StreamAlreadyConsumed": (
        lambda: bare(_sdk_class("openai._response.StreamAlreadyConsumed")),
        LLMError,
    ),
    "openai.lib._old_api.APIRemovedInV1": (
        lambda: bare(_sdk_class("openai.lib._old_api.APIRemovedInV1")),
        LLMError,
    ),
    "openai.lib.azure.MutuallyExclusiveAuthError": (
        lambda: bare(_sdk_class("openai.lib.azure.MutuallyExclusiveAuthError")),
        LLMError,
    ),
    "openai._extras._common.MissingDependencyError": (
        lambda: bare(_sdk_class("openai._extras._common.MissingDependencyError")),
        LLMError,
    ),
}


def _subclasses(base: type[BaseException]) -> Iterator[type[BaseException]]:
    for subclass in base.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def _sdk_classes() -> dict[str, type[BaseException]]:
    classes: list[type[BaseException]] = [openai.OpenAIError, *_subclasses(openai.OpenAIError)]
    return {
        f"{error_class.__module__}.{error_class.__qualname__}": error_class
        for error_class in classes
        if error_class.__module__.split(".")[0] == "openai"
    }


def _sdk_class(name: str) -> type[BaseException]:
    return _sdk_classes()[name]


def test_every_sdk_error_has_a_case() -> None:
    unmapped = sorted(set(_sdk_classes()) - set(CASES))

    assert unmapped == [], (
        f"openai exception types without a test case: {unmapped}; decide what "
        f"translate_error must turn each into and add it to CASES"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_sdk_error_translated(name: str) -> None:
    factory, expected = CASES[name]
    error = factory()
    assert type(error) is _sdk_class(name)
    assert isinstance(error, Exception)

    translated = translate_error(error, url=URL, attempts=2, now_epoch_s=NOW)

    assert type(translated) is expected
    assert str(translated)


@pytest.mark.parametrize(
    ("error_class", "status"),
    [
        (openai.BadRequestError, 400),
        (openai.NotFoundError, 404),
        (openai.RateLimitError, 429),
        (openai.InternalServerError, 500),
    ],
)
def test_status_error_message_has_server_words(
    error_class: type[openai.APIStatusError], status: int
) -> None:
    translated = translate_error(
        status_error(error_class, status), url=URL, attempts=1, now_epoch_s=NOW
    )

    assert "the server's own words" in str(translated)
    assert f"HTTP {status}" in str(translated)
    assert URL in str(translated)
    assert translated.status_code == status


@pytest.mark.parametrize(("status", "retryable"), [(408, True), (503, True), (418, False)])
def test_generic_status_error_by_code(status: int, retryable: bool) -> None:
    translated = translate_error(
        status_error(openai.APIStatusError, status), url=URL, attempts=1, now_epoch_s=NOW
    )

    assert isinstance(translated, TransientLLMError) is retryable
    assert isinstance(translated, LLMRequestError) is not retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:40 GMT"}, 20.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({}, None),
    ],
)
def test_retry_after_read_from_response(headers: dict[str, str], expected: float | None) -> None:
    error = status_error(openai.RateLimitError, 429, headers)

    translated = translate_error(error, url=URL, attempts=1, now_epoch_s=NOW)

    assert isinstance(translated, TransientLLMError)
    assert translated.retry_after_s == expected


def test_fallback_url_used_without_request() -> None:
    translated = translate_error(
        ValueError("unexpected"), url="http://127.0.0.1:9/v1/x", attempts=1, now_epoch_s=NOW
    )

    assert type(translated) is LLMError
    assert "http://127.0.0.1:9/v1/x" in str(translated)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (openai.APIConnectionError(request=REQUEST), TransientLLMError),
        (openai.APIError("overloaded", REQUEST, body=None), TransientLLMError),
        (openai.APITimeoutError(request=REQUEST), LLMTimeoutError),
        (status_error(openai.BadRequestError, 400), LLMRequestError),
    ],
)
def test_error_inside_started_stream(error: Exception, expected: type[LLMError]) -> None:
    """A connection error inside a started stream is a cut stream; other errors keep their kind."""
    translated = translate_error(error, url=URL, attempts=3, now_epoch_s=NOW, stream_chunks=7)

    assert type(translated) is expected


def test_cut_stream_message_names_chunks_and_attempt() -> None:
    error = openai.APIConnectionError(request=REQUEST)

    translated = translate_error(error, url=URL, attempts=3, now_epoch_s=NOW, stream_chunks=7)

    assert "broke off after 7 chunks, on attempt 3" in str(translated)
    assert URL in str(translated)
