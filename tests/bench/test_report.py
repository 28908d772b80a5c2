"""Markdown and CSV output, the files --out writes, and plots with or without matplotlib."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from dyntaskmas.bench.experiments import ExperimentResult
from dyntaskmas.bench.plots import PlotsUnavailableError, plot_result
from dyntaskmas.bench.report import csv_text, format_cell, markdown_table, write_report

RESULT = ExperimentResult(
    name="overhead",
    title="Engine CPU time",
    columns=("tasks", "cpu_us_per_task", "wall_s"),
    rows=({"tasks": 1000, "cpu_us_per_task": 41.25, "wall_s": 0.0412},),
    notes=("A note.",),
)


def test_markdown_table_has_header_and_rows() -> None:
    text = markdown_table(RESULT.columns, RESULT.rows)

    lines = text.splitlines()
    assert lines[0] == "| tasks | cpu_us_per_task | wall_s |"
    assert lines[1] == "|---|---|---|"
    assert lines[2] == "| 1000 | 41.25 | 0.0412 |"


def test_cells_round_floats() -> None:
    assert format_cell(0.123456) == "0.1235"
    assert format_cell(72840.4) == "72840"
    assert format_cell(9999.6) == "10000"
    assert format_cell(9999.4) == "9999"
    assert format_cell(3) == "3"


def test_csv_round_trips() -> None:
    rows = list(csv.DictReader(io.StringIO(csv_text(RESULT))))

    assert rows == [{"tasks": "1000", "cpu_us_per_task": "41.25", "wall_s": "0.0412"}]


def test_report_writes_tables(tmp_path: Path) -> None:
    written, _ = write_report([RESULT], tmp_path / "out")

    names = {path.name for path in written}
    assert {"overhead.csv", "overhead.md", "report.md"} <= names
    assert "A note." in (tmp_path / "out" / "overhead.md").read_text(encoding="utf-8")


def test_report_without_matplotlib_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    written, missing = write_report([RESULT], tmp_path)

    assert missing is not None
    assert "pip install 'dyntaskmas[bench]'" in missing
    assert not any(path.suffix == ".png" for path in written)


def test_plot_without_matplotlib_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    with pytest.raises(PlotsUnavailableError, match="matplotlib is not installed"):
        plot_result(RESULT, tmp_path / "x.png")


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "overhead.png"

    plot_result(RESULT, path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adaptive_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    series = tuple(
        {
            "policy": policy,
            "start_s": start,
            "throughput_tasks_per_s": 1.0,
            "rate_429": 0.0,
            "limit": 4.0,
        }
        for policy in ("fixed 4", "auto from 4")
        for start in (0.0, 5.0)
    )
    result = ExperimentResult(
        name="adaptive", title="t", columns=("policy",), rows=(), series=series
    )
    path = tmp_path / "adaptive.png"

    plot_result(result, path)

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
