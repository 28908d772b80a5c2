"""CLI guards that fail fast: output folders, journal folders, closed pipes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dyntaskmas.cli import EXIT_USAGE, main


def test_bench_out_file_rejected_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a-file"
    target.write_text("", encoding="utf-8")

    code = main(["bench", "baseline", "--quick", "--out", str(target)])

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.out == ""
    assert "is a file; pass a folder" in captured.err


def test_bench_out_uncreatable_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("", encoding="utf-8")

    code = main(["bench", "baseline", "--quick", "--out", str(blocker / "inside")])

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.out == ""
    assert "cannot create the output folder" in captured.err


def test_runs_missing_journal_dir_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "absent"

    code = main(["runs", "--journal-dir", str(missing)])

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert str(missing) in captured.err
    assert "does not exist" in captured.err


def test_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    """``dyntaskmas bench ... | head -1`` must not end in a traceback."""
    command = [sys.executable, "-m", "dyntaskmas.cli", "bench", "baseline", "--quick"]
    writer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert writer.stdout is not None
    writer.stdout.readline()
    writer.stdout.close()  # the reader goes away, as `head -1` does

    _, stderr = writer.communicate(timeout=120)

    assert b"Traceback" not in stderr
    assert b"BrokenPipeError" not in stderr
