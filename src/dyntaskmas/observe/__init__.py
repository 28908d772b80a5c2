"""Observability: the run event stream and what is built on it.

- :mod:`~dyntaskmas.observe.events`: the events and the EventBus.
- :mod:`~dyntaskmas.observe.run_view`: a run's state folded from its events.
- :mod:`~dyntaskmas.observe.accounting`: tokens and costs per task, agent, role, model.
- :mod:`~dyntaskmas.observe.progress`: live terminal progress (rich).
- :mod:`~dyntaskmas.observe.chrome_trace`: Chrome trace-event JSON for Perfetto.
- :mod:`~dyntaskmas.observe.report`: the self-contained HTML report.
- :mod:`~dyntaskmas.observe.graph_export`: a plan as text, Mermaid, DOT or JSON.
- :mod:`~dyntaskmas.observe.otel`: OpenTelemetry spans (the ``otel`` extra); not
  re-exported here, so that nothing imports OpenTelemetry unless asked.

The event types are imported at once; the rest on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dyntaskmas._lazy import lazy_exports
from dyntaskmas.observe.events import (
    AgentsMoved,
    AllocatorDecision,
    ContextDelivered,
    Event,
    EventBus,
    GraphChanged,
    LLMCallFinished,
    LLMCallRetried,
    MonitorSample,
    RunFinished,
    RunStarted,
    TaskCancelled,
    TaskFailed,
    TaskFinished,
    TaskReady,
    TaskStarted,
)

if TYPE_CHECKING:
    from dyntaskmas.observe.accounting import (
        Accounting,
        ModelPrice,
        Prices,
        account,
        load_prices,
        prices_from_mapping,
    )
    from dyntaskmas.observe.chrome_trace import chrome_trace, write_chrome_trace
    from dyntaskmas.observe.graph_export import PlanTree, format_plan, plan_request
    from dyntaskmas.observe.progress import LiveProgress
    from dyntaskmas.observe.report import render_report, write_report
    from dyntaskmas.observe.run_view import RunView, RunViewBuilder, build_run_view

_MODULE_OF = {
    "Accounting": "accounting",
    "ModelPrice": "accounting",
    "Prices": "accounting",
    "account": "accounting",
    "load_prices": "accounting",
    "prices_from_mapping": "accounting",
    "chrome_trace": "chrome_trace",
    "write_chrome_trace": "chrome_trace",
    "PlanTree": "graph_export",
    "format_plan": "graph_export",
    "plan_request": "graph_export",
    "LiveProgress": "progress",
    "render_report": "report",
    "write_report": "report",
    "RunView": "run_view",
    "RunViewBuilder": "run_view",
    "build_run_view": "run_view",
}

__all__ = [
    "Accounting",
    "AgentsMoved",
    "AllocatorDecision",
    "ContextDelivered",
    "Event",
    "EventBus",
    "GraphChanged",
    "LLMCallFinished",
    "LLMCallRetried",
    "LiveProgress",
    "ModelPrice",
    "MonitorSample",
    "PlanTree",
    "Prices",
    "RunFinished",
    "RunStarted",
    "RunView",
    "RunViewBuilder",
    "TaskCancelled",
    "TaskFailed",
    "TaskFinished",
    "TaskReady",
    "TaskStarted",
    "account",
    "build_run_view",
    "chrome_trace",
    "format_plan",
    "load_prices",
    "plan_request",
    "prices_from_mapping",
    "render_report",
    "write_chrome_trace",
    "write_report",
]

__getattr__, __dir__ = lazy_exports(__name__, _MODULE_OF, globals())
