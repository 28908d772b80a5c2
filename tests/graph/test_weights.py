"""Tests of edge weights, the transfer model and the normalized scale."""

from __future__ import annotations

import pytest

from dyntaskmas.graph import GraphDelta, Scale, TaskGraph, TaskSpec, TransferModel
from dyntaskmas.graph.weights import UNIT_SCALE, compute_scale, drifted


def spec(task_id: str, *depends_on: str, cost_s: float = 1.0, tokens: int = 100) -> TaskSpec:
    return TaskSpec(
        id=task_id,
        description=f"do {task_id}",
        depends_on=depends_on,
        cost_s=cost_s,
        output_tokens=tokens,
    )


def test_transfer_is_prefill_plus_network() -> None:
    model = TransferModel(prefill_s_per_token=0.002, network_s=0.1)

    assert model.transfer_s(500) == pytest.approx(500 * 0.002 + 0.1)
    assert model.transfer_s(0) == pytest.approx(0.1)


def test_transfer_model_rejects_bad_rates() -> None:
    for value in (-0.001, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="prefill_s_per_token"):
            TransferModel(prefill_s_per_token=value)
        with pytest.raises(ValueError, match="network_s"):
            TransferModel(network_s=value)


def test_edge_weight_combines_cost_and_transfer() -> None:
    scale = Scale(alpha=0.5, beta=4.0)

    assert scale.edge_weight(successor_cost_s=3.0, transfer_s=0.25) == pytest.approx(
        0.5 * 3.0 + 4.0 * 0.25
    )


def test_seconds_scale_is_unit() -> None:
    scale = compute_scale("seconds", [2.0, 8.0], [0.5])

    assert scale == UNIT_SCALE


def test_normalized_scale_is_reciprocal_mean() -> None:
    costs = [2.0, 4.0, 9.0]
    transfers = [0.1, 0.3]

    scale = compute_scale("normalized", costs, transfers)

    assert scale.alpha == pytest.approx(1 / (sum(costs) / len(costs)))
    assert scale.beta == pytest.approx(1 / (sum(transfers) / len(transfers)))


def test_normalized_scale_falls_back_on_zero_mean() -> None:
    no_edges = compute_scale("normalized", [2.0], [])
    free = compute_scale("normalized", [0.0, 0.0], [0.0])

    assert no_edges.alpha == pytest.approx(0.5)
    assert no_edges.beta == 1.0
    assert free.alpha == 1.0
    assert free.beta == 1.0


def test_drift_is_relative_to_old_scale() -> None:
    old = Scale(alpha=2.0, beta=10.0)

    assert not drifted(old, Scale(alpha=2.4, beta=10.0), tolerance=0.25)
    assert drifted(old, Scale(alpha=2.6, beta=10.0), tolerance=0.25)
    assert drifted(old, Scale(alpha=2.0, beta=7.0), tolerance=0.25)
    assert not drifted(old, old, tolerance=0.0)


def test_graph_scale_follows_means_past_tolerance() -> None:
    """A small change keeps the old scale, a large one renormalizes:

    a (1 s), b (1 s), then c (1.2 s), then d (10 s)
    """
    graph = TaskGraph.from_specs([spec("a"), spec("b")], renormalize_tolerance=0.25)
    first = graph.scale

    graph.apply(GraphDelta(add=(spec("c", cost_s=1.2),)))
    after_small = graph.scale
    graph.apply(GraphDelta(add=(spec("d", cost_s=10.0),)))

    assert first.alpha == pytest.approx(1.0)
    # The mean cost moved from 1 s to 3.2 / 3 s: alpha drifts by about 6 %.
    assert after_small == first
    assert graph.scale.alpha == pytest.approx(1 / ((1.0 + 1.0 + 1.2 + 10.0) / 4))


def test_renormalizing_recomputes_every_priority() -> None:
    """Adding the costly d changes alpha, so the unrelated chain a --> b is rescored:

    a --> b
    d (50 s)
    """
    graph = TaskGraph.from_specs(
        [spec("a"), spec("b", "a")],
        transfer=TransferModel(prefill_s_per_token=0.0),
        renormalize_tolerance=0.0,
    )
    alpha_before = graph.scale.alpha

    graph.apply(GraphDelta(add=(spec("d", cost_s=50.0),)))

    alpha_after = 1 / ((1.0 + 1.0 + 50.0) / 3)
    assert alpha_before == pytest.approx(1.0)
    assert graph.scale.alpha == pytest.approx(alpha_after)
    assert graph.downstream("a") == pytest.approx(alpha_after * 1.0)
    assert graph.priority("a") == pytest.approx(alpha_after * 2.0)


def test_seconds_graph_keeps_unit_scale() -> None:
    graph = TaskGraph.from_specs(
        [spec("a", cost_s=30.0), spec("b", "a", cost_s=0.5)], weighting="seconds"
    )

    assert graph.scale == UNIT_SCALE
