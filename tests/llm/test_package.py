"""Tests of the dyntaskmas.llm package: lazy re-exports keep light imports light."""

from __future__ import annotations

import subprocess
import sys

import dyntaskmas.llm


def test_types_import_skips_openai() -> None:
    code = (
        "import sys\n"
        "import dyntaskmas.llm.types\n"
        "print('openai' in sys.modules, 'aiohttp' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.split() == ["False", "False"]


def test_every_exported_name_resolves() -> None:
    for name in dyntaskmas.llm.__all__:
        assert getattr(dyntaskmas.llm, name) is not None, name


def test_unknown_name_raises_attribute_error() -> None:
    assert not hasattr(dyntaskmas.llm, "NoSuchBackend")
