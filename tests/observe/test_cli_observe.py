"""The observing options of the ``dyntaskmas`` command: accounting, trace, report, plan.

``main`` runs its own event loop, so the scripted server runs on another
loop in a background thread, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dyntaskmas.cli import EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, main
from dyntaskmas.llm.endpoint import MODEL_ENV_VAR
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.runner import BASE_URL_ENV_VAR

REQUEST = "Which is deeper, the Mariana Trench or the Puerto Rico Trench?"


def _plan() -> str:
    subtasks = [
        {
            "id": f"s{k}",
            "description": f"Find the depth of trench {k}",
            "role": "researcher",
            "depends_on": [] if k < 3 else ["s1", "s2"],
            "atomic": True,
            "cost": "small",
            "output_size": "short",
        }
        for k in (1, 2, 3)
    ]
    return json.dumps({"subtasks": subtasks})


class UsageServer:
    """A scripted server on its own thread; each reply reports different token usage.

    ``usage`` records the (prompt, completion) tokens of every reply sent.
    """

    def __init__(self) -> None:
        self.usage: list[tuple[int, int]] = []
        # While true, the synthesis call (no response format, "Request: " prompt) fails.
        self.fail_answer = False
        # Replaces the plan in replies to plan calls, when set.
        self.plan_text: str | None = None
        self._lock = threading.Lock()
        self.server = ScriptedLLMServer(self._reply)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _reply(self, request: ScriptedRequest) -> ScriptedReply:
        is_answer = request.response_format is None and request.last_user_text.startswith(
            "Request: "
        )
        if is_answer and self.fail_answer:
            # An error response reports no usage, so it is not recorded.
            return ScriptedReply(status=400, error_message="answer rejected by the test")
        with self._lock:
            index = len(self.usage)
            usage = (100 + 7 * index, 10 + 3 * index)
            self.usage.append(usage)
        text = (
            (self.plan_text or _plan()) if request.response_format is not None else f"fact {index}"
        )
        return ScriptedReply(text=text, prompt_tokens=usage[0], completion_tokens=usage[1])

    def __enter__(self) -> UsageServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self._loop).result(timeout=10)
        return self

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture(autouse=True)
def no_endpoint_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BASE_URL_ENV_VAR, raising=False)
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)


@pytest.fixture
def usage_server() -> Iterator[UsageServer]:
    with UsageServer() as running:
        yield running


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_token_totals_match_server(
    usage_server: UsageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    base_url = usage_server.server.base_url
    code, out, err = run_main(["run", REQUEST, "--base-url", base_url, "--json"], capsys)

    result = json.loads(out)
    accounting = result["accounting"]
    assert code == EXIT_OK
    assert err == ""
    assert accounting["prompt_tokens"] == sum(p for p, _ in usage_server.usage)
    assert accounting["completion_tokens"] == sum(c for _, c in usage_server.usage)
    assert accounting["calls"] == len(usage_server.usage)
    assert result["usage"]["prompt_tokens"] == accounting["prompt_tokens"]
    by_task = accounting["by_task"].values()
    assert sum(item["prompt_tokens"] for item in by_task) == accounting["prompt_tokens"]
    by_agent = accounting["by_agent"].values()
    assert sum(item["completion_tokens"] for item in by_agent) == accounting["completion_tokens"]
    assert "cost" not in accounting


def test_prices_give_costs(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = tmp_path / "prices.toml"
    model = usage_server.server.model
    prices.write_text(f'["{model}"]\nprompt_per_million = 2.0\ncompletion_per_million = 8.0\n')
    base_url = usage_server.server.base_url
    argv = ["run", REQUEST, "--base-url", base_url, "--json", "--prices", str(prices)]
    code, out, _ = run_main(argv, capsys)

    accounting = json.loads(out)["accounting"]
    prompt = sum(p for p, _ in usage_server.usage)
    completion = sum(c for _, c in usage_server.usage)
    assert code == EXIT_OK
    assert accounting["cost"] == pytest.approx((2.0 * prompt + 8.0 * completion) / 1e6)
    assert accounting["unpriced_models"] == []


def test_config_prices_give_costs(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "dyntaskmas.toml"
    model = usage_server.server.model
    config.write_text(
        f'[[endpoint]]\nname = "main"\nbase_url = "{usage_server.server.base_url}"\n'
        f'model = "{model}"\n\n'
        f'[prices."{model}"]\nprompt_per_million = 1.0\ncompletion_per_million = 4.0\n'
    )
    code, out, _ = run_main(["run", REQUEST, "--config", str(config), "--json"], capsys)

    accounting = json.loads(out)["accounting"]
    prompt = sum(p for p, _ in usage_server.usage)
    completion = sum(c for _, c in usage_server.usage)
    assert code == EXIT_OK
    assert accounting["cost"] == pytest.approx((1.0 * prompt + 4.0 * completion) / 1e6)


def test_text_output_shows_tokens(
    usage_server: UsageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_main(["run", REQUEST, "--base-url", usage_server.server.base_url], capsys)

    prompt = sum(p for p, _ in usage_server.usage)
    assert code == EXIT_OK
    assert f"Tokens: {prompt:,} prompt" in out
    # Not a terminal, so no live progress.
    assert err == ""


def test_bad_price_file_exits_2(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('["m"]\nprompt_per_million = "cheap"\ncompletion_per_million = 1\n')
    argv = ["run", REQUEST, "--base-url", usage_server.server.base_url, "--prices", str(prices)]

    code, out, err = run_main(argv, capsys)

    assert code == EXIT_USAGE
    assert out == ""
    assert err.count("\n") == 1
    assert "prompt_per_million of model 'm' must be a number" in err


def test_trace_and_report_written(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, report = tmp_path / "trace.json", tmp_path / "report.html"
    argv = ["run", REQUEST, "--base-url", usage_server.server.base_url, "--json"]
    argv += ["--trace", str(trace), "--report", str(report)]

    code, out, _ = run_main(argv, capsys)

    result = json.loads(out)
    events = json.loads(trace.read_text())["traceEvents"]
    task_events = [e for e in events if e.get("cat") == "task" and e["ph"] == "X"]
    ran = [t for t in result["tasks"] if t["agent"] is not None]
    assert code == EXIT_OK
    assert sorted(e["name"] for e in task_events) == sorted(t["id"] for t in ran)
    plan = {task["id"]: task for task in _report_data(report)["tasks"]}["t.plan"]
    assert len(plan["calls"]) == 1
    assert plan["calls"][0]["messages"][0][0] == "system"
    assert plan["start"] <= plan["calls"][0]["start"] <= plan["calls"][0]["end"] <= plan["end"]


def test_report_command_from_journal(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal"
    argv = ["run", REQUEST, "--base-url", usage_server.server.base_url]
    argv += ["--journal-dir", str(journal), "--report", str(tmp_path / "live.html")]
    assert run_main(argv, capsys)[0] == EXIT_OK
    code, out, _ = run_main(["runs", "--journal-dir", str(journal), "--json"], capsys)
    run_id = json.loads(out.splitlines()[0])["run_id"]

    output = tmp_path / "journal.html"
    argv = ["report", run_id, "-o", str(output), "--journal-dir", str(journal)]
    code, _, err = run_main(argv, capsys)

    assert code == EXIT_OK
    assert "wrote" in err
    live = (tmp_path / "live.html").read_text()
    # The live report and the journal's have the same data but the run id.
    assert output.read_text() == live


def test_report_of_unknown_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / "journal"
    journal.mkdir()
    argv = ["report", "no-such-run", "-o", str(tmp_path / "r.html"), "--journal-dir", str(journal)]

    code, _, err = run_main(argv, capsys)

    assert code == EXIT_USAGE
    assert err.startswith("dyntaskmas: error: ")
    assert err.count("\n") == 1


def test_report_to_missing_folder_exits_2(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", REQUEST, "--base-url", usage_server.server.base_url]
    argv += ["--report", str(tmp_path / "missing" / "r.html")]

    code, _, err = run_main(argv, capsys)

    assert code == EXIT_USAGE
    assert "does not exist" in err
    assert usage_server.usage == []


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "t.3  [researcher] Find the depth of trench 3 (after t.1, t.2)"),
        ("mermaid", "flowchart LR"),
        ("dot", '"t.1" -> "t.3";'),
    ],
)
def test_plan_formats(
    usage_server: UsageServer, fmt: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["plan", REQUEST, "--base-url", usage_server.server.base_url, "--format", fmt]

    code, out, _ = run_main(argv, capsys)

    assert code == EXIT_OK
    assert expected in out
    # Only the plan call was made: nothing ran.
    assert len(usage_server.usage) == 1


def test_plan_json(usage_server: UsageServer, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", REQUEST, "--base-url", usage_server.server.base_url, "--format", "json"]

    code, out, _ = run_main(argv, capsys)

    plan = json.loads(out)
    assert code == EXIT_OK
    assert [task["id"] for task in plan["tasks"]] == ["t.1", "t.2", "t.3"]
    assert plan["tasks"][2]["depends_on"] == ["t.1", "t.2"]
    assert plan["usage"]["prompt_tokens"] == usage_server.usage[0][0]


def _report_data(path: Path) -> dict[str, Any]:
    page = path.read_text()
    start = page.index('id="run-data">') + len('id="run-data">')
    data: dict[str, Any] = json.loads(page[start : page.index("</script>", start)])
    return data


def test_resume_report_covers_both_sessions(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = tmp_path / "journal"
    usage_server.fail_answer = True
    argv = ["run", REQUEST, "--base-url", usage_server.server.base_url, "--json"]
    code, out, _ = run_main([*argv, "--journal-dir", str(journal)], capsys)
    assert code == 1
    first = json.loads(out)
    code, out, _ = run_main(["runs", "--journal-dir", str(journal), "--json"], capsys)
    run_id = json.loads(out.splitlines()[0])["run_id"]

    usage_server.fail_answer = False
    report = tmp_path / "resumed.html"
    argv = ["resume", run_id, "--journal-dir", str(journal), "--report", str(report), "--json"]
    code, out, _ = run_main(argv, capsys)

    data = _report_data(report)
    tasks = {task["id"]: task for task in data["tasks"]}
    assert code == EXIT_OK
    assert data["run"]["status"] == "succeeded"
    assert set(tasks) == {task["id"] for task in first["tasks"]}
    assert all(task["state"] == "done" for task in tasks.values())
    # Tasks of the first session keep their agents and come before the answer.
    for record in first["tasks"]:
        if record["id"] != "answer" and record["agent"] is not None:
            assert tasks[record["id"]]["agent"] == record["agent"]
            assert tasks[record["id"]]["end"] <= tasks["answer"]["start"]
    assert data["run"]["prompt_tokens"] == sum(p for p, _ in usage_server.usage)


def test_invalid_plan_exits_1(
    usage_server: UsageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    usage_server.plan_text = "no plan here"
    argv = ["plan", REQUEST, "--base-url", usage_server.server.base_url]

    code, out, err = run_main(argv, capsys)

    assert code == 1
    assert out == ""
    assert err.startswith("dyntaskmas: error: ")
    assert err.count("\n") == 1
    # The first call and one repair call.
    assert len(usage_server.usage) == 2


def test_unwritable_report_rejected_before_run(
    usage_server: UsageServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # /proc accepts no new files, whatever the user's rights.
    argv = ["run", REQUEST, "--base-url", usage_server.server.base_url, "--report", "/proc/r.html"]
    code, out, err = run_main(argv, capsys)

    assert code == EXIT_USAGE
    assert out == ""
    assert "'/proc/r.html' cannot be written" in err
    assert len(err.strip().splitlines()) == 1
    assert usage_server.usage == []


def test_resume_accounting_covers_both_sessions(
    usage_server: UsageServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    journal = str(tmp_path / "journal")
    base_url = usage_server.server.base_url
    first = ["run", REQUEST, "--base-url", base_url, "--journal-dir", journal, "--json"]
    _, out, _ = run_main([*first, "--max-llm-calls", "2"], capsys)
    run_id = json.loads(out)["run_id"]
    # Each session may make 2 model calls, so the run takes several resumes.
    sessions = 1
    code = EXIT_RUN_FAILED
    while code == EXIT_RUN_FAILED and sessions < 5:
        code, out, _ = run_main(["resume", run_id, "--journal-dir", journal, "--json"], capsys)
        sessions += 1

    accounting = json.loads(out)["accounting"]
    assert code == EXIT_OK
    assert sessions > 2
    assert "" not in accounting["by_role"]
    assert accounting["prompt_tokens"] == sum(p for p, _ in usage_server.usage)
    assert accounting["completion_tokens"] == sum(c for _, c in usage_server.usage)
