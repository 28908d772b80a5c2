"""Runner: options checks, endpoint setup, and whole runs over real HTTP.

Remote runs go to a ScriptedLLMServer on 127.0.0.1. The test marked
``embedded`` starts the real llama-cpp-python server with SmolLM2 and is
skipped when either is missing.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Literal

import pytest

from dyntaskmas.errors import ConfigError, EndpointUnavailableError, ModelFileNotFoundError
from dyntaskmas.llm.embedded import check_llama_cpp_server, find_model_file
from dyntaskmas.llm.endpoint import MODEL_ENV_VAR
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.runner import BASE_URL_ENV_VAR, Runner, RunOptions, options_from_journal
from shared_paths import PARALLELQA

REQUEST = "Which is deeper, the Mariana Trench or the Puerto Rico Trench?"
SUBTASKS = ("Find the depth of the Mariana Trench", "Find the depth of the Puerto Rico Trench")
FINAL_ANSWER = "The Mariana Trench is deeper."


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's endpoint settings out, so runs only reach test servers."""
    monkeypatch.delenv(BASE_URL_ENV_VAR, raising=False)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)


def plan_reply(roles: list[str]) -> str:
    """Return a decomposition into the two independent SUBTASKS."""
    subtasks: list[dict[str, Any]] = [
        {
            "id": f"s{k}",
            "description": description,
            "role": roles[0],
            "depends_on": [],
            "atomic": True,
            "cost": "small",
            "output_size": "short",
        }
        for k, description in enumerate(SUBTASKS, start=1)
    ]
    return json.dumps({"subtasks": subtasks})


def handler(request: ScriptedRequest) -> ScriptedReply:
    """Reply to plan calls with a decomposition and to work calls with a fact.

    The synthesis call gets FINAL_ANSWER.
    """
    if request.response_format is not None:
        return ScriptedReply(text=plan_reply(["researcher"]))
    for line in request.last_user_text.splitlines():
        if line.startswith("Your task: "):
            return ScriptedReply(text=f"done: {line.removeprefix('Your task: ')}", delay_s=0.2)
    return ScriptedReply(text=FINAL_ANSWER)


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_runner_runs_request_on_endpoint() -> None:
    async with ScriptedLLMServer(handler) as server:
        options = RunOptions(base_url=server.base_url, agents=3)
        async with Runner(options) as runner:
            result = await runner.run(REQUEST)

    tasks = {record.id: record for record in result.tasks}
    assert result.answer == FINAL_ANSWER
    assert set(tasks) == {"t.plan", "t.1", "t.2", "answer"}
    assert result.max_concurrency == 2
    assert all(call.request.model == server.model for call in server.calls)
    assert len(server.calls) == 4


async def test_runner_sends_given_model_name() -> None:
    async with ScriptedLLMServer(handler) as server:
        options = RunOptions(base_url=server.base_url, model="other-model", agents=2)
        async with Runner(options) as runner:
            result = await runner.run(REQUEST)

    assert result.answer == FINAL_ANSWER
    assert {call.request.model for call in server.calls} == {"other-model"}


async def test_runner_reads_base_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with ScriptedLLMServer(handler) as server:
        monkeypatch.setenv(BASE_URL_ENV_VAR, server.base_url)
        async with Runner(RunOptions(agents=2)) as runner:
            result = await runner.run(REQUEST)

    assert result.answer == FINAL_ANSWER
    assert len(server.calls) == 4


async def test_unreachable_endpoint_is_reported() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"

    with pytest.raises(EndpointUnavailableError) as caught:
        async with Runner(RunOptions(base_url=base_url)):
            pass

    assert base_url in str(caught.value)


async def test_env_base_url_rejects_model_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model_file = tmp_path / "model.gguf"
    monkeypatch.setenv(BASE_URL_ENV_VAR, f"http://127.0.0.1:{closed_port()}/v1")

    with pytest.raises(ConfigError) as caught:
        async with Runner(RunOptions(model_file=str(model_file))):
            pass

    assert BASE_URL_ENV_VAR in str(caught.value)


def _llama_skip_reason() -> str | None:
    try:
        check_llama_cpp_server()
    except ConfigError as exc:
        return f"llama-cpp-python's server is not available: {exc}"
    return None


@pytest.mark.skipif(_llama_skip_reason() is not None, reason=_llama_skip_reason() or "")
async def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    model_file = tmp_path / "missing.gguf"

    with pytest.raises(ModelFileNotFoundError) as caught:
        async with Runner(RunOptions(model_file=str(model_file))):
            pass

    assert str(model_file) in str(caught.value)


async def test_engine_needs_open_runner() -> None:
    runner = Runner(RunOptions(base_url="http://127.0.0.1:9/v1"))

    with pytest.raises(RuntimeError, match="async with"):
        runner.engine  # noqa: B018 - the property access is what raises


@pytest.mark.parametrize(
    ("options", "value"),
    [
        ({"agents": 0}, "got 0"),
        ({"concurrency": 0}, "got 0"),
        ({"concurrency": "fast"}, "'auto' or an integer"),
        ({"max_depth": 0}, "got 0"),
        ({"max_subtasks": 1}, "got 1"),
        ({"max_subtasks": 51}, "got 51"),
        ({"work_max_tokens": 0}, "got 0"),
        ({"answer_max_tokens": -5}, "got -5"),
        ({"local_servers": 0}, "got 0"),
        ({"request_timeout_s": 0.0}, "got 0.0"),
        ({"weighting": "cubic"}, "'cubic'"),
        ({"role_agents": "balanced"}, "role_agents must be 'auto' or 'fixed'"),
        ({"api_key_env": "DYNTASKMAS_TEST_UNSET_KEY"}, "DYNTASKMAS_TEST_UNSET_KEY"),
        ({"model_file": "m.gguf", "base_url": "http://127.0.0.1:9/v1"}, "model file"),
    ],
)
def test_invalid_options_are_rejected(
    options: dict[str, Any], value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DYNTASKMAS_TEST_UNSET_KEY", raising=False)

    with pytest.raises(ConfigError) as caught:
        RunOptions(**options)

    assert value in str(caught.value)


def _embedded_skip_reason() -> str | None:
    try:
        check_llama_cpp_server()
        find_model_file()
    except ConfigError as exc:
        return f"the embedded model is not available: {exc}"
    if not PARALLELQA.is_file():
        return f"the ParallelQA data set is not at {PARALLELQA}"
    return None


EMBEDDED_SKIP_REASON = _embedded_skip_reason()


@pytest.mark.embedded
@pytest.mark.skipif(EMBEDDED_SKIP_REASON is not None, reason=EMBEDDED_SKIP_REASON or "")
async def test_embedded_model_answers_parallelqa_question() -> None:
    """One ParallelQA question, planned once, with small token limits to bound the time."""
    question = json.loads(PARALLELQA.read_text(encoding="utf-8"))[0]["question"]
    options = RunOptions(
        agents=2,
        max_depth=1,
        max_subtasks=3,
        work_max_tokens=48,
        answer_max_tokens=64,
        local_servers=2,
        request_timeout_s=120.0,
    )

    async with Runner(options) as runner:
        result = await runner.run(question)

    data = result.to_json()
    assert result.answer is not None
    assert result.answer.strip()
    assert len(result.tasks) >= 3
    assert {"t.plan", "answer"} <= {record.id for record in result.tasks}
    assert all(record.state == "done" for record in result.tasks)
    assert data["request"] == question
    assert {"answer", "tasks", "makespan_s", "sequential_s"} <= set(data)
    assert all(task["started_at"] is not None for task in data["tasks"])
    assert data["llm_calls"] >= 3


async def test_runner_adapts_concurrency_by_default() -> None:
    async with (
        ScriptedLLMServer(handler) as server,
        Runner(RunOptions(base_url=server.base_url, agents=3)) as runner,
    ):
        await runner.run(REQUEST)
        allocator = runner.allocator
        endpoint = runner.endpoints[0]

    assert allocator.adjust
    assert allocator.state(endpoint.name).limit == endpoint.limiter.limit
    assert endpoint.limiter.limit <= 3


async def test_runner_fixed_concurrency_only_monitors() -> None:
    async with ScriptedLLMServer(handler) as server:
        options = RunOptions(base_url=server.base_url, agents=3, concurrency=2)
        async with Runner(options) as runner:
            result = await runner.run(REQUEST)
            allocator = runner.allocator
            endpoint = runner.endpoints[0]

    assert result.answer == FINAL_ANSWER
    assert not allocator.adjust
    assert endpoint.limiter.limit == 2


@pytest.mark.parametrize(("role_agents", "moves_agents"), [("auto", True), ("fixed", False)])
async def test_runner_role_agents_option(
    role_agents: Literal["auto", "fixed"], moves_agents: bool
) -> None:
    async with ScriptedLLMServer(handler) as server:
        options = RunOptions(base_url=server.base_url, agents=3, role_agents=role_agents)
        async with Runner(options) as runner:
            allocator = runner.allocator

    assert (allocator.roles is not None) == moves_agents


def test_old_journal_concurrency_none_becomes_agents() -> None:
    options = options_from_journal({"agents": 5, "concurrency": None})

    assert options.concurrency == 5
    assert options_from_journal({"agents": 5}).concurrency == "auto"
