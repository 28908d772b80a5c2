"""PNG plots of benchmark results, drawn with matplotlib when it is installed.

matplotlib is an optional dependency (the ``bench`` extra). Without it
:func:`plot_result` raises :class:`PlotsUnavailableError`, whose message
explains how to install it. Tables and CSV files do not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dyntaskmas.bench.experiments import ExperimentResult
from dyntaskmas.errors import ConfigError


class PlotsUnavailableError(ConfigError):
    """matplotlib is not installed, so no plot can be drawn."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never open a window
        import matplotlib.pyplot as pyplot
    except ImportError:
        raise PlotsUnavailableError(
            "matplotlib is not installed, so no PNG plots were written; install it with "
            "pip install 'dyntaskmas[bench]'"
        ) from None
    return pyplot


def plot_result(result: ExperimentResult, path: Path) -> None:
    """Draw the standard plot of ``result`` into the PNG file ``path``."""
    pyplot = _pyplot()
    if result.name == "adaptive":
        _adaptive(pyplot, result, path)
        return
    figure, axes = pyplot.subplots(figsize=(7, 4.2), dpi=110)
    try:
        drawers = {
            "baseline": _baseline,
            "scaling": _scaling,
            "utilisation": _utilisation,
            "asynchow": _asynchow,
            "overhead": _overhead,
            "theta": _theta,
            "context": _context,
            "optimiser": _optimiser,
        }
        drawers[result.name](axes, result.rows)
        axes.set_title(result.title, fontsize=9)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)


def _series(
    rows: Sequence[Mapping[str, Any]], group: str, x: str, y: str
) -> dict[str, tuple[list[Any], list[float]]]:
    """Split ``rows`` into one (xs, ys) series per value of ``group``, in order of appearance."""
    series: dict[str, tuple[list[Any], list[float]]] = {}
    for row in rows:
        xs, ys = series.setdefault(str(row[group]), ([], []))
        xs.append(row[x])
        ys.append(float(row[y]))
    return series


def _grouped_bars(
    axes: Any, rows: Sequence[Mapping[str, Any]], group: str, bar: str, y: str
) -> None:
    groups = list(dict.fromkeys(str(row[group]) for row in rows))
    bars = list(dict.fromkeys(str(row[bar]) for row in rows))
    width = 0.8 / len(bars)
    values = {(str(row[group]), str(row[bar])): float(row[y]) for row in rows}
    for index, name in enumerate(bars):
        positions = [g + index * width for g in range(len(groups))]
        axes.bar(positions, [values.get((g, name), 0.0) for g in groups], width, label=name)
    axes.set_xticks([g + 0.4 - width / 2 for g in range(len(groups))], groups)
    axes.legend(fontsize=7)


def _baseline(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    _grouped_bars(axes, rows, "complexity", "policy", "makespan_s")
    axes.set_ylabel("makespan (simulated s)")


def _scaling(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for name, (xs, ys) in _series(rows, "server", "agents", "speedup").items():
        axes.plot(xs, ys, marker="o", label=f"server: {name}")
    agents = sorted({row["agents"] for row in rows})
    axes.plot(agents, agents, linestyle=":", color="grey", label="linear")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log", base=2)
    axes.set_xlabel("agents")
    axes.set_ylabel("throughput / one agent's")
    axes.legend(fontsize=7)


def _utilisation(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    _grouped_bars(axes, rows, "policy", "workload", "utilisation")
    axes.set_ylabel("server utilisation")
    axes.set_ylim(0, 1.05)
    axes.tick_params(axis="x", labelsize=7)


def _asynchow(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for name, (xs, ys) in _series(rows, "policy", "agents", "mean_ratio").items():
        axes.plot(xs, ys, marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("agents k")
    axes.set_ylabel("mean makespan / lower bound")
    axes.legend(fontsize=7)


def _overhead(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    axes.plot([r["tasks"] for r in rows], [r["cpu_us_per_task"] for r in rows], marker="o")
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)
    axes.set_xlabel("no-op tasks")
    axes.set_ylabel("engine CPU per task (us)")


def _theta(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    thetas = [row["theta"] for row in rows]
    axes.plot(thetas, [row["task_success"] for row in rows], marker="o", label="task success")
    axes.set_xlabel("θ")
    axes.set_ylabel("share of tasks given their fact")
    axes.set_ylim(0, 1.05)
    tokens = axes.twinx()
    tokens.plot(
        thetas, [row["context_tokens"] for row in rows], marker="s", color="grey", label="tokens"
    )
    tokens.set_ylabel("context tokens moved")
    axes.legend(loc="upper right", fontsize=7)


def _context(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    for name, (xs, ys) in _series(rows, "store", "agents", "decisions_per_s").items():
        axes.plot(xs, ys, marker="o", label=f"decisions, {name}")
    for name, (xs, ys) in _series(rows, "store", "agents", "commits_per_s").items():
        axes.plot(xs, ys, marker="s", linestyle="--", label=f"commits, {name}")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("concurrent agents")
    axes.set_ylabel("per real second")
    axes.legend(fontsize=7)


def _optimiser(axes: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Bars of makespan off and on per workload and agent count, at the highest call latency."""
    overhead = max(row["call_overhead_s"] for row in rows)
    labelled = [
        {**row, "run": f"{row['workload']}\n{row['agents']} agents"}
        for row in rows
        if row["call_overhead_s"] == overhead
    ]
    _grouped_bars(axes, labelled, "run", "policy", "makespan_s")
    axes.tick_params(axis="x", labelsize=6)
    axes.set_ylabel(f"makespan (simulated s), {overhead:g} s per call")


def _adaptive(pyplot: Any, result: ExperimentResult, path: Path) -> None:
    """Draw throughput, concurrency limit and 429 share over time, one line per policy."""
    figure, (throughput, limit, rejected) = pyplot.subplots(
        3, 1, figsize=(7, 7.5), dpi=110, sharex=True
    )
    try:
        series = list(result.series)
        for name, (xs, ys) in _series(
            series, "policy", "start_s", "throughput_tasks_per_s"
        ).items():
            throughput.plot(xs, ys, label=name)
        for name, (xs, ys) in _series(series, "policy", "start_s", "limit").items():
            limit.plot(xs, ys, label=name)
        for name, (xs, ys) in _series(series, "policy", "start_s", "rate_429").items():
            rejected.plot(xs, ys, label=name)
        throughput.set_ylabel("tasks per simulated s")
        limit.set_ylabel("concurrency limit")
        rejected.set_ylabel("share of attempts with 429")
        rejected.set_xlabel("simulated s")
        # The middle plot has room between the limits of 24 and 64.
        limit.legend(fontsize=7, ncol=2, loc="center right")
        throughput.set_title(result.title, fontsize=9)
        for axes in (throughput, limit, rejected):
            axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path)
    finally:
        pyplot.close(figure)
