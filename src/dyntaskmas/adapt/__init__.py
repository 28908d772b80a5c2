"""The adaptive workflow manager: monitor, concurrency allocator and cost calibration.

- :mod:`~dyntaskmas.adapt.monitor`: M(t), windowed statistics per endpoint and role.
- :mod:`~dyntaskmas.adapt.controller`: the next concurrency limit from M(t) (pure).
- :mod:`~dyntaskmas.adapt.roles`: which agents move between role groups (pure).
- :mod:`~dyntaskmas.adapt.allocator`: applies both rules on a clock, emits events.
- :mod:`~dyntaskmas.adapt.calibration`: C(v) and I(u, v) from measured latencies.

Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyntaskmas._lazy import lazy_exports

if TYPE_CHECKING:
    from dyntaskmas.adapt.allocator import Allocator
    from dyntaskmas.adapt.calibration import CostCalibrator, CostEstimates
    from dyntaskmas.adapt.controller import (
        ControllerConfig,
        ControllerState,
        Decision,
        Observation,
        decide,
        initial_state,
    )
    from dyntaskmas.adapt.monitor import (
        AttemptSummary,
        EndpointStats,
        Monitor,
        MonitorSnapshot,
        RoleStats,
        percentile,
    )
    from dyntaskmas.adapt.roles import (
        GroupObservation,
        Move,
        RoleAllocatorConfig,
        RoleAllocatorState,
        RoleDecision,
        decide_roles,
    )

_MODULE_OF: dict[str, str] = {
    "Allocator": "allocator",
    "AttemptSummary": "monitor",
    "ControllerConfig": "controller",
    "ControllerState": "controller",
    "CostCalibrator": "calibration",
    "CostEstimates": "calibration",
    "Decision": "controller",
    "EndpointStats": "monitor",
    "GroupObservation": "roles",
    "Move": "roles",
    "RoleAllocatorConfig": "roles",
    "RoleAllocatorState": "roles",
    "RoleDecision": "roles",
    "decide_roles": "roles",
    "Monitor": "monitor",
    "MonitorSnapshot": "monitor",
    "Observation": "controller",
    "RoleStats": "monitor",
    "decide": "controller",
    "initial_state": "controller",
    "percentile": "monitor",
}

__all__ = [
    "Allocator",
    "AttemptSummary",
    "ControllerConfig",
    "ControllerState",
    "CostCalibrator",
    "CostEstimates",
    "Decision",
    "EndpointStats",
    "GroupObservation",
    "Monitor",
    "MonitorSnapshot",
    "Move",
    "Observation",
    "RoleAllocatorConfig",
    "RoleAllocatorState",
    "RoleDecision",
    "RoleStats",
    "decide",
    "decide_roles",
    "initial_state",
    "percentile",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals())
