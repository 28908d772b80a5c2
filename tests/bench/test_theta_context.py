"""The theta and context experiments' plumbing at tiny sizes: JSON shape and row keys."""

from __future__ import annotations

import json
import shutil

import pytest

from dyntaskmas.bench.context_load import local_redis, run_load
from dyntaskmas.bench.experiments import (
    EXPERIMENTS,
    QUICK,
    STANDALONE_EXPERIMENTS,
    experiment_names,
    run_experiment,
)
from dyntaskmas.bench.theta import run_theta_once, theta_workload

THETA_KEYS = {"theta", "context_tokens", "updates_delivered", "coordination_s", "task_success"}
CONTEXT_KEYS = {
    "agents",
    "store",
    "processes",
    "commits_per_s",
    "decisions_per_s",
    "cpu_ms_per_round",
}
HAS_REDIS = shutil.which("redis-server") is not None


def test_theta_json_shape() -> None:
    result = run_experiment("theta", data_dir=None, sizes=QUICK)

    decoded = json.loads(json.dumps(result.to_json()))

    assert decoded["experiment"] == "theta"
    assert [row["theta"] for row in decoded["rows"]] == list(QUICK.thetas)
    for row in decoded["rows"]:
        assert set(row) == THETA_KEYS


def test_theta_zero_delivers_every_fact() -> None:
    point = run_theta_once(theta_workload(3), 0.0)

    assert point.task_success == 1.0
    assert point.context_tokens > 0


def test_theta_one_delivers_no_fact() -> None:
    """No fact shares all its tags with the task that needs it, so θ = 1 misses them all."""
    point = run_theta_once(theta_workload(3), 1.0)

    assert point.task_success == 0.0


def test_theta_workload_rejects_one_branch() -> None:
    with pytest.raises(ValueError, match="branches must be from 2"):
        theta_workload(1)


def test_context_json_shape() -> None:
    result = run_experiment("context", data_dir=None, sizes=QUICK)

    decoded = json.loads(json.dumps(result.to_json()))

    assert decoded["experiment"] == "context"
    assert decoded["rows"]
    for row in decoded["rows"]:
        assert set(row) >= CONTEXT_KEYS
    stores = {row["store"] for row in decoded["rows"]}
    assert stores == ({"memory", "redis"} if HAS_REDIS else {"memory"})


def test_context_load_counts_every_commit() -> None:
    point = run_load(3, "memory", rounds=2, think_s=0.0)

    assert point.commits == 3 * 2
    # Each request weighs the other agents' outputs: 0 to 2 of them.
    assert point.decisions <= 3 * 2 * 2


@pytest.mark.skipif(not HAS_REDIS, reason="redis-server is not installed")
def test_context_load_on_local_redis() -> None:
    with local_redis() as url:
        assert url is not None
        assert url.startswith("redis://127.0.0.1:")
        point = run_load(2, "redis", rounds=2, think_s=0.0, redis_url=url)

    assert point.commits == 2 * 2


@pytest.mark.skipif(not HAS_REDIS, reason="redis-server is not installed")
def test_context_load_over_two_processes() -> None:
    with local_redis() as url:
        point = run_load(5, "redis", rounds=2, think_s=0.0, redis_url=url, processes=2)

    assert point.processes == 2
    assert point.commits == 5 * 2
    # Each request weighs the other agents' outputs, from both processes: 0 to 4 of them.
    assert point.decisions <= 5 * 2 * 4
    assert point.cpu_s > 0


def test_context_load_processes_need_redis() -> None:
    with pytest.raises(ValueError, match="only through Redis"):
        run_load(4, "memory", rounds=1, think_s=0.0, processes=2)


def test_context_left_out_of_all() -> None:
    assert "theta" in experiment_names("all")
    assert "context" in STANDALONE_EXPERIMENTS
    assert "context" not in EXPERIMENTS
