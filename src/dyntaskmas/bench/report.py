"""Benchmark tables as Markdown and CSV, and the files that ``--out`` writes.

The formatting functions are pure and return strings; :func:`write_report`
is the only one that writes files. PNG plots come from
:mod:`dyntaskmas.bench.plots` when matplotlib is installed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dyntaskmas.bench.experiments import ExperimentResult
from dyntaskmas.bench.plots import PlotsUnavailableError, plot_result


def format_cell(value: Any) -> str:
    """Return a table cell: floats with up to 4 significant digits, others as text.

    From 10,000 up a float is rounded to a whole number, which keeps at least
    4 significant digits and never switches to exponent notation.
    """
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 9999.5 else f"{value:.0f}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """Return a GitHub-flavoured Markdown table of ``rows`` under ``columns``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def csv_text(result: ExperimentResult) -> str:
    """Return the experiment's rows as CSV with a header line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(result.columns), lineterminator="\n")
    writer.writeheader()
    for row in result.rows:
        writer.writerow({column: row.get(column, "") for column in result.columns})
    return buffer.getvalue()


def markdown_section(result: ExperimentResult) -> str:
    """Return the experiment's title, table, notes and workload shapes as Markdown."""
    parts = [f"## {result.name}: {result.title}\n", markdown_table(result.columns, result.rows)]
    for note in result.notes:
        parts.append(f"\n{note}\n")
    if result.shapes:
        shape_columns = ("workload", *next(iter(result.shapes.values())).keys())
        shape_rows = [{"workload": name, **shape} for name, shape in result.shapes.items()]
        parts.append("\nWorkloads (costs are seconds alone on an idle server):\n\n")
        parts.append(markdown_table(shape_columns, shape_rows))
    return "".join(parts)


def write_report(
    results: Sequence[ExperimentResult], out_dir: Path
) -> tuple[list[Path], str | None]:
    """Write ``NAME.csv``, ``NAME.md`` and ``NAME.png`` per experiment, and ``report.md``.

    Returns the paths written and, when no plot could be drawn, the reason.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    plots_missing: str | None = None
    sections = []
    for result in results:
        section = markdown_section(result)
        sections.append(section)
        for suffix, text in ((".csv", csv_text(result)), (".md", section)):
            path = out_dir / f"{result.name}{suffix}"
            path.write_text(text, encoding="utf-8")
            written.append(path)
        if plots_missing is None:
            try:
                png = out_dir / f"{result.name}.png"
                plot_result(result, png)
                written.append(png)
            except PlotsUnavailableError as exc:
                plots_missing = str(exc)
    report = out_dir / "report.md"
    report.write_text("# dyntaskmas benchmark report\n\n" + "\n".join(sections), encoding="utf-8")
    written.append(report)
    return written, plots_missing
