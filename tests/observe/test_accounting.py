"""Token accounting and price tables (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dyntaskmas.errors import PriceTableError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.observe.accounting import account, load_prices, prices_from_mapping
from dyntaskmas.observe.events import Event, GraphChanged, LLMCallFinished, RunStarted
from dyntaskmas.observe.run_view import build_run_view

calls_strategy = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["m1", "m2"]),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
    ),
    max_size=30,
)


def _events(calls: list[tuple[str, str, int, int]]) -> list[Event]:
    specs = tuple(
        TaskSpec(id=task_id, description=f"do {task_id}", role=role)
        for task_id, role in (("a", "r1"), ("b", "r1"), ("c", "r2"))
    )
    events: list[Event] = [
        RunStarted("run", 0.0, "request", 2),
        GraphChanged("run", 0.0, specs, (), (), "initial graph"),
    ]
    for index, (task_id, model, prompt, completion) in enumerate(calls):
        agent = f"agent-{index % 2}"
        events.append(
            LLMCallFinished(
                "run", 1.0, task_id, agent, "e", model, 0.0, 1.0, prompt, completion, 1, ()
            )
        )
    return events


@given(calls_strategy)
def test_groups_add_up_to_total(calls: list[tuple[str, str, int, int]]) -> None:
    accounting = account(build_run_view(_events(calls)))

    total = accounting.total
    assert total.prompt_tokens == sum(call[2] for call in calls)
    assert total.completion_tokens == sum(call[3] for call in calls)
    assert total.calls == len(calls)
    for groups in (
        accounting.by_task,
        accounting.by_agent,
        accounting.by_role,
        accounting.by_model,
    ):
        assert sum(g.prompt_tokens for g in groups.values()) == total.prompt_tokens
        assert sum(g.calls for g in groups.values()) == total.calls


@given(calls_strategy)
def test_cost_is_linear_in_tokens(calls: list[tuple[str, str, int, int]]) -> None:
    prices = prices_from_mapping(
        {
            "m1": {"prompt_per_million": 1.0, "completion_per_million": 4.0},
            "m2": {"prompt_per_million": 0.5, "completion_per_million": 2},
        }
    )
    rates = {"m1": (1.0, 4.0), "m2": (0.5, 2.0)}

    accounting = account(build_run_view(_events(calls)), prices)

    expected = sum(rates[m][0] * p / 1e6 + rates[m][1] * c / 1e6 for _, m, p, c in calls)
    assert accounting.total.cost == pytest.approx(expected)
    assert accounting.unpriced_models == ()


def test_missing_price_leaves_cost_unknown() -> None:
    prices = prices_from_mapping({"m1": {"prompt_per_million": 1, "completion_per_million": 1}})

    accounting = account(build_run_view(_events([("a", "m1", 10, 1), ("b", "m2", 5, 5)])), prices)

    assert accounting.total.cost is None
    assert accounting.by_model["m1"].cost == pytest.approx(11 / 1e6)
    assert accounting.unpriced_models == ("m2",)
    assert accounting.to_json()["cost"] is None


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"m": 3}, "the price of model 'm' must be a table"),
        ({"m": {"prompt_per_million": 1}}, "lacks 'completion_per_million'"),
        ({"m": {"prompt_per_million": 1, "completion_per_million": -1}}, ">= 0, got -1"),
        ({"m": {"prompt_per_million": True, "completion_per_million": 1}}, "must be a number"),
        ({"m": {"prompt_per_million": float("nan"), "completion_per_million": 1}}, "finite"),
        ({"m": {"prompt": 1, "completion_per_million": 1}}, "unknown key 'prompt'"),
        ({"": {"prompt_per_million": 1, "completion_per_million": 1}}, "not a model name"),
    ],
)
def test_bad_price_table_rejected(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(PriceTableError, match=message) as caught:
        prices_from_mapping(mapping)

    assert "\n" not in str(caught.value)


def test_price_file_with_prices_table(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text('[prices."gpt-x"]\nprompt_per_million = 1.5\ncompletion_per_million = 6\n')

    prices = load_prices(path)

    price = prices.get("gpt-x")
    assert price is not None
    assert price.prompt_per_million == 1.5
    assert price.completion_per_million == 6.0


def test_price_file_not_toml(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text("not = = toml")

    with pytest.raises(PriceTableError, match="is not valid TOML"):
        load_prices(path)
