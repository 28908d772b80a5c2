"""Run configuration files: endpoints, roles, limits and prices in TOML.

:func:`load_config` reads and checks a file; :func:`apply_config` puts it
into :class:`~dyntaskmas.runner.RunOptions`. This module owns the file's
shape and its error messages, not how endpoints are opened. Example::

    [[endpoint]]
    name = "local"
    base_url = "http://127.0.0.1:8000/v1"
    model = "llama3.1"               # optional when the server lists one model
    api_key_env = "LOCAL_API_KEY"    # or api_key = "...", or neither
    concurrency = 8                  # optional
    structured_output = "json_object"
    stream = false                   # optional; default: the run's --stream

    [roles]                          # role -> endpoint name, or a table
    researcher = "local"
    critic = { endpoint = "local", description = "finds mistakes in a draft" }

    [limits]                         # any of LIMIT_KEYS
    agents = 8
    theta = 0.3

    [prices."llama3.1"]              # US dollars per million tokens
    prompt_per_million = 0.0
    completion_per_million = 0.0

An API key comes from the variable named by ``api_key_env`` or from
``api_key`` in the file, and never from the command line. Keys are kept out
of ``repr`` and of the journal: a resumed run reads the file again.

Every problem raises :class:`~dyntaskmas.errors.ConfigError` with one line
that names the file, the key and the value, and states what to change.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.endpoint import STRUCTURED_OUTPUT_MODES, StructuredOutputMode

if TYPE_CHECKING:
    from dyntaskmas.runner import RunOptions

#: The role that plans; it may be mapped to an endpoint like any other role.
PLANNER_ROLE_NAME = "planner"

#: Keys of ``[limits]`` and their types; each is the RunOptions field of that name.
LIMIT_KEYS: Mapping[str, type] = {
    "agents": int,
    "concurrency": int,
    "max_depth": int,
    "max_subtasks": int,
    "max_tasks": int,
    "work_max_tokens": int,
    "answer_max_tokens": int,
    "request_timeout_s": float,
    "max_attempts": int,
    "retry_base_delay_s": float,
    "theta": float,
    "context_window_tokens": int,
    "weighting": str,
}

_TOP_KEYS = ("endpoint", "roles", "limits", "prices")
_ENDPOINT_KEYS = (
    "name",
    "base_url",
    "model",
    "api_key_env",
    "api_key",
    "concurrency",
    "structured_output",
    "stream",
)
_ROLE_KEYS = ("endpoint", "description")
_PRICE_KEYS = ("prompt_per_million", "completion_per_million")


@dataclass(frozen=True)
class EndpointConfig:
    """One ``[[endpoint]]`` entry; ``api_key`` is already resolved and never shown."""

    name: str
    base_url: str
    model: str | None = None
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    concurrency: int | None = None
    structured_output: StructuredOutputMode = "json_schema"
    #: Whether requests are streamed; None follows the run's option.
    stream: bool | None = None


@dataclass(frozen=True)
class Price:
    """Price of one model's tokens, in US dollars per million tokens."""

    prompt_per_million: float
    completion_per_million: float


@dataclass(frozen=True)
class RunConfig:
    """A checked config file.

    ``role_endpoints`` maps a role to the name of the endpoint its agents
    use; roles not listed use the first endpoint. ``role_descriptions``
    contains only the roles the file adds or redescribes.
    """

    path: str
    endpoints: tuple[EndpointConfig, ...] = ()
    role_endpoints: Mapping[str, str] = field(default_factory=dict)
    role_descriptions: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, Any] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)


def load_config(
    path: Path | str,
    *,
    known_roles: Mapping[str, str],
    environ: Mapping[str, str] | None = None,
) -> RunConfig:
    """Read and check the TOML file at ``path``.

    ``known_roles`` are the roles a run has without the file; a role the
    file maps must be one of them, the planner, or come with a description.
    ``environ`` (default: ``os.environ``) is where ``api_key_env`` is read.
    """
    env = os.environ if environ is None else environ
    where = f"config file {str(path)!r}"
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{where} does not exist; check the path given to --config") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder; pass a TOML file to --config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {where}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}; fix the file") from None

    _check_keys(data, _TOP_KEYS, "", where)
    endpoints = _read_endpoints(data.get("endpoint", []), where, env)
    names = [endpoint.name for endpoint in endpoints]
    role_endpoints, descriptions = _read_roles(data.get("roles", {}), names, known_roles, where)
    return RunConfig(
        path=str(path),
        endpoints=tuple(endpoints),
        role_endpoints=role_endpoints,
        role_descriptions=descriptions,
        limits=_read_limits(data.get("limits", {}), where),
        prices=_read_prices(data.get("prices", {}), where),
    )


def apply_config(options: RunOptions, config: RunConfig) -> RunOptions:
    """Return ``options`` with the file's endpoints, roles, limits and prices.

    A limit in the file replaces the option only where the option still has
    its default, so a value given on the command line wins.
    NOTE: a command-line value equal to the default cannot be distinguished
    from no value, so the file's value is used then.
    """
    defaults = {f.name: f.default for f in fields(options) if f.name in LIMIT_KEYS}
    changes: dict[str, Any] = {
        key: value for key, value in config.limits.items() if getattr(options, key) == defaults[key]
    }
    if config.endpoints:
        if options.base_url is not None:
            raise ConfigError(
                f"both --base-url ({options.base_url}) and the config file {config.path!r} "
                f"name endpoints; drop --base-url or the file's [[endpoint]] entries"
            )
        changes["endpoints"] = config.endpoints
    if config.role_descriptions:
        changes["roles"] = {**options.roles, **config.role_descriptions}
    changes["role_endpoints"] = dict(config.role_endpoints)
    changes["prices"] = dict(config.prices)
    changes["config_file"] = config.path
    try:
        return replace(options, **changes)
    except ConfigError as exc:
        raise ConfigError(f"config file {config.path!r}: {exc}") from None


# --- sections -------------------------------------------------------------------


def _read_endpoints(raw: Any, where: str, env: Mapping[str, str]) -> list[EndpointConfig]:
    if not isinstance(raw, list):
        raise ConfigError(
            f"{where}: 'endpoint' must be an array of tables ([[endpoint]]), got {_type_name(raw)}"
        )
    endpoints: list[EndpointConfig] = []
    for index, entry in enumerate(raw, start=1):
        key = f"endpoint[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: {key} must be a table, got {_type_name(entry)}")
        _check_keys(entry, _ENDPOINT_KEYS, f"{key}.", where)
        for required in ("name", "base_url"):
            if required not in entry:
                raise ConfigError(f"{where}: {key} has no '{required}'; add {required} = \"...\"")
        name = _string(entry, "name", key, where)
        if name in {endpoint.name for endpoint in endpoints}:
            raise ConfigError(f"{where}: endpoint name {name!r} is used twice; rename one")
        key = f"endpoint {name!r}"
        if "api_key" in entry and "api_key_env" in entry:
            raise ConfigError(
                f"{where}: {key} has both 'api_key' and 'api_key_env'; keep one of them"
            )
        api_key_env = _optional_string(entry, "api_key_env", key, where)
        api_key = _optional_string(entry, "api_key", key, where)
        if api_key_env is not None:
            api_key = env.get(api_key_env) or None
            if api_key is None:
                raise ConfigError(
                    f"{where}: {key} reads its API key from the environment variable "
                    f"{api_key_env}, which is not set or empty; export {api_key_env}, or "
                    f"change api_key_env"
                )
        structured = entry.get("structured_output", "json_schema")
        if structured not in STRUCTURED_OUTPUT_MODES:
            raise ConfigError(
                f"{where}: structured_output of {key} is {structured!r}; use one of "
                f"{', '.join(STRUCTURED_OUTPUT_MODES)}"
            )
        concurrency = entry.get("concurrency")
        if concurrency is not None:
            concurrency = _number(concurrency, int, f"concurrency of {key}", where, minimum=1)
        stream = entry.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise ConfigError(
                f"{where}: stream of {key} must be true or false, got {_type_name(stream)}"
            )
        endpoints.append(
            EndpointConfig(
                name=name,
                base_url=_string(entry, "base_url", key, where),
                model=_optional_string(entry, "model", key, where),
                api_key_env=api_key_env,
                api_key=api_key,
                concurrency=concurrency,
                structured_output=structured,
                stream=stream,
            )
        )
    return endpoints


def _read_roles(
    raw: Any, endpoint_names: list[str], known_roles: Mapping[str, str], where: str
) -> tuple[dict[str, str], dict[str, str]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'roles' must be a table, got {_type_name(raw)}")
    role_endpoints: dict[str, str] = {}
    descriptions: dict[str, str] = {}
    for role, value in raw.items():
        key = f"roles.{role}"
        if isinstance(value, dict):
            _check_keys(value, _ROLE_KEYS, f"{key}.", where)
            endpoint = value.get("endpoint")
            description = value.get("description")
            if description is not None:
                if not isinstance(description, str) or not description.strip():
                    raise ConfigError(
                        f"{where}: {key}.description must be a non-empty string, "
                        f"got {description!r}"
                    )
                if role == PLANNER_ROLE_NAME:
                    raise ConfigError(
                        f"{where}: the planner role cannot be redescribed; drop {key}.description"
                    )
                descriptions[role] = description.strip()
        else:
            endpoint = value
        if role not in known_roles and role != PLANNER_ROLE_NAME and role not in descriptions:
            raise ConfigError(
                f"{where}: {key} names the unknown role {role!r}; use one of "
                f"{', '.join(sorted([*known_roles, PLANNER_ROLE_NAME]))}, or add it with "
                f'{role} = {{ endpoint = "...", description = "..." }}'
            )
        if endpoint is None:
            continue
        if not isinstance(endpoint, str):
            raise ConfigError(
                f"{where}: {key} must be an endpoint name (a string), got {_type_name(endpoint)}"
            )
        if endpoint not in endpoint_names:
            listed = ", ".join(repr(name) for name in endpoint_names) or "none"
            raise ConfigError(
                f"{where}: {key} = {endpoint!r} names no [[endpoint]] of the file "
                f"(endpoints: {listed}); fix the name or add the endpoint"
            )
        role_endpoints[role] = endpoint
    return role_endpoints, descriptions


def _read_limits(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'limits' must be a table, got {_type_name(raw)}")
    _check_keys(raw, tuple(LIMIT_KEYS), "limits.", where)
    limits: dict[str, Any] = {}
    for key, value in raw.items():
        expected = LIMIT_KEYS[key]
        if expected is str:
            if not isinstance(value, str):
                raise ConfigError(
                    f"{where}: limits.{key} must be a string, got {_type_name(value)}"
                )
            limits[key] = value
        else:
            limits[key] = _number(value, expected, f"limits.{key}", where)
    return limits


def _read_prices(raw: Any, where: str) -> dict[str, Price]:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'prices' must be a table, got {_type_name(raw)}")
    prices: dict[str, Price] = {}
    for model, entry in raw.items():
        key = f"prices.{model!r}"
        if not isinstance(entry, dict):
            raise ConfigError(
                f"{where}: {key} must be a table with {' and '.join(_PRICE_KEYS)}, "
                f"got {_type_name(entry)}"
            )
        _check_keys(entry, _PRICE_KEYS, f"{key}.", where)
        values = {}
        for name in _PRICE_KEYS:
            if name not in entry:
                raise ConfigError(f"{where}: {key} has no '{name}'; add {name} = 0.0 or more")
            values[name] = _number(entry[name], float, f"{key}.{name}", where, minimum=0)
        prices[model] = Price(**values)
    return prices


# --- values ---------------------------------------------------------------------


def _check_keys(table: Mapping[str, Any], known: tuple[str, ...], prefix: str, where: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(
                f"{where}: unknown key '{prefix}{key}'; the known keys there are {', '.join(known)}"
            )


def _string(table: Mapping[str, Any], key: str, owner: str, where: str) -> str:
    value = table[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"{where}: {key} of {owner} must be a non-empty string, got {_type_name(value)}"
        )
    return value.strip()


def _optional_string(table: Mapping[str, Any], key: str, owner: str, where: str) -> str | None:
    return _string(table, key, owner, where) if key in table else None


def _number(
    value: Any, expected: type, key: str, where: str, *, minimum: float | None = None
) -> Any:
    """Return ``value`` as ``expected`` (int or float), or raise naming ``key``."""
    integer = isinstance(value, int) and not isinstance(value, bool)
    if expected is int and not integer:
        raise ConfigError(f"{where}: {key} must be an integer, got {_type_name(value)}")
    if expected is float:
        if not (integer or isinstance(value, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}: {key} must be a number, got {_type_name(value)}")
        value = float(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: {key} must be >= {minimum:g}, got {value}")
    return value


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    described = names.get(type(value))
    if described is not None:
        return f"{described} ({value!r})"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__
