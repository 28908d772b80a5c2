"""The bench subcommand: JSON lines, report files, and the data folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dyntaskmas.cli import EXIT_OK, EXIT_USAGE, bench_data_dir, main


def test_bench_json_prints_one_object(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "baseline", "--quick", "--json"])

    lines = capsys.readouterr().out.splitlines()
    assert status == EXIT_OK
    assert len(lines) == 1
    assert json.loads(lines[0])["experiment"] == "baseline"


def test_bench_out_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "utilisation", "--quick", "--out", str(tmp_path)])

    assert status == EXIT_OK
    assert (tmp_path / "utilisation.csv").is_file()
    assert (tmp_path / "report.md").is_file()
    assert "## utilisation" in capsys.readouterr().out


def test_asynchow_without_data_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["bench", "asynchow", "--quick", "--data-dir", str(tmp_path)])

    assert status == EXIT_USAGE
    assert "AsyncHow data is missing" in capsys.readouterr().err


def test_all_without_data_skips_asynchow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["bench", "all", "--quick", "--json", "--data-dir", str(tmp_path)])

    captured = capsys.readouterr()
    names = [json.loads(line)["experiment"] for line in captured.out.splitlines()]
    assert status == EXIT_OK
    assert names == [
        "baseline",
        "scaling",
        "utilisation",
        "overhead",
        "theta",
        "adaptive",
        "optimiser",
    ]
    assert "skipping the asynchow experiment" in captured.err


def test_data_dir_prefers_option_then_environment() -> None:
    assert bench_data_dir(Path("/d"), {"DYNTASKMAS_DATA_DIR": "/e"}) == Path("/d")
    assert bench_data_dir(None, {"DYNTASKMAS_DATA_DIR": "/e"}) == Path("/e")
    assert bench_data_dir(None, {}) == Path("../shared/data")


def test_unknown_experiment_is_usage_error() -> None:
    with pytest.raises(SystemExit) as raised:
        main(["bench", "speed"])

    assert raised.value.code == EXIT_USAGE
