"""Cost calibration: the estimators (pure) and how estimates reach the graph."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.adapt.calibration import CostCalibrator, Ewma, TokenCostEstimator
from dyntaskmas.graph.dag import TaskGraph
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.llm.attempts import AttemptRecord
from dyntaskmas.observe.events import GraphChanged, RunStarted, TaskFinished, TaskStarted


@given(
    st.floats(0.0, 0.01),
    st.floats(0.0001, 0.1),
    st.lists(st.tuples(st.integers(1, 4000), st.integers(1, 1000)), min_size=2, max_size=40),
)
def test_token_fit_recovers_noiseless_costs(
    prefill: float, decode: float, sizes: list[tuple[int, int]]
) -> None:
    estimator = TokenCostEstimator(alpha=0.1)
    for prompt, completion in sizes:
        estimator.update(prompt, completion, prefill * prompt + decode * completion)

    fit = estimator.fit()

    ratios = {prompt / completion for prompt, completion in sizes}
    if len(ratios) == 1:
        assert fit is None  # collinear sizes cannot separate the two costs
        return
    if fit is None:
        return  # near-collinear within the relative tolerance
    assert fit[0] == pytest.approx(prefill, abs=1e-6, rel=1e-3)
    assert fit[1] == pytest.approx(decode, rel=1e-3)


def test_token_fit_never_negative() -> None:
    estimator = TokenCostEstimator()
    # Latency falls with prompt size here, which no real server does.
    for prompt, completion, latency in ((100, 10, 1.0), (1000, 10, 0.5), (200, 50, 2.0)):
        estimator.update(prompt, completion, latency)

    fit = estimator.fit()

    assert fit is not None
    assert fit[0] >= 0 and fit[1] >= 0


def test_ewma_starts_at_first_value() -> None:
    mean = Ewma(0.5)

    assert mean.update(4.0) == 4.0
    assert mean.update(2.0) == 3.0
    with pytest.raises(ValueError, match="alpha"):
        Ewma(0.0)


def finished(task_id: str, duration_s: float) -> list[object]:
    return [
        TaskStarted("r", 0.0, task_id, "agent-1", "e"),
        TaskFinished("r", duration_s, task_id, "agent-1", "out", duration_s, 10, 10),
    ]


def test_recalibrate_scales_unstarted_costs_and_transfer() -> None:
    specs = [TaskSpec(f"t{i}", "work", cost_s=2.0 if i == 5 else 1.0) for i in range(6)]
    graph = TaskGraph.from_specs(specs, weighting="seconds")
    calibrator = CostCalibrator(min_samples=3)
    calibrator.record_event(RunStarted("r", 0.0, "request", 1))
    calibrator.record_event(GraphChanged("r", 0.0, tuple(specs), (), (), "initial graph"))
    for index in range(3):
        graph.mark_running(f"t{index}", agent="agent-1", now=0.0)
        graph.mark_done(f"t{index}", "out", now=3.0)
        for event in finished(f"t{index}", 3.0):
            calibrator.record_event(event)  # type: ignore[arg-type]
    for prompt, completion in ((100, 10), (300, 20), (50, 40)):
        calibrator.record_attempt(
            AttemptRecord(
                "e",
                0.0,
                0.002 * prompt + 0.01 * completion,
                "ok",
                prompt_tokens=prompt,
                completion_tokens=completion,
            )
        )

    assert calibrator.recalibrate(graph)

    assert graph.task("t3").spec.cost_s == pytest.approx(3.0)
    assert graph.task("t5").spec.cost_s == pytest.approx(6.0)  # its hint was twice the others'
    assert graph.task("t0").spec.cost_s == 1.0  # finished tasks keep theirs
    assert graph.transfer.prefill_s_per_token == pytest.approx(0.002)
    assert graph.priority("t5") == pytest.approx(6.0)
    # Nothing moved since: no second write.
    assert not calibrator.recalibrate(graph)


def test_estimates_need_enough_samples() -> None:
    calibrator = CostCalibrator(min_samples=3)
    spec = TaskSpec("a", "work")
    calibrator.record_event(GraphChanged("r", 0.0, (spec,), (), (), "initial graph"))
    for event in finished("a", 2.0):
        calibrator.record_event(event)  # type: ignore[arg-type]

    estimates = calibrator.estimates()

    assert estimates.cost_ratio == {}
    assert estimates.seconds_per_task == {}
    assert not calibrator.recalibrate(TaskGraph.from_specs([TaskSpec("b", "work")]))
