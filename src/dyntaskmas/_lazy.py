"""Lazy re-exports for package ``__init__`` modules.

A package whose submodules import heavy dependencies (the openai SDK,
aiohttp, redis) lists its public names with the submodule that defines
each, and imports a submodule only when one of its names is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_exports(
    package: str, module_of: Mapping[str, str], namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return the module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``module_of`` maps each public name to the submodule that defines it;
    ``namespace`` is the package's ``globals()``, where a name is cached once
    imported so later lookups skip ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        module_name = module_of.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module_name}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return __getattr__, __dir__
