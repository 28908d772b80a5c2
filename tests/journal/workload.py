"""A planned workload for resume tests: a scripted server that plans, works and answers.

The root plan splits the request into the steps given; each work request
is for ``Find fact <step>`` and gets ``output of step <step>``; the answer
lists the step outputs its prompt contains. ``failures`` makes the first
requests of a step fail with a 400, which is not retried.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.runner import RunOptions

REQUEST = "Collect the facts"


@dataclass
class PlannedWorkload:
    steps: tuple[str, ...]
    latency_s: dict[str, float] = field(default_factory=dict)
    # Step -> how many of its first requests fail with a 400.
    failures: dict[str, int] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)

    def key(self, request: ScriptedRequest) -> str:
        if request.response_format is not None:
            return "plan"
        for line in request.last_user_text.splitlines():
            if line.startswith("Your task: Find fact "):
                return line.removeprefix("Your task: Find fact ")
        return "answer"

    async def handle(self, request: ScriptedRequest) -> ScriptedReply:
        key = self.key(request)
        self.calls[key] += 1
        # The server's latency for this step, so parallel steps overlap.
        await asyncio.sleep(self.latency_s.get(key, 0.0))
        if self.calls[key] <= self.failures.get(key, 0):
            return ScriptedReply(status=400, error_message=f"step {key} is rejected")
        if key == "plan":
            return ScriptedReply(text=self.plan())
        if key == "answer":
            found = sorted(s for s in self.steps if f"output of step {s}" in request.last_user_text)
            return ScriptedReply(text="answer from steps: " + " ".join(found))
        return ScriptedReply(text=f"output of step {key}")

    def plan(self) -> str:
        subtasks = [
            {
                "id": f"s{k}",
                "description": f"Find fact {step}",
                "role": "researcher",
                "depends_on": [],
                "atomic": True,
                "cost": "small",
                "output_size": "short",
            }
            for k, step in enumerate(self.steps, start=1)
        ]
        return json.dumps({"subtasks": subtasks})


def options_for(server: ScriptedLLMServer, journal_dir: Path, **extra: object) -> RunOptions:
    """Return options for a 2-agent run on ``server``, journalled in ``journal_dir``.

    The optimiser is off unless ``extra`` turns it on: these tests count the
    tasks of plans as the planner makes them.
    """
    return RunOptions(
        base_url=server.base_url,
        model=server.model,
        agents=2,
        journal_dir=str(journal_dir),
        **{"optimise": False, **extra},  # type: ignore[arg-type]
    )
