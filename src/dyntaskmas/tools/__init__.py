"""Tools that agents may call: a registry of user functions and the tool-call loop.

- :mod:`~dyntaskmas.tools.registry`: registered tools and the checks every call passes.
- :mod:`~dyntaskmas.tools.loop`: the loop that runs a work task's tool calls.

Pass a registry to :class:`~dyntaskmas.runner.Runner` (``tools=``) or
:class:`~dyntaskmas.engine.executor.Engine`; work tasks then offer its tools
to the model. Planning and the final answer never do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyntaskmas._lazy import lazy_exports

if TYPE_CHECKING:
    from dyntaskmas.tools.loop import ToolLoopResult, complete_with_tools
    from dyntaskmas.tools.registry import Tool, ToolRegistry, ToolResult

_MODULE_OF: dict[str, str] = {
    "Tool": "registry",
    "ToolLoopResult": "loop",
    "ToolRegistry": "registry",
    "ToolResult": "registry",
    "complete_with_tools": "loop",
}

__all__ = ["Tool", "ToolLoopResult", "ToolRegistry", "ToolResult", "complete_with_tools"]

__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals())
