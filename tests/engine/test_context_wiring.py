"""The engine with a context manager: prompts within the window, relevance sharing."""

from __future__ import annotations

from dyntaskmas.context.manager import ContextManager
from dyntaskmas.context.retrieval import HeuristicTokenCounter
from dyntaskmas.engine.agent_pool import AgentPool, build_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.scripted import ScriptedReply, ScriptedRequest

from .harness import ROLE, ROLES, scripted_model, step, task_id_of

WINDOW = 8192
MAX_TOKENS = 256
# "word " counts as 1 token (a run of four letters), so this is 5,000 tokens.
LONG_OUTPUT = "word " * 5000


def _engine(model: OpenAIChatModel, agents: int, theta: float) -> Engine:
    config = EngineConfig(roles=ROLES, context_window_tokens=WINDOW, work_max_tokens=MAX_TOKENS)
    pool = AgentPool(build_agents(agents, ROLES, {"scripted": model}))
    return Engine(pool, config=config, context=lambda run_id: ContextManager(run_id, theta=theta))


def _tagged(task_id: str, *depends_on: str) -> TaskSpec:
    # A task without tags receives nothing by relevance, even at θ = 0.
    return TaskSpec(
        task_id, f"Step {task_id}", role=ROLE, depends_on=depends_on, tags=frozenset({"chain"})
    )


def _prompt_tokens(request: ScriptedRequest) -> int:
    counter = HeuristicTokenCounter()
    return sum(counter.count(str(message.get("content", ""))) for message in request.messages)


async def test_long_chain_prompts_fit_window() -> None:
    """a --> b --> c --> d, each output 5,000 tokens, on an 8,192-token window.

    With θ = 0 every earlier output is offered to every later task, so from
    ``c`` on they cannot all fit: the prompt stays within the window and
    names what was left out.
    """
    async with scripted_model(lambda request: ScriptedReply(text=LONG_OUTPUT)) as (server, model):
        result = await _engine(model, 1, theta=0.0).run_graph(
            [_tagged("a"), _tagged("b", "a"), _tagged("c", "b"), _tagged("d", "c")]
        )

    prompts = {task_id_of(call.request): call.request for call in server.calls}
    assert result.status == "succeeded"
    for task_id, request in prompts.items():
        assert _prompt_tokens(request) + MAX_TOKENS <= WINDOW, task_id
    assert "Left out to fit the model's context window" in prompts["d"].last_user_text
    assert result.context is not None
    assert result.context["left_out"] + result.context["truncated"] >= 1


async def test_relevant_output_reaches_other_branch() -> None:
    """``prices`` shares tags with ``budget`` but is not its predecessor.

        prices (hotels in Paris)  --> wait
        weather (Tokyo)
        wait --> budget (hotel budget in Paris)

    At θ = 0.3 the hotel prices reach ``budget``; the Tokyo weather does not.
    """

    def reply(request: ScriptedRequest) -> ScriptedReply:
        task_id = task_id_of(request)
        texts = {
            "prices": "Hotels in Paris cost 150 to 400 euros per night.",
            "weather": "Tokyo weather is rainy in June.",
        }
        return ScriptedReply(text=texts.get(task_id or "", "done"))

    specs = [
        TaskSpec("prices", "Step prices", role=ROLE, tags=frozenset({"hotel", "paris", "price"})),
        TaskSpec("weather", "Step weather", role=ROLE, tags=frozenset({"weather", "tokyo"})),
        step("wait", "prices", "weather"),
        TaskSpec(
            "budget",
            "Step budget",
            role=ROLE,
            depends_on=("wait",),
            tags=frozenset({"hotel", "paris", "budget"}),
        ),
    ]
    async with scripted_model(reply) as (server, model):
        result = await _engine(model, 2, theta=0.3).run_graph(specs)

    prompts = {task_id_of(call.request): call.request.last_user_text for call in server.calls}
    assert result.status == "succeeded"
    assert "Hotels in Paris cost" in prompts["budget"]
    assert "Tokyo weather" not in prompts["budget"]
