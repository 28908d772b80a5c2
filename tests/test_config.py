"""Config files: what a valid one sets, and the one-line error for each mistake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dyntaskmas.cli import main
from dyntaskmas.config import EndpointConfig, Price, apply_config, load_config
from dyntaskmas.engine.prompts import DEFAULT_ROLES
from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedRequest
from dyntaskmas.runner import Runner, RunOptions, journal_options, options_from_journal

VALID = """
[[endpoint]]
name = "main"
base_url = "http://127.0.0.1:9/v1"
model = "m1"
api_key_env = "DYNTASKMAS_TEST_CONFIG_KEY"
concurrency = 3

[[endpoint]]
name = "fast"
base_url = "http://127.0.0.1:10/v1"
model = "m2"
structured_output = "json_object"

[roles]
researcher = "fast"
critic = { endpoint = "main", description = "finds mistakes in a draft" }

[limits]
agents = 6
theta = 0.25
max_tasks = 40

[prices.m1]
prompt_per_million = 0.5
completion_per_million = 1.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dyntaskmas.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(path: Path) -> object:
    return load_config(path, known_roles=DEFAULT_ROLES, environ={"DYNTASKMAS_TEST_CONFIG_KEY": "k"})


def test_valid_config_sets_endpoints_roles_limits_prices(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, VALID),
        known_roles=DEFAULT_ROLES,
        environ={"DYNTASKMAS_TEST_CONFIG_KEY": "secret-1"},
    )
    main_endpoint, fast = config.endpoints
    assert main_endpoint == EndpointConfig(
        name="main",
        base_url="http://127.0.0.1:9/v1",
        model="m1",
        api_key_env="DYNTASKMAS_TEST_CONFIG_KEY",
        api_key="secret-1",
        concurrency=3,
    )
    assert "secret-1" not in repr(main_endpoint)
    assert fast.structured_output == "json_object"
    assert config.role_endpoints == {"researcher": "fast", "critic": "main"}
    assert config.role_descriptions == {"critic": "finds mistakes in a draft"}
    assert config.prices == {"m1": Price(prompt_per_million=0.5, completion_per_million=1.5)}

    options = apply_config(RunOptions(agents=4, theta=0.6), config)
    assert options.agents == 6
    assert options.theta == 0.6  # given explicitly, so it wins over the file
    assert options.max_tasks == 40
    assert options.roles["critic"] == "finds mistakes in a draft"
    assert options.config_file == str(tmp_path / "dyntaskmas.toml")


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[limit]\nagents = 2\n", "unknown key 'limit'"),
        ("[limits]\nagent = 2\n", "unknown key 'limits.agent'"),
        (
            '[limits]\nagents = "eight"\n',
            "limits.agents must be an integer, got a string ('eight')",
        ),
        ("[limits]\ntheta = true\n", "limits.theta must be a number, got a boolean"),
        ("[limits]\nagents = 0\n", "agents must be >= 1, got 0"),
        ("[limits]\nmax_tasks = 100000\n", "max_tasks must be between 3 and 10000"),
        ("[[endpoint]]\nname = 'a'\n", "endpoint[1] has no 'base_url'"),
        (
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://127.0.0.1:9/v1'\nport = 3\n",
            "unknown key 'endpoint[1].port'",
        ),
        (
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://x/v1'\n"
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://y/v1'\n",
            "endpoint name 'a' is used twice",
        ),
        (
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://x/v1'\nstructured_output = 'xml'\n",
            "structured_output of endpoint 'a' is 'xml'",
        ),
        (
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://x/v1'\nstream = 'yes'\n",
            "stream of endpoint 'a' must be true or false, got a string ('yes')",
        ),
        ("[roles]\nlawyer = 'a'\n", "names the unknown role 'lawyer'"),
        (
            "[[endpoint]]\nname = 'a'\nbase_url = 'http://x/v1'\n[roles]\nresearcher = 'b'\n",
            "roles.researcher = 'b' names no [[endpoint]]",
        ),
        ("[roles]\nresearcher = 3\n", "roles.researcher must be an endpoint name"),
        ("[prices.m]\nprompt_per_million = 1.0\n", "prices.'m' has no 'completion_per_million'"),
        (
            "[prices.m]\nprompt_per_million = -1\ncompletion_per_million = 1\n",
            "prices.'m'.prompt_per_million must be >= 0",
        ),
        ("[prices]\nm = 2\n", "prices.'m' must be a table"),
        ("[limits\n", "is not valid TOML"),
    ],
)
def test_invalid_config_names_key(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        apply_config(RunOptions(), load(path))  # type: ignore[arg-type]
    message = str(caught.value)
    assert named in message
    assert "\n" not in message
    assert str(path) in message


def test_missing_config_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; check the path given to --config"):
        load(tmp_path / "absent.toml")


def test_unset_key_variable_exits_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DYNTASKMAS_TEST_UNSET_KEY", raising=False)
    path = write(
        tmp_path,
        '[[endpoint]]\nname = "remote"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'model = "m"\napi_key_env = "DYNTASKMAS_TEST_UNSET_KEY"\n',
    )

    status = main(["run", "--config", str(path), "--no-journal", "a question"])

    stderr = capsys.readouterr().err
    assert status == 2
    assert "DYNTASKMAS_TEST_UNSET_KEY" in stderr
    assert "not set" in stderr
    assert "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_config_with_base_url_option_is_rejected(tmp_path: Path) -> None:
    config = load(write(tmp_path, VALID))
    with pytest.raises(ConfigError, match="drop --base-url"):
        apply_config(RunOptions(base_url="http://127.0.0.1:9/v1"), config)  # type: ignore[arg-type]


async def test_roles_go_to_their_endpoints(tmp_path: Path) -> None:
    """Researcher tasks reach the second server only; planning and the answer the first."""

    def main_handler(request: ScriptedRequest) -> str:
        if request.response_format is not None:
            return (
                '{"subtasks": [{"id": "s1", "description": "Find fact a", "role": "researcher",'
                ' "depends_on": [], "atomic": true, "cost": "small", "output_size": "short"}]}'
            )
        return "the answer"

    async with (
        ScriptedLLMServer(main_handler) as main_server,
        ScriptedLLMServer(lambda request: "fact a") as research_server,
    ):
        path = write(
            tmp_path,
            f'[[endpoint]]\nname = "main"\nbase_url = "{main_server.base_url}"\n'
            f'model = "{main_server.model}"\n'
            f'[[endpoint]]\nname = "research"\nbase_url = "{research_server.base_url}"\n'
            f'[roles]\nresearcher = "research"\n[limits]\nagents = 2\n',
        )
        options = apply_config(
            RunOptions(journal_dir=str(tmp_path / "journal")),
            load_config(path, known_roles=DEFAULT_ROLES),
        )
        async with Runner(options) as runner:
            result = await runner.run("Find a")

        recorded = journal_options(options)
        resumed = options_from_journal(recorded)

    assert result.answer == "the answer"
    assert len(research_server.calls) == 1
    assert "Find fact a" in research_server.calls[0].request.last_user_text
    assert len(main_server.calls) == 2  # the plan and the answer
    assert all("api_key" not in endpoint for endpoint in recorded["endpoints"])
    assert resumed.endpoints == options.endpoints
    assert resumed.role_endpoints == {"researcher": "research"}


def test_endpoints_without_file_survive_journal_without_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DYNTASKMAS_TEST_ENDPOINT_KEY", "secret-2")
    endpoint = EndpointConfig(
        name="main",
        base_url="http://127.0.0.1:9/v1",
        model="m",
        api_key_env="DYNTASKMAS_TEST_ENDPOINT_KEY",
        api_key="secret-2",
    )
    options = RunOptions(
        endpoints=(endpoint,),
        role_endpoints={"researcher": "main"},
        prices={"m": Price(prompt_per_million=1.0, completion_per_million=2.0)},
    )

    recorded = journal_options(options)
    restored = options_from_journal(json.loads(json.dumps(recorded)))

    assert "secret-2" not in json.dumps(recorded)
    assert restored.endpoints == (endpoint,)
    assert restored.role_endpoints == {"researcher": "main"}
    assert restored.prices == options.prices


async def test_endpoint_stream_key_overrides_run_option(tmp_path: Path) -> None:
    """The endpoint with ``stream = false`` gets plain requests; the other follows the run."""
    async with (
        ScriptedLLMServer(lambda request: "the answer") as plain_server,
        ScriptedLLMServer(lambda request: "the answer") as streamed_server,
    ):
        path = write(
            tmp_path,
            f'[[endpoint]]\nname = "plain"\nbase_url = "{plain_server.base_url}"\n'
            f'model = "m"\nstream = false\n'
            f'[[endpoint]]\nname = "streamed"\nbase_url = "{streamed_server.base_url}"\n'
            f'model = "m"\n[roles]\nresearcher = "streamed"\n',
        )
        config = load_config(path, known_roles=DEFAULT_ROLES)
        options = apply_config(RunOptions(journal=False, stream=True), config)
        async with Runner(options) as runner:
            streams = {endpoint.name: endpoint.stream for endpoint in runner.endpoints}

        resumed = options_from_journal(json.loads(json.dumps(journal_options(options))))

    assert config.endpoints[0].stream is False
    assert config.endpoints[1].stream is None
    assert streams == {"plain": False, "streamed": True}
    assert resumed.endpoints == options.endpoints
    assert resumed.stream is True
