"""Token budgets, cosine ranking, truncation and the never-exceed-the-budget selection."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.context.retrieval import (
    Candidate,
    HeuristicTokenCounter,
    context_budget,
    cosine,
    preselect_count,
    rank_by_similarity,
    select_context,
    truncate_to_tokens,
)
from dyntaskmas.errors import ContextBudgetError

COUNTER = HeuristicTokenCounter()

words = st.text(alphabet="abcdefghij xyz.,0é\n", max_size=300)


def candidate(source: str, tokens: int, *, required: bool = False, score: float = 0.0) -> Candidate:
    # Each "tok" counts as one token, so the text has exactly ``tokens`` tokens.
    return Candidate(
        source=source,
        key="output",
        label=f"[{source}]",
        text=" ".join(["tok"] * tokens),
        required=required,
        score=score,
    )


def test_counter_counts_letter_runs_and_symbols() -> None:
    assert COUNTER.count("") == 0
    assert COUNTER.count("hello world") == 4
    assert COUNTER.count("a, b") == 3
    assert COUNTER.count("2024") == 4
    assert COUNTER.count("東京") == 2


@given(words, words)
def test_counter_adds_over_whitespace(first: str, second: str) -> None:
    assert COUNTER.count(f"{first}\n\n{second}") == COUNTER.count(first) + COUNTER.count(second)


def piece_by_piece_count(text: str) -> int:
    """The counter's rule applied one piece at a time, as a reference."""
    total = 0
    for piece in re.findall(r"[A-Za-z]+|\S", text):
        total += math.ceil(len(piece) / 4) if piece[0].isascii() and piece.isalpha() else 1
    return total


@given(st.text(max_size=200))
def test_counter_matches_piecewise_rule(text: str) -> None:
    assert COUNTER.count(text) == piece_by_piece_count(text)


def test_budget_is_window_minus_prompt_and_completion() -> None:
    assert context_budget(8192, 500, 256) == 7436


def test_budget_error_when_prompt_fills_window() -> None:
    with pytest.raises(ContextBudgetError) as caught:
        context_budget(1000, 900, 200)

    assert caught.value.window_tokens == 1000
    assert "1000-token window" in str(caught.value)


def test_cosine_of_known_vectors() -> None:
    assert cosine((1.0, 0.0), (0.0, 1.0)) == 0.0
    assert cosine((1.0, 1.0), (2.0, 2.0)) == pytest.approx(1.0)
    assert cosine((0.0, 0.0), (1.0, 0.0)) == 0.0


def test_rank_by_similarity_best_first_ties_in_order() -> None:
    ranked = rank_by_similarity((1.0, 0.0), [(0.0, 1.0), (1.0, 0.0), (2.0, 0.0), (1.0, 1.0)], 3)

    assert [index for index, _ in ranked] == [1, 2, 3]


@given(words, st.integers(min_value=0, max_value=80))
def test_truncation_fits_and_keeps_head(text: str, limit: int) -> None:
    head = truncate_to_tokens(text, limit, COUNTER)

    assert COUNTER.count(head) <= limit
    assert text.startswith(head)


def test_everything_fits_without_notice() -> None:
    selection = select_context([candidate("t.1", 10, required=True), candidate("t.2", 10)], 100)

    assert [item.candidate.source for item in selection.items] == ["t.1", "t.2"]
    assert selection.notice == ""
    assert selection.used_tokens == COUNTER.count(selection.render())


def test_required_first_then_by_score() -> None:
    selection = select_context(
        [
            candidate("low", 10, score=0.1),
            candidate("high", 10, score=0.9),
            candidate("pred", 10, required=True),
        ],
        1000,
    )

    assert [item.candidate.source for item in selection.items] == ["pred", "high", "low"]


def test_oversized_required_truncated_equally() -> None:
    selection = select_context(
        [candidate("a", 3000, required=True), candidate("b", 3000, required=True)], 2000
    )

    assert [item.candidate.source for item in selection.items] == ["a", "b"]
    assert all(item.left_out_tokens > 0 for item in selection.items)
    assert abs(selection.items[0].tokens - selection.items[1].tokens) <= 2
    assert "output of a (truncated" in selection.notice
    assert "output of b (truncated" in selection.notice
    assert selection.used_tokens <= 2000


def test_small_required_kept_whole_beside_large() -> None:
    selection = select_context(
        [candidate("small", 50, required=True), candidate("large", 5000, required=True)], 1000
    )

    small, large = selection.items
    assert small.left_out_tokens == 0
    assert large.left_out_tokens > 0


def test_optional_without_room_listed_in_notice() -> None:
    selection = select_context(
        [candidate("pred", 950, required=True), candidate("extra", 500, score=0.5)], 1000
    )

    assert [item.candidate.source for item in selection.items] == ["pred"]
    assert [o.candidate.source for o in selection.omitted] == ["extra"]
    assert selection.omitted[0].reason == "budget"
    assert "output of extra (" in selection.notice


def test_optional_truncated_into_remaining_room() -> None:
    selection = select_context(
        [candidate("pred", 500, required=True), candidate("extra", 1000, score=0.5)], 1000
    )

    assert [item.candidate.source for item in selection.items] == ["pred", "extra"]
    assert selection.items[1].left_out_tokens > 0
    assert "more tokens left out]" in selection.items[1].text


def test_beyond_top_k_omitted() -> None:
    selection = select_context([candidate(f"t.{i}", 5, score=i / 10) for i in range(5)], 1000, k=2)

    assert [item.candidate.source for item in selection.items] == ["t.4", "t.3"]
    assert {o.reason for o in selection.omitted} == {"top_k"}
    assert "not among the most similar" in selection.notice


def test_zero_budget_selects_nothing() -> None:
    selection = select_context([candidate("pred", 10, required=True)], 0)

    assert selection.items == ()
    assert selection.render() == ""


def test_notice_caps_listed_items() -> None:
    many = [candidate(f"t.{i}", 100, score=0.5) for i in range(20)]

    selection = select_context(many, 400, min_partial_tokens=1000)

    assert "; and 1" in selection.notice
    assert selection.notice.count("output of") <= 8


candidates = st.lists(
    st.builds(
        Candidate,
        source=st.sampled_from(["t.1", "t.2", "t.3", "t.4"]),
        key=st.just("output"),
        label=st.text(alphabet="[]t.1234 abc", max_size=20),
        text=words,
        required=st.booleans(),
        score=st.floats(min_value=-1.0, max_value=1.0),
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(candidates, st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=5))
def test_selection_never_exceeds_budget(offered: list[Candidate], budget: int, k: int) -> None:
    selection = select_context(offered, budget, k=k, min_partial_tokens=8)

    assert selection.used_tokens <= budget
    assert selection.used_tokens == COUNTER.count(selection.render())
    assert len(selection.items) + len(selection.omitted) == len(offered)


@settings(max_examples=200, deadline=None)
@given(candidates, st.integers(min_value=60, max_value=400))
def test_left_out_content_is_announced(offered: list[Candidate], budget: int) -> None:
    selection = select_context(offered, budget, min_partial_tokens=8)

    if selection.omitted or selection.truncated:
        assert selection.notice.startswith("Left out")
    else:
        assert selection.notice == ""


many_candidates = st.lists(
    st.builds(
        Candidate,
        source=st.sampled_from([f"t.{i}" for i in range(30)]),
        key=st.just("output"),
        label=st.text(alphabet="[]t.1234 abc", max_size=12),
        text=words,
        required=st.booleans(),
        # Few distinct scores, so that ties are common.
        score=st.sampled_from([-0.5, 0.0, 0.25, 0.5, 1.0]),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(
    many_candidates, st.integers(min_value=0, max_value=600), st.integers(min_value=0, max_value=6)
)
def test_preselected_candidates_select_same(offered: list[Candidate], budget: int, k: int) -> None:
    required = [c for c in offered if c.required]
    optional = [c for c in offered if not c.required]
    ranked = sorted(range(len(optional)), key=lambda i: (-optional[i].score, i))
    kept = sorted(ranked[: preselect_count(k)])
    passed = required + [optional[i] for i in kept]

    full = select_context(offered, budget, k=k, min_partial_tokens=8)
    short = select_context(
        passed, budget, k=k, min_partial_tokens=8, more_omitted=len(optional) - len(kept)
    )

    assert short.items == full.items
    assert short.notice == full.notice
    assert short.used_tokens == full.used_tokens
    assert len(short.omitted) + short.more_omitted == len(full.omitted)
