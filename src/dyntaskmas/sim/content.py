"""Text of the simulated server: token estimates, filler text and embeddings.

The simulator has no tokenizer. It estimates tokens as four characters
each, the usual average of BPE tokenizers on English text, and writes
filler text whose estimate is exactly the token count it stands for, so a
client that counts tokens the same way sees consistent usage. Embeddings
are feature-hashed bags of words: deterministic, and texts that share
words get a positive cosine similarity. Everything here is pure.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from typing import Literal

FinishReason = Literal["stop", "length"]

#: Characters per token in every estimate here.
CHARS_PER_TOKEN = 4

# Each filler word plus its following space is CHARS_PER_TOKEN characters.
_FILLER_WORDS = ("sim", "and", "the", "for", "one", "two", "can", "its", "new", "all")
_WORD = re.compile(r"\w+")


def estimate_tokens(text: str) -> int:
    """Return the estimated token count of ``text``: one per four characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_prompt_tokens(contents: Iterable[str]) -> int:
    """Return the estimated token count of a prompt made of message ``contents``."""
    return estimate_tokens("".join(contents))


def filler_text(tokens: int, *, offset: int = 0) -> str:
    """Return deterministic text whose :func:`estimate_tokens` is ``tokens``.

    ``offset`` rotates the words, so that different requests get different
    text. Every word stands for one token, so ``split()`` gives the tokens.
    """
    if tokens < 0:
        raise ValueError(f"tokens must be >= 0, got {tokens}")
    words = (_FILLER_WORDS[(offset + i) % len(_FILLER_WORDS)] for i in range(tokens))
    return " ".join(words)


def truncate_to_tokens(text: str, tokens: int) -> str:
    """Return the longest prefix of ``text`` whose estimate is at most ``tokens``."""
    return text[: tokens * CHARS_PER_TOKEN]


def decide_output(natural_tokens: int | None, budget: int) -> tuple[int, FinishReason]:
    """Return the tokens a request generates and why it stops.

    ``natural_tokens`` is the length the model would write unprompted (None:
    unbounded) and ``budget`` the most it may write (``max_tokens``, capped
    by the context window). A request always generates at least one token.
    """
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if natural_tokens is None or natural_tokens > budget:
        return budget, "length"
    return max(1, natural_tokens), "stop"


def hashed_embedding(text: str, dimensions: int) -> list[float]:
    """Return a unit-length feature-hashed embedding of ``text``'s words.

    Each lower-cased word adds +1 or -1 to one coordinate, both chosen by a
    BLAKE2b hash of the word. A text without words gets the zero vector.
    """
    if dimensions < 1:
        raise ValueError(f"dimensions must be >= 1, got {dimensions}")
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        vector[value % dimensions] += 1.0 if (value >> 63) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        return vector
    return [x / norm for x in vector]
