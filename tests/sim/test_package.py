"""The dyntaskmas.sim package: lazy re-exports keep the in-process form light."""

from __future__ import annotations

import subprocess
import sys

import dyntaskmas.sim


def test_in_process_form_skips_http_libraries() -> None:
    code = (
        "import sys\n"
        "import dyntaskmas.sim.chat_model, dyntaskmas.sim.virtual_time\n"
        "print('openai' in sys.modules, 'aiohttp' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.split() == ["False", "False"]


def test_every_exported_name_resolves() -> None:
    for name in dyntaskmas.sim.__all__:
        assert getattr(dyntaskmas.sim, name) is not None, name


def test_unknown_name_raises_attribute_error() -> None:
    assert not hasattr(dyntaskmas.sim, "NoSuchServer")
