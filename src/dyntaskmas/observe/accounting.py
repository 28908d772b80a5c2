"""Token and cost accounting: where a run's tokens went, and what they cost.

Token counts are the servers' usage fields, one
:class:`~dyntaskmas.observe.events.LLMCallFinished` per model call, summed
per task, agent, role, model and run. Costs come only from prices the user
gives (:class:`Prices`); none are built in, because prices differ by
provider and change. A model without a price leaves the cost of its calls
unknown, and the totals report it as unknown instead of counting them as free.

A price table maps model names to prices in currency units per million
tokens, as a mapping or a TOML file::

    ["gpt-4o-mini"]
    prompt_per_million = 0.15
    completion_per_million = 0.60

A TOML file may also put the same entries under a ``[prices]`` table.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dyntaskmas.errors import PriceTableError
from dyntaskmas.observe.run_view import RunView

PRICE_KEYS = ("prompt_per_million", "completion_per_million")


@dataclass(frozen=True)
class ModelPrice:
    """Prices of one model, in currency units per million tokens."""

    prompt_per_million: float
    completion_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.prompt_per_million
            + completion_tokens * self.completion_per_million
        ) / 1_000_000


@dataclass(frozen=True)
class Prices:
    """Per-model token prices; an empty table prices nothing."""

    models: Mapping[str, ModelPrice] = field(default_factory=dict)

    def get(self, model: str) -> ModelPrice | None:
        return self.models.get(model)


def prices_from_mapping(mapping: Mapping[str, Any]) -> Prices:
    """Validate ``{model: {"prompt_per_million": x, "completion_per_million": y}}``.

    Raises :class:`~dyntaskmas.errors.PriceTableError` with a one-line
    message naming the model and the key at fault.
    """
    if not isinstance(mapping, Mapping):
        raise PriceTableError(
            f"the price table must map model names to tables, got {type(mapping).__name__}"
        )
    models: dict[str, ModelPrice] = {}
    for model, entry in mapping.items():
        if not isinstance(model, str) or not model:
            raise PriceTableError(f"price table key {model!r} is not a model name")
        if not isinstance(entry, Mapping):
            raise PriceTableError(
                f"the price of model {model!r} must be a table with "
                f"{' and '.join(PRICE_KEYS)}, got {entry!r}",
                model,
            )
        unknown = sorted(set(entry) - set(PRICE_KEYS))
        if unknown:
            raise PriceTableError(
                f"the price of model {model!r} has unknown key {unknown[0]!r}; "
                f"use {' and '.join(PRICE_KEYS)}",
                model,
            )
        values: dict[str, float] = {}
        for key in PRICE_KEYS:
            if key not in entry:
                raise PriceTableError(f"the price of model {model!r} lacks {key!r}", model)
            value = entry[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise PriceTableError(
                    f"{key} of model {model!r} must be a number, got {value!r}", model
                )
            if not math.isfinite(value) or value < 0:
                raise PriceTableError(
                    f"{key} of model {model!r} must be a finite number >= 0, got {value!r}",
                    model,
                )
            values[key] = float(value)
        models[model] = ModelPrice(**values)
    return Prices(models)


def load_prices(path: Path | str) -> Prices:
    """Read a TOML price table (see the module docstring); raise PriceTableError if unusable."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PriceTableError(f"price file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceTableError(f"cannot read price file {str(path)!r}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PriceTableError(f"price file {str(path)!r} is not valid TOML: {exc}") from None
    if set(data) == {"prices"}:
        data = data["prices"]
    try:
        return prices_from_mapping(data)
    except PriceTableError as exc:
        raise PriceTableError(f"price file {str(path)!r}: {exc}", exc.model) from None


@dataclass
class TokenTotals:
    """Tokens and model calls of one group; ``cost`` is None when a call's model has no price."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    cost: float | None = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int, cost: float | None) -> None:
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.calls += 1
        self.cost = None if cost is None or self.cost is None else self.cost + cost

    def to_json(self, *, priced: bool) -> dict[str, Any]:
        item: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "calls": self.calls,
        }
        if priced:
            item["cost"] = None if self.cost is None else round(self.cost, 6)
        return item


@dataclass
class Accounting:
    """A run's tokens, calls and costs: in total and by task, agent, role and model.

    ``priced`` is false when no price table was given; ``unpriced_models``
    lists the models that were called but have no price.
    """

    total: TokenTotals
    by_task: dict[str, TokenTotals]
    by_agent: dict[str, TokenTotals]
    by_role: dict[str, TokenTotals]
    by_model: dict[str, TokenTotals]
    priced: bool
    unpriced_models: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        def group(totals: Mapping[str, TokenTotals]) -> dict[str, Any]:
            return {key: value.to_json(priced=self.priced) for key, value in totals.items()}

        return {
            **self.total.to_json(priced=self.priced),
            "by_task": group(self.by_task),
            "by_agent": group(self.by_agent),
            "by_role": group(self.by_role),
            "by_model": group(self.by_model),
            "unpriced_models": list(self.unpriced_models),
        }


def account(view: RunView, prices: Prices | None = None) -> Accounting:
    """Sum the tokens of every model call in ``view``, and their cost under ``prices``."""
    priced = prices is not None and bool(prices.models)
    total = TokenTotals()
    by_task: dict[str, TokenTotals] = {}
    by_agent: dict[str, TokenTotals] = {}
    by_role: dict[str, TokenTotals] = {}
    by_model: dict[str, TokenTotals] = {}
    unpriced: dict[str, None] = {}
    for task in view.tasks.values():
        for call in task.calls:
            price = prices.get(call.model) if prices is not None else None
            cost = price.cost(call.prompt_tokens, call.completion_tokens) if price else None
            if priced and price is None:
                unpriced.setdefault(call.model)
            groups = [
                total,
                by_task.setdefault(task.id, TokenTotals()),
                by_role.setdefault(task.role, TokenTotals()),
                by_model.setdefault(call.model, TokenTotals()),
            ]
            if call.agent is not None:
                groups.append(by_agent.setdefault(call.agent, TokenTotals()))
            for totals in groups:
                totals.add(call.prompt_tokens, call.completion_tokens, cost)
    return Accounting(total, by_task, by_agent, by_role, by_model, priced, tuple(unpriced))


def format_accounting(accounting: Accounting) -> str:
    """Return the accounting as text: the run's totals, then one line per agent and role."""
    total = accounting.total
    lines = [
        f"Tokens: {total.prompt_tokens:,} prompt + {total.completion_tokens:,} completion "
        f"in {_count(total.calls, 'model call')}" + _cost_text(total, accounting),
    ]
    for title, groups in (("agent", accounting.by_agent), ("role", accounting.by_role)):
        for name, totals in groups.items():
            lines.append(
                f"  {title} {name}: {totals.prompt_tokens:,} + {totals.completion_tokens:,} "
                f"tokens, {_count(totals.calls, 'call')}" + _cost_text(totals, accounting)
            )
    if accounting.unpriced_models:
        lines.append(
            "  no price for model "
            + ", ".join(repr(model) for model in accounting.unpriced_models)
            + "; add it to the price table to see the cost"
        )
    return "\n".join(lines)


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _cost_text(totals: TokenTotals, accounting: Accounting) -> str:
    if not accounting.priced:
        return ""
    if totals.cost is None:
        return ", cost unknown"
    return f", cost {totals.cost:.6f}"
