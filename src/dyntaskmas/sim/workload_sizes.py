"""Prompt and output token counts for simulated requests, after the Azure LLM trace.

The Azure LLM inference trace 2023 (github.com/Azure/AzurePublicDataset,
CC-BY 4.0; Patel et al., "Splitwise", ISCA 2024) has one CSV per service,
``AzureLLMInferenceTrace_code.csv`` and ``AzureLLMInferenceTrace_conv.csv``,
with the columns ``TIMESTAMP, ContextTokens, GeneratedTokens``.

:class:`TokenLengths` is an empirical distribution that samples one of its
values uniformly with an injected, seeded :class:`random.Random`.
:func:`azure_sizes` reads a trace file when it is given one, and otherwise
returns built-in summaries of both services (20 quantiles each, in
``DEFAULT_SIZES``), so nothing needs the data at run time.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from dyntaskmas.errors import ConfigError

Service = Literal["conv", "code"]
SERVICES: tuple[Service, ...] = ("conv", "code")

#: Quantiles kept in the built-in summaries.
SUMMARY_QUANTILES = 20


@dataclass(frozen=True)
class TokenLengths:
    """An empirical distribution of token counts; each value is equally likely."""

    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ConfigError("a token-length distribution needs at least one value")
        if min(self.values) < 0:
            raise ConfigError(f"token counts must be >= 0, got {min(self.values)}")

    @classmethod
    def summarised(cls, values: Iterable[int], quantiles: int = SUMMARY_QUANTILES) -> TokenLengths:
        """Return ``quantiles`` equally likely values that summarise ``values``.

        Value ``i`` is the sample at probability ``(i + 0.5) / quantiles``, the
        middle of the ``i``-th of ``quantiles`` equal slices of the sorted data.
        """
        ordered = sorted(values)
        if not ordered:
            raise ConfigError("cannot summarise an empty list of token counts")
        count = len(ordered)
        return cls(tuple(ordered[(2 * i + 1) * count // (2 * quantiles)] for i in range(quantiles)))

    def sample(self, rng: random.Random) -> int:
        """Draw one token count."""
        return self.values[rng.randrange(len(self.values))]


@dataclass(frozen=True)
class WorkloadSizes:
    """Distributions of prompt (context) and output (generated) token counts."""

    prompt: TokenLengths
    output: TokenLengths


def trace_file_name(service: Service) -> str:
    """Return the trace file's name for ``service``."""
    return f"AzureLLMInferenceTrace_{service}.csv"


def read_azure_trace(path: Path) -> list[tuple[int, int]]:
    """Read ``(ContextTokens, GeneratedTokens)`` pairs from one trace CSV.

    Raises :class:`ConfigError` naming the file and line when it is missing
    or a row is not in the trace's format.
    """
    try:
        handle = path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"trace file {str(path)!r} does not exist") from None
    with handle:
        reader = csv.DictReader(handle)
        pairs = []
        for record in reader:
            try:
                pairs.append((int(record["ContextTokens"]), int(record["GeneratedTokens"])))
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(
                    f"line {reader.line_num} of {str(path)!r} is not an Azure trace row "
                    f"({type(exc).__name__}: {exc}); expected the columns TIMESTAMP, "
                    f"ContextTokens, GeneratedTokens"
                ) from None
    if not pairs:
        raise ConfigError(f"trace file {str(path)!r} contains no requests")
    return pairs


def sizes_from_pairs(pairs: Sequence[tuple[int, int]]) -> WorkloadSizes:
    """Return the empirical distributions of every prompt and output count in ``pairs``."""
    return WorkloadSizes(
        prompt=TokenLengths(tuple(prompt for prompt, _ in pairs)),
        output=TokenLengths(tuple(output for _, output in pairs)),
    )


def summarise_pairs(pairs: Sequence[tuple[int, int]]) -> WorkloadSizes:
    """Return :meth:`TokenLengths.summarised` distributions of ``pairs``."""
    return WorkloadSizes(
        prompt=TokenLengths.summarised(prompt for prompt, _ in pairs),
        output=TokenLengths.summarised(output for _, output in pairs),
    )


def azure_sizes(directory: Path | None = None, service: Service = "conv") -> WorkloadSizes:
    """Return the token counts of one service of the Azure trace.

    With ``directory``, every request of its trace file is used; without
    it, the built-in 20-quantile summary. Raises :class:`ConfigError` when
    ``directory`` is given but has no trace file for ``service``.
    """
    if service not in SERVICES:
        raise ConfigError(f"service must be one of {list(SERVICES)}, got {service!r}")
    if directory is None:
        return DEFAULT_SIZES[service]
    return sizes_from_pairs(read_azure_trace(directory / trace_file_name(service)))


# 20-quantile summaries computed by summarise_pairs() from the two trace
# files; a test recomputes them when the data is present.
# fmt: off
DEFAULT_SIZES: dict[Service, WorkloadSizes] = {
    "conv": WorkloadSizes(
        prompt=TokenLengths(
            (120, 200, 235, 379, 393, 400, 407, 428, 922, 1005,
             1034, 1058, 1083, 1112, 1153, 1277, 1434, 2310, 4075, 4092)
        ),
        output=TokenLengths(
            (28, 48, 60, 72, 82, 88, 93, 99, 108, 120,
             139, 162, 195, 373, 391, 396, 406, 416, 430, 522)
        ),
    ),
    "code": WorkloadSizes(
        prompt=TokenLengths(
            (44, 102, 185, 299, 484, 679, 863, 1016, 1153, 1370,
             1585, 1798, 2048, 2305, 2578, 2942, 3538, 4434, 6097, 7435)
        ),
        output=TokenLengths(
            (6, 6, 7, 8, 9, 9, 10, 11, 12, 13,
             14, 15, 16, 19, 22, 26, 33, 46, 69, 145)
        ),
    ),
}
# fmt: on
