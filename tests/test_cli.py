"""The ``dyntaskmas`` command: exit codes, one-line errors, text and JSON output.

Most tests call :func:`dyntaskmas.cli.main` in this process. ``main`` runs
its own event loop, so the scripted server for whole runs runs on another
loop in a background thread. A few tests start the installed command as a
subprocess to check the real exit status and that stderr has no traceback.
Every endpoint is a server on 127.0.0.1 that the test starts, or a loopback
port that nothing listens on.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dyntaskmas.cli import (
    EXIT_OK,
    EXIT_RUN_FAILED,
    EXIT_USAGE,
    main,
    read_requests,
)
from dyntaskmas.errors import ConfigError
from dyntaskmas.limits import MAX_REQUEST_CHARS
from dyntaskmas.llm.embedded import check_llama_cpp_server
from dyntaskmas.llm.endpoint import MODEL_ENV_VAR
from dyntaskmas.llm.scripted import Handler, ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.runner import BASE_URL_ENV_VAR
from shared_paths import PARALLELQA

COMMAND = Path(sys.executable).parent / "dyntaskmas"
REQUEST = "Which is deeper, the Mariana Trench or the Puerto Rico Trench?"
FINAL_ANSWER = "The Mariana Trench is deeper."
TASK_FIELDS = {"id", "description", "role", "depends_on", "state", "agent"}


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the caller's endpoint settings out, so runs only reach test servers."""
    monkeypatch.delenv(BASE_URL_ENV_VAR, raising=False)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)


def plan_reply() -> str:
    subtasks = [
        {
            "id": f"s{k}",
            "description": f"Find the depth of trench {k}",
            "role": "researcher",
            "depends_on": [],
            "atomic": True,
            "cost": "small",
            "output_size": "short",
        }
        for k in (1, 2)
    ]
    return json.dumps({"subtasks": subtasks})


def is_answer_request(request: ScriptedRequest) -> bool:
    return request.response_format is None and request.last_user_text.startswith("Request: ")


def answering(request: ScriptedRequest) -> ScriptedReply:
    """Reply to plan calls with two subtasks and to work calls with a fact.

    The synthesis call gets FINAL_ANSWER.
    """
    if request.response_format is not None:
        return ScriptedReply(text=plan_reply())
    if is_answer_request(request):
        return ScriptedReply(text=FINAL_ANSWER)
    return ScriptedReply(text="about 10 km")


def failing_answer(request: ScriptedRequest) -> ScriptedReply:
    """Reply like :func:`answering`, but reject the synthesis call with HTTP 400."""
    if is_answer_request(request):
        return ScriptedReply(status=400, error_message="answer rejected by the test")
    return answering(request)


class ThreadedServer:
    """A ScriptedLLMServer running on its own event loop in a daemon thread."""

    def __init__(self, handler: Handler) -> None:
        self.server = ScriptedLLMServer(handler)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> ScriptedLLMServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self.server

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def server() -> Iterator[ScriptedLLMServer]:
    with ThreadedServer(answering) as running:
        yield running


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Call main in this process and return the exit code, stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        # argparse exits on its own errors.
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def closed_port() -> int:
    """Return a loopback port that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def check_run_json(data: dict[str, Any], request: str) -> None:
    """Check the fields of one run's JSON output against the scripted replies."""
    assert data["request"] == request
    assert data["answer"] == FINAL_ANSWER
    assert data["status"] == "succeeded"
    assert data["makespan_s"] > 0
    assert data["sequential_s"] > 0
    assert {task["id"] for task in data["tasks"]} == {"t.plan", "t.1", "t.2", "answer"}
    for task in data["tasks"]:
        assert set(task) >= TASK_FIELDS
        assert 0.0 <= task["started_at"] <= task["finished_at"] <= data["makespan_s"]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop(BASE_URL_ENV_VAR, None)
    env.pop(MODEL_ENV_VAR, None)
    return env


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    if not COMMAND.is_file():
        pytest.skip(f"the dyntaskmas command is not installed next to {sys.executable}")
    return subprocess.run(
        [str(COMMAND), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_env(),
        check=False,
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert lines[0].startswith("dyntaskmas")
    assert "error: " in lines[0]
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- options and input errors -------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--agents", "0"], ["--agents", "got 0"]),
        (["--agents", "many"], ["--agents", "'many'"]),
        (["--concurrency", "0"], ["--concurrency", "got 0"]),
        (["--concurrency", "lots"], ["--concurrency", "'lots'", "'auto'"]),
        (["--max-depth", "0"], ["--max-depth", "got 0"]),
        (["--max-subtasks", "1"], ["--max-subtasks", "got 1"]),
        (["--max-tokens", "0"], ["--max-tokens", "got 0"]),
        (["--local-servers", "0"], ["--local-servers", "got 0"]),
        (["--timeout", "-1"], ["--timeout", "got -1.0"]),
        (["--weighting", "cubic"], ["--weighting", "'cubic'"]),
        (["--base-url", "ftp://127.0.0.1:21/v1"], ["'ftp://127.0.0.1:21/v1'"]),
        (["--base-url", "http://127.0.0.1:9/v1", "--model-file", "m.gguf"], ["model file"]),
    ],
)
def test_bad_option_exits_2(
    args: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["run", REQUEST, *args], capsys)

    assert code == EXIT_USAGE
    assert out == ""
    assert_one_line_error(err, *fragments)


def test_limit_zero_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests = write(tmp_path / "requests.txt", "first\nsecond\n")

    code, _, err = run_main(["run", "--input", requests, "--limit", "0"], capsys)

    assert code == EXIT_USAGE
    assert_one_line_error(err, "--limit", "got 0")


def test_limit_without_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["run", "--limit", "2", "a request"], capsys)

    assert code == EXIT_USAGE
    assert_one_line_error(err, "--limit", "--input")


def test_empty_request_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["run", "   "], capsys)

    assert code == EXIT_USAGE
    assert_one_line_error(err, "empty")


def test_too_long_request_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    too_long = "x" * (MAX_REQUEST_CHARS + 1)

    code, _, err = run_main(["run", too_long], capsys)

    assert code == EXIT_USAGE
    assert_one_line_error(err, f"{MAX_REQUEST_CHARS + 1} characters", str(MAX_REQUEST_CHARS))


def test_missing_request_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(["run"], capsys)

    assert code == EXIT_USAGE
    assert_one_line_error(err, "request", "--input")


@pytest.mark.parametrize(
    ("name", "content", "fragments"),
    [
        ("empty.txt", "", ["contains no requests"]),
        ("blank.txt", "\n  \n", ["contains no requests"]),
        ("empty.json", "[]", ["contains no requests"]),
        ("broken.json", '["first", ', ["not valid JSON", "line 1"]),
        ("object.json", '{"question": "Why?"}', ["does not hold a JSON list"]),
        ("numbers.json", "[1, 2]", ["item 0", "'question'"]),
        ("no_question.json", '[{"query": "Why?"}]', ["item 0", "'question'"]),
        ("nothing.json", "", ["not valid JSON"]),
        # Text that opens like JSON is read as JSON whatever the file's name.
        ("object.txt", '{"question": "Why?"}', ["does not hold a JSON list"]),
        ("blank_item.txt", '["first", "  "]', ["request 2", "empty"]),
    ],
)
def test_bad_input_file_exits_2(
    name: str,
    content: str,
    fragments: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path / name, content)

    code, out, err = run_main(["run", "--input", path], capsys)

    assert code == EXIT_USAGE
    assert out == ""
    assert_one_line_error(err, repr(path), *fragments)


def test_text_line_starting_with_bracket(tmp_path: Path) -> None:
    path = tmp_path / "requests.txt"
    path.write_text("[urgent] What is 2+2?\nWhat is 3+3?\n", encoding="utf-8")

    requests = read_requests(path)

    assert requests == ["[urgent] What is 2+2?", "What is 3+3?"]


def test_input_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2+2?\n\nWhat is 3+3?\n"))

    requests = read_requests(Path("-"))

    assert requests == ["What is 2+2?", "What is 3+3?"]


def test_missing_input_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "absent.txt")

    code, _, err = run_main(["run", "--input", path], capsys)

    assert code == EXIT_USAGE
    assert_one_line_error(err, repr(path), "does not exist")


def test_unreachable_endpoint_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"

    code, out, err = run_main(["run", REQUEST, "--base-url", base_url], capsys)

    assert code == EXIT_USAGE
    assert out == ""
    assert_one_line_error(err, base_url)


def _llama_skip_reason() -> str | None:
    try:
        check_llama_cpp_server()
    except ConfigError as exc:
        return f"llama-cpp-python's server is not available: {exc}"
    return None


@pytest.mark.skipif(_llama_skip_reason() is not None, reason=_llama_skip_reason() or "")
def test_missing_model_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model_file = str(tmp_path / "missing.gguf")

    code, _, err = run_main(["run", REQUEST, "--model-file", model_file], capsys)

    assert code == EXIT_USAGE
    assert_one_line_error(err, model_file, "does not exist")


# --- runs against a scripted server ------------------------------------------


def test_json_output_of_one_request(
    server: ScriptedLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["run", REQUEST, "--base-url", server.base_url, "--json"], capsys)

    results = json_lines(out)
    assert code == EXIT_OK
    assert err == ""
    assert len(results) == 1
    check_run_json(results[0], REQUEST)


@pytest.mark.parametrize(("flags", "streamed"), [([], True), (["--no-stream"], False)])
def test_stream_option_reaches_requests(
    server: ScriptedLLMServer,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    streamed: bool,
) -> None:
    code, out, _ = run_main(["run", REQUEST, "--base-url", server.base_url, *flags], capsys)

    assert code == EXIT_OK
    assert f"Answer:\n  {FINAL_ANSWER}" in out
    assert server.calls
    assert {call.request.stream for call in server.calls} == {streamed}


def test_text_output_of_one_request(
    server: ScriptedLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(["run", REQUEST, "--base-url", server.base_url], capsys)

    assert code == EXIT_OK
    assert out.startswith(f"Request: {REQUEST}\nAnswer:\n  {FINAL_ANSWER}")
    assert "Task graph: 4 tasks" in out
    assert "Run succeeded" in out


def test_text_file_runs_each_line(
    server: ScriptedLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["Which is longer, the Nile or the Amazon?", "Which is taller, K2 or Everest?"]
    path = write(tmp_path / "requests.txt", "\n".join(lines) + "\n\n")

    code, out, _ = run_main(
        ["run", "--input", path, "--base-url", server.base_url, "--json"], capsys
    )

    results = json_lines(out)
    assert code == EXIT_OK
    assert len(results) == 2
    for data, line in zip(results, lines, strict=True):
        check_run_json(data, line)


def test_text_file_output_numbers_requests(
    server: ScriptedLLMServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["Which is longer, the Nile or the Amazon?", "Which is taller, K2 or Everest?"]
    path = write(tmp_path / "requests.txt", "\n".join(lines))

    code, out, _ = run_main(["run", "--input", path, "--base-url", server.base_url], capsys)

    assert code == EXIT_OK
    assert f"=== Request 1 of 2: {lines[0]}" in out
    assert f"=== Request 2 of 2: {lines[1]}" in out


@pytest.mark.skipif(not PARALLELQA.is_file(), reason=f"the ParallelQA file {PARALLELQA} is absent")
def test_parallelqa_file_with_limit(
    server: ScriptedLLMServer, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = [item["question"] for item in json.loads(PARALLELQA.read_text(encoding="utf-8"))]

    code, out, _ = run_main(
        [
            "run",
            "--input",
            str(PARALLELQA),
            "--limit",
            "2",
            "--base-url",
            server.base_url,
            "--json",
        ],
        capsys,
    )

    results = json_lines(out)
    assert code == EXIT_OK
    assert len(results) == 2
    for data, question in zip(results, questions[:2], strict=True):
        check_run_json(data, question)
    assert sum(1 for call in server.calls if is_answer_request(call.request)) == 2


def test_run_without_answer_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with ThreadedServer(failing_answer) as server:
        code, out, _ = run_main(["run", REQUEST, "--base-url", server.base_url, "--json"], capsys)

    results = json_lines(out)
    assert code == EXIT_RUN_FAILED
    assert len(results) == 1
    assert results[0]["answer"] is None
    assert results[0]["status"] == "failed"
    assert any("answer rejected by the test" in note for note in results[0]["notes"])


# --- the installed command ----------------------------------------------------


def test_command_bad_option_exit_status() -> None:
    completed = run_command("run", REQUEST, "--agents", "0")

    assert completed.returncode == EXIT_USAGE
    assert completed.stdout == ""
    assert_one_line_error(completed.stderr, "got 0")


def test_command_unknown_weighting_exit_status() -> None:
    completed = run_command("run", REQUEST, "--weighting", "cubic")

    assert completed.returncode == EXIT_USAGE
    assert_one_line_error(completed.stderr, "'cubic'")


def test_command_unreachable_endpoint_exit_status() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"

    completed = run_command("run", REQUEST, "--base-url", base_url)

    assert completed.returncode == EXIT_USAGE
    assert_one_line_error(completed.stderr, base_url)


def test_command_json_run(server: ScriptedLLMServer) -> None:
    completed = run_command("run", REQUEST, "--base-url", server.base_url, "--json")

    results = json_lines(completed.stdout)
    assert completed.returncode == EXIT_OK
    assert completed.stderr == ""
    assert len(results) == 1
    check_run_json(results[0], REQUEST)
