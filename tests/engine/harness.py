"""Shared setup for engine tests: a scripted server that replies per task, and engines.

Work prompts carry the line ``Your task: <description>``. Tests here give
each task the description ``Step <id>``, so the handler built by
:func:`replies_by_task` can tell which task a request is for and reply with
that task's delay or scripted reply. Everything goes over real HTTP on
127.0.0.1 through :class:`OpenAIChatModel`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Mapping, Sequence

from dyntaskmas.engine.agent_pool import Agent, AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult, TaskRecord
from dyntaskmas.graph.priority import PriorityPolicy
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.scripted import (
    Handler,
    RecordedCall,
    ScriptedLLMServer,
    ScriptedReply,
    ScriptedRequest,
)

ROLE = "worker"
ROLES = {ROLE: "does the step it is given"}
_TASK_PREFIX = "Your task: Step "


def step(task_id: str, *depends_on: str, role: str = ROLE, cost_s: float = 1.0) -> TaskSpec:
    """Return a work task whose description lets the handler recognise it."""
    return TaskSpec(
        id=task_id,
        description=f"Step {task_id}",
        role=role,
        depends_on=depends_on,
        cost_s=cost_s,
    )


def output_of(task_id: str) -> str:
    """Return the text the scripted server sends for ``task_id`` by default."""
    return f"output of {task_id}"


def task_id_of(request: ScriptedRequest) -> str | None:
    """Return the id of the step a work request is for, or None for other requests."""
    for line in request.last_user_text.splitlines():
        if line.startswith(_TASK_PREFIX):
            return line.removeprefix(_TASK_PREFIX)
    return None


def replies_by_task(replies: Mapping[str, float | ScriptedReply]) -> Handler:
    """Build a handler that replies to each step by its id.

    A float is a delay in seconds before the reply :func:`output_of` gives;
    a :class:`ScriptedReply` is sent as it is. Steps not listed get their
    default output at once. A request for no step makes the handler raise,
    so the server records it in ``handler_errors``.
    """

    def handler(request: ScriptedRequest) -> ScriptedReply:
        task_id = task_id_of(request)
        if task_id is None:
            raise ValueError(f"request {request.index} is not for a step")
        reply = replies.get(task_id, 0.0)
        if isinstance(reply, ScriptedReply):
            return reply
        return ScriptedReply(text=output_of(task_id), delay_s=reply)

    return handler


@contextlib.asynccontextmanager
async def scripted_model(
    handler: Handler, *, concurrency: int = 16
) -> AsyncIterator[tuple[ScriptedLLMServer, OpenAIChatModel]]:
    """Run a scripted server and an HTTP model client for it, with default retries."""
    async with ScriptedLLMServer(handler) as server:
        endpoint = Endpoint(server.base_url, model=server.model, concurrency=concurrency)
        async with OpenAIChatModel(endpoint, policy=RetryPolicy(), rng=random.Random(0)) as model:
            yield server, model


def make_engine(
    model: OpenAIChatModel,
    agents: int | Sequence[Agent],
    *,
    roles: Mapping[str, str] = ROLES,
    aging_per_s: float = 0.01,
    priority: PriorityPolicy = "critical_path",
    level_sync: bool = False,
) -> Engine:
    """Build an engine with ``agents`` generalists (or the given agents) on ``model``."""
    if isinstance(agents, int):
        agents = build_agents(agents, roles, {"scripted": model})
    config = EngineConfig(
        roles=roles, aging_per_s=aging_per_s, priority=priority, level_sync=level_sync
    )
    return Engine(AgentPool(list(agents)), config=config)


def records(result: RunResult) -> dict[str, TaskRecord]:
    """Return the run's task records by id."""
    return {record.id: record for record in result.tasks}


def calls_for(server: ScriptedLLMServer, task_id: str) -> list[RecordedCall]:
    """Return the requests the server received for one step, in arrival order."""
    return [call for call in server.calls if task_id_of(call.request) == task_id]


def start_of(record: TaskRecord) -> float:
    """Return when a task started; fail the test if it never did."""
    assert record.started_at is not None, f"task {record.id!r} never started"
    return record.started_at


def end_of(record: TaskRecord) -> float:
    """Return when a task finished; fail the test if it never did."""
    assert record.finished_at is not None, f"task {record.id!r} never finished"
    return record.finished_at
