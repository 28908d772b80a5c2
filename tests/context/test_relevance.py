"""Jaccard relevance, the θ filter, and the θ ablation behind the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.context.analyser import SemanticAnalyser, normalise_tags
from dyntaskmas.context.relevance import (
    DEFAULT_THETA,
    LabelledUpdate,
    is_relevant,
    jaccard,
    recipients,
    sweep_theta,
)

PAIRS = Path(__file__).parent / "data" / "relevance_pairs.json"

tag_sets = st.frozensets(st.sampled_from(["paris", "hotel", "price", "tokyo", "rain", "budget"]))
thetas = st.floats(min_value=0.0, max_value=1.0)


def test_paris_hotel_task_gets_hotel_update_only() -> None:
    task_tags = SemanticAnalyser().tags("Work out hotel budgets in Paris")

    hotels = is_relevant(normalise_tags({"hotels", "paris", "prices"}), task_tags, 0.3)
    weather = is_relevant(normalise_tags({"weather", "tokyo"}), task_tags, 0.3)

    assert hotels
    assert not weather


def test_jaccard_of_known_sets() -> None:
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), set()) == 0.0


def test_untagged_update_reaches_nothing() -> None:
    assert not is_relevant(set(), {"paris"}, 0.0)


def test_recipients_keep_task_order() -> None:
    tasks = {"t.2": {"paris", "hotel"}, "t.1": {"tokyo"}, "t.3": {"paris"}}

    assert recipients({"paris"}, tasks, 0.5) == ["t.2", "t.3"]


@pytest.mark.parametrize("theta", [-0.1, 1.5, float("nan")])
def test_theta_out_of_range_rejected(theta: float) -> None:
    with pytest.raises(ValueError, match="theta"):
        is_relevant({"a"}, {"a"}, theta)


@given(tag_sets, tag_sets)
def test_jaccard_symmetric_and_bounded(first: frozenset[str], second: frozenset[str]) -> None:
    value = jaccard(first, second)

    assert value == jaccard(second, first)
    assert 0.0 <= value <= 1.0


@given(tag_sets, tag_sets)
def test_jaccard_one_only_for_equal_sets(first: frozenset[str], second: frozenset[str]) -> None:
    value = jaccard(first, second)

    if first and first == second:
        assert value == 1.0
    else:
        assert value < 1.0


@given(tag_sets, tag_sets, thetas, thetas)
def test_lower_theta_delivers_superset(
    update: frozenset[str], task: frozenset[str], theta: float, other: float
) -> None:
    low, high = sorted((theta, other))

    if is_relevant(update, task, high):
        assert is_relevant(update, task, low)


def test_theta_ablation_supports_default() -> None:
    """DEFAULT_THETA is the largest θ of the grid that misses no labelled fact."""
    data = json.loads(PAIRS.read_text())
    analyser = SemanticAnalyser()
    task_tags = {task_id: analyser.tags(text) for task_id, text in data["tasks"].items()}
    updates = [
        LabelledUpdate(u["id"], analyser.tags(u["text"]), u["tokens"], frozenset(u["needed_by"]))
        for u in data["updates"]
    ]
    grid = [0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5]

    points = {point.theta: point for point in sweep_theta(updates, task_tags, grid)}
    lossless = [theta for theta, point in points.items() if point.missing_rate == 0.0]

    assert max(lossless) == DEFAULT_THETA
    assert points[DEFAULT_THETA].delivered < points[0.0].delivered / 2
    assert points[DEFAULT_THETA].tokens_moved < points[0.0].tokens_moved / 2
    assert points[0.3].missing_rate > 0.5
