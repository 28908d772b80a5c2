"""Tests of Endpoint: model and API key resolution, validation, shared limits."""

from __future__ import annotations

import pytest

from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.endpoint import PLACEHOLDER_API_KEY, Endpoint

URL = "http://127.0.0.1:8080/v1"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("DYNTASKMAS_MODEL", "DYNTASKMAS_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


def test_explicit_arguments_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNTASKMAS_MODEL", "from-env")
    monkeypatch.setenv("DYNTASKMAS_API_KEY", "env-key")

    endpoint = Endpoint(URL, model="given", api_key="given-key")

    assert endpoint.model == "given"
    assert endpoint.api_key == "given-key"


def test_model_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DYNTASKMAS_MODEL", "from-env")

    assert Endpoint(URL).model == "from-env"


def test_missing_model_rejected() -> None:
    with pytest.raises(ConfigError, match="DYNTASKMAS_MODEL"):
        Endpoint(URL)


def test_dyntaskmas_key_before_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "openai-key")
    assert Endpoint(URL, model="m").api_key == "openai-key"

    monkeypatch.setenv("DYNTASKMAS_API_KEY", "dyntaskmas-key")
    assert Endpoint(URL, model="m").api_key == "dyntaskmas-key"


def test_placeholder_key_for_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "  ")

    assert Endpoint(URL, model="m").api_key == PLACEHOLDER_API_KEY


def test_repr_hides_api_key() -> None:
    endpoint = Endpoint(URL, model="m", api_key="sk-secret")

    assert "sk-secret" not in repr(endpoint)
    assert "127.0.0.1:8080" in repr(endpoint)


@pytest.mark.parametrize("url", ["127.0.0.1:8080/v1", "ftp://127.0.0.1/v1", "http:///v1", ""])
def test_invalid_base_url_rejected(url: str) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        Endpoint(url, model="m")


def test_defaults() -> None:
    endpoint = Endpoint(URL + "/", model="m")

    assert endpoint.base_url == URL
    assert endpoint.name == "127.0.0.1:8080"
    assert endpoint.limiter.limit == 4
    assert endpoint.structured_output == "json_schema"


def test_invalid_structured_output_rejected() -> None:
    with pytest.raises(ConfigError, match="structured_output"):
        Endpoint(URL, model="m", structured_output="grammar")  # type: ignore[arg-type]
