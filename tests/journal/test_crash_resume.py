"""SIGKILL `dyntaskmas run` at 20 random points, resume after each, check the outcome.

Runs ``scripts/crash_resume_check.py`` (which anyone can rerun by hand) on a
30-task planned workload served by a scripted server on 127.0.0.1.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_resume_check.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("crash_resume_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_sigkill_at_20_points_loses_nothing(tmp_path: Path) -> None:
    check = load_script()
    report = await check.crash_resume_check(kills=20, seed=7, workdir=tmp_path)
    assert report.problems == []
    assert report.kills == 20
    assert report.tasks == 30
    assert report.final_status == "succeeded"
    assert report.final_answer == report.reference_answer
