"""Calibration of the latency model from SplitwiseSim's measured timings.

The source is ``perf_model.csv`` from the SplitwiseSim repository
(github.com/Mutinifni/splitwise-sim, MIT licence): 5 repeated measurements
per point of Llama2-70B and BLOOM-176B on DGX-A100 and DGX-H100, with
columns ``model, hardware, prompt_size, batch_size, token_size,
prompt_time, token_time, tensor_parallel`` (times in milliseconds). The
prompt sweep runs at batch size 1 and the batch sweep at 512 prompt tokens.

What is used from the rows of one ``(model, hardware, tensor_parallel)``:

- ``prompt_time`` against ``prompt_size * batch_size``. A batched prefill
  costs about what one prompt of the same total length costs: for H100 and
  tensor parallelism 4, 4 x 512 tokens take 197 ms and 1 x 2048 take 201 ms.
  So the prefill curve is the mean time per total token count.
- ``token_time`` against ``batch_size``, from the batch sweep (prompt size
  512): the mean time of one decode step. At batch size 1 it hardly depends
  on the prompt length (28.4 to 30.0 ms from 128 to 8192 prompt tokens), so
  the simulator ignores context length.
- ``e2e_time`` is not used, because the runs with long outputs stopped early.

Means are made non-decreasing with a running maximum: the batch-4 decode
mean is 0.01 ms below the batch-2 mean, which is measurement noise.

Scaling to another model size is an estimate: every duration is multiplied
by ``(target_params_b / source_params_b) * (source_tp / target_tp)``, that
is time is taken as proportional to the parameter count divided by the
GPUs that share the work. The defaults scale Llama2-70B with tensor
parallelism 4 on H100-80GB to an 8B model on one H100-80GB, a factor of
0.457. Tensor parallelism 4 is chosen because its rows are consistent at
every batch size, while the batch-64 rows with tensor parallelism 2 are
not (a 32,768-token prefill is reported 7 times faster than a 16,384-token
one), and 8 GPUs add the most communication time.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dyntaskmas.errors import ConfigError
from dyntaskmas.sim.latency import LatencyModel

_MS_PER_S = 1000.0
#: The prompt size of SplitwiseSim's batch sweep; decode times come from it.
BATCH_SWEEP_PROMPT_TOKENS = 512


@dataclass(frozen=True)
class PerfRow:
    """One measurement: a prefill and a decode time for one configuration."""

    model: str
    hardware: str
    tensor_parallel: int
    prompt_size: int
    batch_size: int
    prompt_time_ms: float
    token_time_ms: float


@dataclass(frozen=True)
class Calibration:
    """A calibrated latency model and where it came from.

    ``prefill_s_per_token`` and ``prefill_base_s`` are a least-squares line
    through the same prefill rows, for callers that need one rate, such as
    edge-weight transfer estimates. The latency model uses the table.
    """

    latency: LatencyModel
    model: str
    hardware: str
    tensor_parallel: int
    rows_used: int
    scale_factor: float
    prefill_s_per_token: float
    prefill_base_s: float


def read_perf_model(path: Path) -> list[PerfRow]:
    """Read SplitwiseSim's ``perf_model.csv`` into rows.

    Raises :class:`ConfigError` naming the file when it is missing or a row
    is not in the expected format.
    """
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [_parse_row(record, path, line) for line, record in _records(handle)]
    except FileNotFoundError:
        raise ConfigError(f"performance model file {str(path)!r} does not exist") from None


def calibrate(
    rows: Iterable[PerfRow],
    *,
    model: str = "llama2-70b",
    hardware: str = "h100-80gb",
    tensor_parallel: int = 4,
    source_params_b: float = 70.0,
    target_params_b: float = 8.0,
    target_tensor_parallel: int = 1,
) -> Calibration:
    """Build a :class:`LatencyModel` from the rows of one configuration, scaled.

    Raises :class:`ConfigError` when no row matches the configuration.
    """
    for name, value in (
        ("source_params_b", source_params_b),
        ("target_params_b", target_params_b),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a finite number > 0, got {value}")
    if tensor_parallel < 1 or target_tensor_parallel < 1:
        raise ConfigError("tensor parallelism must be at least 1")

    selected = [
        row
        for row in rows
        if row.model == model
        and row.hardware == hardware
        and row.tensor_parallel == tensor_parallel
    ]
    if not selected:
        raise ConfigError(
            f"no rows for model {model!r} on {hardware!r} with tensor parallelism "
            f"{tensor_parallel}; pick a configuration that the file contains"
        )
    scale = (target_params_b / source_params_b) * (tensor_parallel / target_tensor_parallel)

    prefill_ms: dict[int, list[float]] = defaultdict(list)
    decode_ms: dict[int, list[float]] = defaultdict(list)
    for row in selected:
        prefill_ms[row.prompt_size * row.batch_size].append(row.prompt_time_ms)
        if row.prompt_size == BATCH_SWEEP_PROMPT_TOKENS:
            decode_ms[row.batch_size].append(row.token_time_ms)
    if not decode_ms:
        raise ConfigError(
            f"no batch-sweep rows (prompt size {BATCH_SWEEP_PROMPT_TOKENS}) for model "
            f"{model!r} on {hardware!r}; decode times cannot be calibrated"
        )

    latency = LatencyModel.from_tables(
        _mean_points(prefill_ms, scale), _mean_points(decode_ms, scale)
    )
    slope_ms, intercept_ms = _least_squares(
        [(row.prompt_size * row.batch_size, row.prompt_time_ms) for row in selected]
    )
    return Calibration(
        latency=latency,
        model=model,
        hardware=hardware,
        tensor_parallel=tensor_parallel,
        rows_used=len(selected),
        scale_factor=scale,
        prefill_s_per_token=max(0.0, slope_ms * scale / _MS_PER_S),
        prefill_base_s=max(0.0, intercept_ms * scale / _MS_PER_S),
    )


def calibrate_from_splitwise(
    path: Path,
    *,
    model: str = "llama2-70b",
    hardware: str = "h100-80gb",
    tensor_parallel: int = 4,
    source_params_b: float = 70.0,
    target_params_b: float = 8.0,
    target_tensor_parallel: int = 1,
) -> Calibration:
    """Read ``perf_model.csv`` at ``path`` and :func:`calibrate` from its rows."""
    return calibrate(
        read_perf_model(path),
        model=model,
        hardware=hardware,
        tensor_parallel=tensor_parallel,
        source_params_b=source_params_b,
        target_params_b=target_params_b,
        target_tensor_parallel=target_tensor_parallel,
    )


def _mean_points(samples: Mapping[int, list[float]], scale: float) -> list[tuple[float, float]]:
    """Return ``(x, mean seconds * scale)`` by increasing x, made non-decreasing."""
    points: list[tuple[float, float]] = []
    highest = 0.0
    for x in sorted(samples):
        highest = max(highest, statistics.fmean(samples[x]) * scale / _MS_PER_S)
        points.append((float(x), highest))
    return points


def _least_squares(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Return the slope and intercept of the least-squares line through ``points``."""
    xs = [float(x) for x, _ in points]
    ys = [y for _, y in points]
    if len(set(xs)) < 2:
        return 0.0, statistics.fmean(ys)
    slope, intercept = statistics.linear_regression(xs, ys)
    return slope, intercept


def _records(handle: Iterable[str]) -> Iterable[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(handle)
    for record in reader:
        yield reader.line_num, record


def _parse_row(record: Mapping[str, str], path: Path, line: int) -> PerfRow:
    try:
        return PerfRow(
            model=record["model"],
            hardware=record["hardware"],
            tensor_parallel=int(record["tensor_parallel"]),
            prompt_size=int(record["prompt_size"]),
            batch_size=int(record["batch_size"]),
            prompt_time_ms=float(record["prompt_time"]),
            token_time_ms=float(record["token_time"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"line {line} of {str(path)!r} is not a SplitwiseSim performance row "
            f"({type(exc).__name__}: {exc}); expected the columns model, hardware, "
            f"prompt_size, batch_size, prompt_time, token_time, tensor_parallel"
        ) from None
