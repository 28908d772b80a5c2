"""Figures computed from runs: lower bounds, efficiency, utilisation when work is waiting.

Everything here is pure arithmetic on plain data (task records, intervals),
with no clock and no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dyntaskmas.engine.result import TaskRecord


def makespan_lower_bound(critical_path_s: float, total_work_s: float, agents: int) -> float:
    """Return max(critical path, total work / agents): no schedule on ``agents`` agents beats it."""
    if agents < 1:
        raise ValueError(f"agents must be >= 1, got {agents}")
    return max(critical_path_s, total_work_s / agents)


def scaling_efficiency(throughput: float, agents: int, throughput_one: float) -> float:
    """Return throughput at ``agents`` over ``agents`` times the throughput of one agent."""
    if throughput_one <= 0:
        raise ValueError(f"the one-agent throughput must be > 0, got {throughput_one}")
    return throughput / (agents * throughput_one)


def busy_time_when_saturated(
    records: Sequence[TaskRecord],
    busy: Iterable[tuple[float, float]],
    slots: int,
    end_s: float,
) -> tuple[float, float]:
    """Return how long at least ``slots`` tasks had work waiting, and the busy slot-seconds then.

    A model-calling task counts as waiting from the moment its last
    dependency finished (0 without dependencies) until it finished, whether
    or not the policy had started it: that is the work a server could have
    been given. ``busy`` holds the ``(start, end)`` of every server request,
    start being when the request took a slot. Times are seconds from the run's
    start, up to ``end_s``. Returns ``(saturated_s, busy_slot_s)``.
    """
    finished = {r.id: r.finished_at for r in records}
    events: list[tuple[float, int, int]] = []
    for record in records:
        if record.agent is None or record.finished_at is None:
            continue
        ready = max((finished[d] or 0.0 for d in record.depends_on), default=0.0)
        events.append((ready, 1, 0))
        events.append((record.finished_at, -1, 0))
    for start, end in busy:
        events.append((start, 0, 1))
        events.append((end, 0, -1))
    events.sort()

    demand = running = 0
    saturated_s = busy_slot_s = 0.0
    last = 0.0
    for at, demand_change, busy_change in events:
        at = min(at, end_s)
        if demand >= slots and at > last:
            saturated_s += at - last
            busy_slot_s += min(running, slots) * (at - last)
        last = max(last, at)
        demand += demand_change
        running += busy_change
    return saturated_s, busy_slot_s


def ratio_summary(ratios: Sequence[float]) -> tuple[float, float]:
    """Return the mean and the maximum of ``ratios``."""
    if not ratios:
        raise ValueError("no ratios to summarise")
    return sum(ratios) / len(ratios), max(ratios)
