"""A simulated LLM inference server with continuous batching, in two forms.

- :mod:`~dyntaskmas.sim.latency`: prefill and decode step durations (pure).
- :mod:`~dyntaskmas.sim.calibration`: those durations from SplitwiseSim's measurements.
- :mod:`~dyntaskmas.sim.server_model`: the continuous-batching state machine (pure).
- :mod:`~dyntaskmas.sim.server`: its asyncio driver on the running loop's clock.
- :mod:`~dyntaskmas.sim.virtual_time`: an event loop whose clock skips idle waits.
- :mod:`~dyntaskmas.sim.chat_model`: the in-process form, a ChatModel.
- :mod:`~dyntaskmas.sim.http_server`: the HTTP form, OpenAI-compatible, with faults.
- :mod:`~dyntaskmas.sim.faults`: which request gets which fault (pure).
- :mod:`~dyntaskmas.sim.workload_sizes`: token counts after the Azure LLM trace.
- :mod:`~dyntaskmas.sim.content`: token estimates, filler text, embeddings (pure).

Names are imported on first use, so that code needing only the pure model
does not pay for importing aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyntaskmas._lazy import lazy_exports

if TYPE_CHECKING:
    from dyntaskmas.sim.calibration import Calibration, calibrate, calibrate_from_splitwise
    from dyntaskmas.sim.chat_model import SimulatedCall, SimulatedChatModel, TextFunction
    from dyntaskmas.sim.faults import FAULTS, Fault, FaultConfig, FaultInjector
    from dyntaskmas.sim.http_server import SimulatedLLMServer
    from dyntaskmas.sim.latency import DEFAULT_LATENCY, LatencyModel, PiecewiseLinear
    from dyntaskmas.sim.server import PendingRequest, SimulatedServer
    from dyntaskmas.sim.server_model import (
        ContextLengthError,
        FinishedRequest,
        ServerConfig,
        ServerModel,
        ServerStats,
    )
    from dyntaskmas.sim.virtual_time import EventLoopClock, VirtualTimeEventLoop, run_virtual
    from dyntaskmas.sim.workload_sizes import TokenLengths, WorkloadSizes, azure_sizes

_MODULE_OF: dict[str, str] = {
    "Calibration": "calibration",
    "ContextLengthError": "server_model",
    "DEFAULT_LATENCY": "latency",
    "EventLoopClock": "virtual_time",
    "FAULTS": "faults",
    "Fault": "faults",
    "FaultConfig": "faults",
    "FaultInjector": "faults",
    "FinishedRequest": "server_model",
    "LatencyModel": "latency",
    "PendingRequest": "server",
    "PiecewiseLinear": "latency",
    "ServerConfig": "server_model",
    "ServerModel": "server_model",
    "ServerStats": "server_model",
    "SimulatedCall": "chat_model",
    "SimulatedChatModel": "chat_model",
    "SimulatedLLMServer": "http_server",
    "SimulatedServer": "server",
    "TextFunction": "chat_model",
    "TokenLengths": "workload_sizes",
    "VirtualTimeEventLoop": "virtual_time",
    "WorkloadSizes": "workload_sizes",
    "azure_sizes": "workload_sizes",
    "calibrate": "calibration",
    "calibrate_from_splitwise": "calibration",
    "run_virtual": "virtual_time",
}

__all__ = [
    "DEFAULT_LATENCY",
    "FAULTS",
    "Calibration",
    "ContextLengthError",
    "EventLoopClock",
    "Fault",
    "FaultConfig",
    "FaultInjector",
    "FinishedRequest",
    "LatencyModel",
    "PendingRequest",
    "PiecewiseLinear",
    "ServerConfig",
    "ServerModel",
    "ServerStats",
    "SimulatedCall",
    "SimulatedChatModel",
    "SimulatedLLMServer",
    "SimulatedServer",
    "TextFunction",
    "TokenLengths",
    "VirtualTimeEventLoop",
    "WorkloadSizes",
    "azure_sizes",
    "calibrate",
    "calibrate_from_splitwise",
    "run_virtual",
]


__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals())
