"""Token estimates, filler text, output lengths and hashed embeddings."""

from __future__ import annotations

import math

import pytest

from dyntaskmas.sim.content import (
    decide_output,
    estimate_prompt_tokens,
    estimate_tokens,
    filler_text,
    hashed_embedding,
    truncate_to_tokens,
)


def test_estimate_rounds_up_per_four_characters() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2


def test_prompt_estimate_joins_messages() -> None:
    assert estimate_prompt_tokens(["ab", "cd", "e"]) == 2


@pytest.mark.parametrize("tokens", [0, 1, 2, 7, 100])
def test_filler_text_estimates_to_its_token_count(tokens: int) -> None:
    text = filler_text(tokens, offset=3)

    assert estimate_tokens(text) == tokens
    assert len(text.split()) == tokens


def test_filler_text_depends_on_offset() -> None:
    assert filler_text(5, offset=0) != filler_text(5, offset=1)


def test_truncate_keeps_whole_tokens() -> None:
    assert truncate_to_tokens("abcdefghij", 2) == "abcdefgh"


def test_output_stops_naturally_within_budget() -> None:
    assert decide_output(5, 10) == (5, "stop")
    assert decide_output(10, 10) == (10, "stop")


def test_output_hits_length_beyond_budget() -> None:
    assert decide_output(11, 10) == (10, "length")
    assert decide_output(None, 10) == (10, "length")


def test_output_has_at_least_one_token() -> None:
    assert decide_output(0, 10) == (1, "stop")


def test_embedding_is_unit_length_and_deterministic() -> None:
    vector = hashed_embedding("The Nile is long", 32)

    assert len(vector) == 32
    assert math.isclose(sum(x * x for x in vector), 1.0)
    assert vector == hashed_embedding("the nile IS long", 32)


def test_embeddings_of_shared_words_are_closer() -> None:
    base = hashed_embedding("river length nile amazon", 256)
    related = hashed_embedding("nile river", 256)
    unrelated = hashed_embedding("quantum chromodynamics lattice", 256)

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(base, related) > cosine(base, unrelated)


def test_embedding_of_no_words_is_zero() -> None:
    assert hashed_embedding("  ?! ", 4) == [0.0, 0.0, 0.0, 0.0]
