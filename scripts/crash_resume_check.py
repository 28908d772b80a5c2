"""Kill `dyntaskmas run` with SIGKILL at random points, resume each time, check the journal.

Starts a scripted OpenAI-compatible server on 127.0.0.1 that plays a
deterministic planned workload of 30 tasks (a root plan into 6 steps and 2
topics, each topic planned into 9 steps, the joins, the answer). It runs the
request once without interruption, then again in a child process that it
kills with SIGKILL at the N-th server event of an attempt (a request
arriving, or a reply about to be sent; N drawn from a seeded RNG) and
resumes with `dyntaskmas resume` until the run finishes. It checks that:

- the interrupted run finishes, with the answer of the uninterrupted one;
- no task the journal records as finished (plan tasks whose subtasks were
  recorded included) is sent to the server again in a later attempt;
- every output recorded before a kill is the task's output in the end.

    .venv/bin/python scripts/crash_resume_check.py --kills 20 --seed 1

Exit status 0 when every check holds, 1 otherwise. The test
``tests/journal/test_crash_resume.py`` runs the same check with fewer kills.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
import signal
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dyntaskmas.engine.executor import decomposition_reason
from dyntaskmas.journal.codec import decode_event
from dyntaskmas.journal.store import JournalStore
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.observe.events import GraphChanged, TaskFinished

REQUEST = "Survey the sample field in steps"
ROOT_STEPS = ("r1", "r2", "r3", "r4", "r5", "r6")
TOPICS = {"x": tuple(f"x{k}" for k in range(1, 10)), "y": tuple(f"y{k}" for k in range(1, 10))}
ROOT_PLAN_KEY = "plan:root"
ANSWER_KEY = "answer"
_STEP_OUTPUT = re.compile(r"output of step (\w+)")

#: Options of every attempt; --max-subtasks 10 lets the root plan list 8 subtasks.
#: --no-optimise keeps all 8 apart: merged, they leave too few events to kill at.
RUN_OPTIONS = ("--agents", "4", "--max-subtasks", "10", "--max-depth", "2", "--no-optimise")


def step_description(step: str) -> str:
    return f"Find fact {step}"


def topic_description(topic: str) -> str:
    return f"Research topic {topic}"


def _subtask(step_id: str, description: str, *, atomic: bool) -> dict[str, Any]:
    return {
        "id": step_id,
        "description": description,
        "role": "researcher",
        "depends_on": [],
        "atomic": atomic,
        # Subtasks cheaper than the planner's minimum cost are never split.
        "cost": "small" if atomic else "large",
        "output_size": "short",
    }


def plan_text(topic: str | None) -> str:
    """Return the plan reply: the root plan, or the plan of one topic."""
    if topic is None:
        items = [
            _subtask(f"s{k}", step_description(s), atomic=True) for k, s in enumerate(ROOT_STEPS, 1)
        ]
        items += [
            _subtask(f"s{len(items) + k}", topic_description(t), atomic=False)
            for k, t in enumerate(TOPICS, 1)
        ]
    else:
        items = [
            _subtask(f"s{k}", step_description(s), atomic=True)
            for k, s in enumerate(TOPICS[topic], 1)
        ]
    return json.dumps({"subtasks": items})


def request_key(request: ScriptedRequest) -> str:
    """Return which task a request is for: 'plan:root', 'plan:x', 'work:r1' or 'answer'."""
    text = request.last_user_text
    if request.response_format is not None:
        for line in text.splitlines():
            if line.startswith("Task: Research topic "):
                return "plan:" + line.removeprefix("Task: Research topic ")
        return ROOT_PLAN_KEY
    for line in text.splitlines():
        if line.startswith("Your task: Find fact "):
            return "work:" + line.removeprefix("Your task: Find fact ")
    return ANSWER_KEY


def reply_text(key: str, request: ScriptedRequest) -> str:
    """Return the deterministic reply for ``key``; the answer lists the outputs it was given."""
    if key == ROOT_PLAN_KEY:
        return plan_text(None)
    if key.startswith("plan:"):
        return plan_text(key.removeprefix("plan:"))
    if key.startswith("work:"):
        return f"output of step {key.removeprefix('work:')}"
    seen = sorted(set(_STEP_OUTPUT.findall(request.last_user_text)))
    return "answer from steps: " + " ".join(seen)


def latency_s(key: str) -> float:
    """Return the server's latency for ``key``: 20 to 100 ms, fixed per task."""
    return 0.02 + (zlib.crc32(key.encode()) % 5) * 0.02


@dataclass
class Workload:
    """The server's handler, with a log of requests per attempt and a kill hook.

    ``hook`` is called with 'arrival' when a request arrives and 'reply'
    just before its reply is returned.
    """

    attempt: int = 0
    requests: list[tuple[int, str]] = field(default_factory=list)
    hook: Callable[[str], None] | None = None

    async def handle(self, request: ScriptedRequest) -> ScriptedReply:
        key = request_key(request)
        self.requests.append((self.attempt, key))
        if self.hook is not None:
            self.hook("arrival")
        # The simulated model's latency, so requests overlap as on a real server.
        await asyncio.sleep(latency_s(key))
        if self.hook is not None:
            self.hook("reply")
        return ScriptedReply(text=reply_text(key, request))


@dataclass
class CheckReport:
    kills: int
    attempts: int
    # Tasks recorded as finished when each kill came; shows the kills spread over the run.
    finished_at_kills: list[int]
    reference_answer: str | None
    final_answer: str | None
    final_status: str | None
    tasks: int
    requests: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        verdict = "PASSED" if self.ok else "FAILED"
        lines = [
            f"crash-resume check {verdict}: {self.kills} kills, {self.attempts} attempts, "
            f"{self.tasks} tasks, {self.requests} model requests",
            f"answer matches the uninterrupted run: {self.final_answer == self.reference_answer}",
            "tasks finished at each kill: " + " ".join(map(str, self.finished_at_kills)),
        ]
        lines += [f"problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


def _cli_command(args: Sequence[str]) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys; from dyntaskmas.cli import main; sys.exit(main())",
        *args,
    ]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child must reach only the server started here.
    for name in ("DYNTASKMAS_BASE_URL", "DYNTASKMAS_MODEL", "DYNTASKMAS_JOURNAL_DIR"):
        env.pop(name, None)
    return env


async def _run_child(
    args: Sequence[str], workload: Workload, kill_at: tuple[str, int] | None
) -> tuple[int, str, str]:
    """Run the CLI; with ``kill_at`` = (phase, n), SIGKILL it at the n-th such event."""
    process = await asyncio.create_subprocess_exec(
        *_cli_command(args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_child_env(),
    )
    seen = {"arrival": 0, "reply": 0}

    def hook(phase: str) -> None:
        seen[phase] += 1
        if kill_at == (phase, seen[phase]) and process.returncode is None:
            process.send_signal(signal.SIGKILL)

    workload.hook = hook
    try:
        stdout, stderr = await process.communicate()
    finally:
        workload.hook = None
    return process.returncode or 0, stdout.decode(), stderr.decode()


def _journal_snapshot(journal_dir: Path) -> tuple[str, dict[str, str], dict[str, str]]:
    """Return the run id, the outputs of finished tasks by request key, and keys by task id.

    Read from the raw events, not through the resume code under test: a task
    is finished when its TaskFinished is recorded, and a plan task also when
    its decomposition delta is (the engine never sends that plan again).
    """
    with JournalStore(journal_dir, create=False) as store:
        (row,) = store.runs()
        events = [
            decode_event(item.kind, row.run_id, item.at_s, item.payload)
            for item in store.events(row.run_id)
        ]
    keys = _keys_by_task(events)
    outputs: dict[str, str] = {}
    for event in events:
        if isinstance(event, TaskFinished) and keys.get(event.task_id):
            outputs[keys[event.task_id]] = event.output
        elif isinstance(event, GraphChanged):
            for task_id, key in keys.items():
                if key.startswith("plan:") and event.reason == decomposition_reason(task_id):
                    outputs.setdefault(key, "(decomposition recorded)")
    return row.run_id, outputs, keys


def _keys_by_task(events: Iterable[object]) -> dict[str, str]:
    keys: dict[str, str] = {}
    for event in events:
        if not isinstance(event, GraphChanged):
            continue
        for spec in event.added:
            if spec.kind == "plan" and spec.description == REQUEST:
                keys[spec.id] = ROOT_PLAN_KEY
            elif spec.kind == "plan":
                keys[spec.id] = "plan:" + spec.description.removeprefix("Research topic ")
            elif spec.kind == "work":
                keys[spec.id] = "work:" + spec.description.removeprefix("Find fact ")
            elif spec.kind == "synthesize":
                keys[spec.id] = ANSWER_KEY
    return keys


def _draw_kill_point(rng: random.Random) -> tuple[str, int]:
    """Draw where an attempt is killed: at the n-th request arrival or reply.

    The ranges are small so that 20 kills fit in one 30-task run. Because 4
    agents send up to 4 requests at once, arrivals past the 4th and replies
    past the 1st come after some task of the attempt finished.
    """
    if rng.random() < 0.5:
        return "arrival", rng.randint(1, 7)
    return "reply", rng.randint(1, 3)


async def crash_resume_check(kills: int, seed: int, workdir: Path) -> CheckReport:
    """Run the check with ``kills`` SIGKILLs; return what it found."""
    rng = random.Random(seed)
    workload = Workload()
    problems: list[str] = []
    async with ScriptedLLMServer(workload.handle) as server:
        common = ["--base-url", server.base_url, "--model", server.model, *RUN_OPTIONS]

        # The uninterrupted run, for the answer to compare with.
        workload.attempt = -1
        code, out, err = await _run_child(
            ["run", REQUEST, *common, "--journal-dir", str(workdir / "reference"), "--json"],
            workload,
            kill_at=None,
        )
        if code != 0:
            raise RuntimeError(f"the uninterrupted run exited with {code}: {err[-2000:]}")
        reference = json.loads(out)

        journal_dir = workdir / "interrupted"
        args = ["run", REQUEST, *common, "--journal-dir", str(journal_dir), "--json"]
        snapshots: list[dict[str, str]] = []
        done = 0
        attempt = 0
        result: dict[str, Any] | None = None
        while True:
            workload.attempt = attempt
            kill_at = _draw_kill_point(rng) if done < kills else None
            code, out, err = await _run_child(args, workload, kill_at)
            attempt += 1
            if code == -signal.SIGKILL:
                done += 1
                run_id, outputs, _ = _journal_snapshot(journal_dir)
                snapshots.append(outputs)
                args = ["resume", run_id, "--journal-dir", str(journal_dir), "--json"]
            elif code != 0:
                last_line = err.strip().splitlines()[-1] if err.strip() else "(no output)"
                problems.append(f"attempt {attempt} exited with {code}: {last_line}")
                break
            else:
                result = json.loads(out)
                break

    if result is None:
        return CheckReport(
            done,
            attempt,
            [len(o) for o in snapshots],
            reference["answer"],
            None,
            None,
            0,
            0,
            problems,
        )

    # No task finished in the journal at the end of an attempt is requested later.
    for index, outputs in enumerate(snapshots):
        again = sorted({key for a, key in workload.requests if a > index and key in outputs})
        if again:
            problems.append(f"after kill {index + 1}, finished tasks were sent again: {again}")

    # Every output recorded before a kill is the task's output in the end.
    final_keys = _journal_snapshot(journal_dir)[2]
    final_outputs = {final_keys.get(t["id"]): t["output"] for t in result["tasks"]}
    for index, outputs in enumerate(snapshots):
        for key, output in outputs.items():
            if key.startswith("plan:"):
                continue  # a recovered plan's output is rebuilt, not recorded
            if final_outputs.get(key) != output:
                problems.append(f"output of {key} recorded before kill {index + 1} was lost")

    if result["status"] != "succeeded":
        problems.append(f"the resumed run ended with status {result['status']}")
    if result["answer"] != reference["answer"]:
        problems.append(
            f"answer {result['answer']!r} differs from the uninterrupted {reference['answer']!r}"
        )
    if len(result["tasks"]) != len(reference["tasks"]):
        problems.append(
            f"{len(result['tasks'])} tasks, the uninterrupted run had {len(reference['tasks'])}"
        )
    return CheckReport(
        kills=done,
        attempts=attempt,
        finished_at_kills=[len(outputs) for outputs in snapshots],
        reference_answer=reference["answer"],
        final_answer=result["answer"],
        final_status=result["status"],
        tasks=len(result["tasks"]),
        requests=sum(1 for a, _ in workload.requests if a >= 0),
        problems=problems,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to send (default: 20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill points (default: 1)")
    args = parser.parse_args(argv)
    # Every kill cuts the connections of requests in flight, and aiohttp logs
    # each one with a traceback; here they are expected, so keep them out.
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="dyntaskmas-crash-") as workdir:
        report = asyncio.run(crash_resume_check(args.kills, args.seed, Path(workdir)))
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
