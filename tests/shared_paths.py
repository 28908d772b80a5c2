"""Where the external data sets used by tests live.

They sit in ``shared/data`` beside the repository (``../shared/data`` from
its root) and are never copied into it. ``DYNTASKMAS_SHARED_DATA`` points
elsewhere. Tests that need a file skip with a reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[1]

SHARED_DATA = Path(os.environ.get("DYNTASKMAS_SHARED_DATA", _REPOSITORY.parent / "shared" / "data"))
PARALLELQA = SHARED_DATA / "llmcompiler" / "parallelqa_dataset.json"
