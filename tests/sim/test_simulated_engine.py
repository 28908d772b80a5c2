"""The unchanged engine on the simulated server, in virtual time."""

from __future__ import annotations

import random
import time

import pytest

from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.result import RunResult
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.types import ChatMessage
from dyntaskmas.sim.chat_model import SimulatedCall, SimulatedChatModel
from dyntaskmas.sim.latency import LatencyModel
from dyntaskmas.sim.server import SimulatedServer
from dyntaskmas.sim.server_model import ContextLengthError, ServerConfig
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual
from dyntaskmas.sim.workload_sizes import DEFAULT_SIZES

ROLES = {"worker": "does the step it is given"}

# Prefill takes 0.5 s whatever the prompt, so prompt lengths, which depend
# on the engine's prompt wording, do not change the timeline.
FLAT_PREFILL = LatencyModel.linear(
    prefill_base_s=0.5, prefill_s_per_token=0.0, decode_base_s=0.25, decode_s_per_request=0.125
)


def step(task_id: str, *depends_on: str) -> TaskSpec:
    return TaskSpec(id=task_id, description=f"Step {task_id}", role="worker", depends_on=depends_on)


def run_graph(
    specs: list[TaskSpec],
    *,
    agents: int,
    config: ServerConfig,
    work_max_tokens: int,
    seed: int = 0,
    sample_lengths: bool = False,
) -> RunResult:
    async def main() -> RunResult:
        server = SimulatedServer(config)
        model = SimulatedChatModel(
            server,
            output_lengths=DEFAULT_SIZES["conv"].output if sample_lengths else None,
            rng=random.Random(seed),
        )
        pool = AgentPool(build_agents(agents, ROLES, {"sim": model}))
        engine_config = EngineConfig(roles=ROLES, work_max_tokens=work_max_tokens)
        engine = Engine(pool, config=engine_config, clock=EventLoopClock())
        return await engine.run_graph(specs)

    return run_virtual(main())


def test_makespan_matches_hand_computed_value() -> None:
    """Graph ``a, b -> c`` on two agents, 4 output tokens per task::

        a --\\
             c
        b --/

    0     a arrives at an idle server: prefill [a] until 0.5; b waits
    0.5   prefill [b] until 1.0
    1.0   3 decode steps of [a b] at 0.25 + 0.125 * 2 = 0.5: both end at 2.5
    2.5   c: prefill until 3.0, 3 decode steps of 0.375: ends at 4.125
    """
    specs = [step("a"), step("b"), step("c", "a", "b")]

    result = run_graph(
        specs, agents=2, config=ServerConfig(latency=FLAT_PREFILL), work_max_tokens=4
    )

    records = {record.id: record for record in result.tasks}
    assert result.status == "succeeded"
    assert records["a"].finished_at == 2.5
    assert records["b"].finished_at == 2.5
    assert records["c"].started_at == 2.5
    assert result.makespan_s == 4.125
    assert result.usage.completion_tokens == 12


def test_one_slot_serialises_parallel_tasks() -> None:
    """The same graph on one slot: a and b cannot batch.

    a: 0 to 0.5 + 3 * 0.375 = 1.625; b: 1.625 to 3.25; c: 3.25 to 4.875.
    """
    specs = [step("a"), step("b"), step("c", "a", "b")]

    result = run_graph(
        specs, agents=2, config=ServerConfig(slots=1, latency=FLAT_PREFILL), work_max_tokens=4
    )

    assert result.makespan_s == 4.875


def layered_graph(seed: int, size: int = 50) -> list[TaskSpec]:
    """Return ``size`` tasks: 8 without dependencies, then each on 1 to 3 of the 16 before it."""
    rng = random.Random(seed)
    specs = [step(f"t{i}") for i in range(8)]
    while len(specs) < size:
        earlier = [spec.id for spec in specs]
        parents = rng.sample(earlier[-16:], k=rng.randint(1, 3))
        specs.append(step(f"t{len(specs)}", *parents))
    return specs


def test_fifty_tasks_run_fast_and_repeat_exactly() -> None:
    specs = layered_graph(seed=3)
    config = ServerConfig(slots=32)

    started = time.perf_counter()
    first = run_graph(specs, agents=8, config=config, work_max_tokens=512, sample_lengths=True)
    wall_s = time.perf_counter() - started
    second = run_graph(specs, agents=8, config=config, work_max_tokens=512, sample_lengths=True)

    assert first.status == "succeeded"
    assert len(first.tasks) == 50
    assert first.makespan_s > 10 * wall_s
    assert wall_s < 5.0
    assert first.tasks == second.tasks
    assert first.makespan_s == second.makespan_s
    assert first.usage == second.usage


def test_other_seed_changes_output_lengths() -> None:
    specs = layered_graph(seed=3, size=20)
    config = ServerConfig(slots=32)

    first = run_graph(specs, agents=4, config=config, work_max_tokens=512, sample_lengths=True)
    other = run_graph(
        specs, agents=4, config=config, work_max_tokens=512, sample_lengths=True, seed=1
    )

    assert first.usage.completion_tokens != other.usage.completion_tokens


def test_text_function_sets_output_and_length() -> None:
    calls: list[SimulatedCall] = []

    def text(call: SimulatedCall) -> str:
        calls.append(call)
        return "a" * 4 * 10

    async def main() -> tuple[str, int, str | None, float]:
        model = SimulatedChatModel(SimulatedServer(ServerConfig(latency=FLAT_PREFILL)), text=text)
        completion = await model.complete([ChatMessage("user", "x" * 40)], max_tokens=6)
        return (
            completion.text,
            completion.usage.completion_tokens,
            completion.finish_reason,
            completion.latency_s,
        )

    output, tokens, finish_reason, latency_s = run_virtual(main())

    assert output == "a" * 24
    assert tokens == 6
    assert finish_reason == "length"
    assert latency_s == 0.5 + 5 * 0.375
    assert calls[0].max_tokens == 6
    assert calls[0].messages[0].content == "x" * 40


def test_completion_reports_estimated_usage() -> None:
    async def main() -> tuple[int, int, str | None, str]:
        model = SimulatedChatModel(SimulatedServer(ServerConfig(latency=FLAT_PREFILL)))
        completion = await model.complete(
            [ChatMessage("system", "abcd"), ChatMessage("user", "efghi")], max_tokens=3
        )
        return (
            completion.usage.prompt_tokens,
            completion.usage.completion_tokens,
            completion.finish_reason,
            completion.text,
        )

    prompt_tokens, completion_tokens, finish_reason, text = run_virtual(main())

    # 9 characters are 3 tokens; no length distribution, so max_tokens.
    assert prompt_tokens == 3
    assert completion_tokens == 3
    assert finish_reason == "length"
    assert len(text.split()) == 3


def test_prompt_over_context_raises_request_error() -> None:
    async def main() -> None:
        config = ServerConfig(latency=FLAT_PREFILL, max_context_tokens=8)
        model = SimulatedChatModel(SimulatedServer(config))
        await model.complete([ChatMessage("user", "x" * 40)], max_tokens=3)

    with pytest.raises(ContextLengthError) as raised:
        run_virtual(main())

    assert raised.value.prompt_tokens == 10
    assert raised.value.max_context_tokens == 8
