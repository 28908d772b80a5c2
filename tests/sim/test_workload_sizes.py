"""Token-count distributions and the Azure trace loader.

The tests that read the trace skip when the shared data is absent.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dyntaskmas.errors import ConfigError
from dyntaskmas.sim.workload_sizes import (
    DEFAULT_SIZES,
    SERVICES,
    TokenLengths,
    azure_sizes,
    read_azure_trace,
    summarise_pairs,
    trace_file_name,
)
from shared_paths import SHARED_DATA

AZURE_TRACE = SHARED_DATA / "azure_llm_2023"

needs_trace = pytest.mark.skipif(
    not (AZURE_TRACE / trace_file_name("conv")).is_file(),
    reason=f"Azure LLM trace not found in {AZURE_TRACE}",
)


def test_summary_takes_middle_of_each_slice() -> None:
    lengths = TokenLengths.summarised(range(100), quantiles=4)

    # Probabilities 0.125, 0.375, 0.625, 0.875 of 0..99.
    assert lengths.values == (12, 37, 62, 87)


def test_sample_draws_only_given_values() -> None:
    lengths = TokenLengths((3, 5, 8))
    rng = random.Random(1)

    draws = {lengths.sample(rng) for _ in range(200)}

    assert draws == {3, 5, 8}


def test_sample_repeats_for_same_seed() -> None:
    lengths = DEFAULT_SIZES["conv"].output

    first = [lengths.sample(random.Random(42)) for _ in range(5)]
    second = [lengths.sample(random.Random(42)) for _ in range(5)]

    assert first == second


def test_empty_distribution_is_rejected() -> None:
    with pytest.raises(ConfigError):
        TokenLengths(())


def test_defaults_need_no_data() -> None:
    sizes = azure_sizes()

    assert sizes == DEFAULT_SIZES["conv"]
    assert len(sizes.output.values) == 20


def test_missing_trace_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        azure_sizes(tmp_path)


def test_bad_trace_row_names_line(tmp_path: Path) -> None:
    path = tmp_path / trace_file_name("conv")
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,374,forty\n",
        encoding="utf-8",
    )

    with pytest.raises(ConfigError, match="line 2"):
        read_azure_trace(path)


@needs_trace
@pytest.mark.parametrize("service", SERVICES)
def test_defaults_match_trace_summary(service: str) -> None:
    pairs = read_azure_trace(AZURE_TRACE / trace_file_name(service))  # type: ignore[arg-type]

    assert summarise_pairs(pairs) == DEFAULT_SIZES[service]  # type: ignore[index]


@needs_trace
def test_trace_sizes_use_every_request() -> None:
    sizes = azure_sizes(AZURE_TRACE, "conv")

    assert len(sizes.prompt.values) == 19366
    assert max(sizes.output.values) == 1000
