"""The shortest possible makespan of a small task graph on k agents, by branch and bound.

The reference against which list-scheduling policies are judged on the
AsyncHow plans (at most 17 steps). Tasks have fixed durations, each agent
runs one task at a time without pre-emption, and a task may start once
its dependencies have finished.

Search: at time 0 and at each task's finish, choose which ready tasks start
now. Leaving an agent idle while a task is ready is a choice too, because
an optimal schedule may need it. Some optimal schedule starts every task at
time 0 or at another task's finish, so this search finds one. A branch is
cut when a lower bound (the longest remaining path, or the remaining work
spread over k agents) reaches the best makespan found, or when the same set
of finished and running tasks was already reached no later. The search
stops after ``node_limit`` decisions. The result then says it is not
proven optimal, and its makespan is only the best found.

Pure: no clock, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

# Times here are sums of at most 17 durations; this absorbs float rounding.
_EPSILON = 1e-9


@dataclass(frozen=True)
class Optimum:
    """The best makespan found, and whether the search proved it optimal."""

    makespan: float
    proven: bool
    nodes: int


def optimal_makespan(
    durations: Sequence[float],
    dependencies: Sequence[Sequence[int]],
    agents: int,
    *,
    upper_bound: float,
    node_limit: int = 200_000,
) -> Optimum:
    """Return the shortest makespan of the graph on ``agents`` agents.

    Task ``i`` takes ``durations[i]`` and needs every task in
    ``dependencies[i]`` finished first. ``upper_bound`` is the makespan of a
    known schedule (a policy's), returned unchanged when nothing shorter
    exists.
    """
    if agents < 1:
        raise ValueError(f"agents must be >= 1, got {agents}")
    search = _Search(durations, dependencies, agents, upper_bound, node_limit)
    search.run()
    return Optimum(search.best, search.nodes <= node_limit, search.nodes)


class _Search:
    """Depth-first branch and bound over start decisions."""

    def __init__(
        self,
        durations: Sequence[float],
        dependencies: Sequence[Sequence[int]],
        agents: int,
        upper_bound: float,
        node_limit: int,
    ) -> None:
        count = len(durations)
        self.durations = list(durations)
        self.agents = agents
        self.node_limit = node_limit
        self.nodes = 0
        self.best = upper_bound
        self.needs = [sum(1 << d for d in deps) for deps in dependencies]
        self.all_tasks = (1 << count) - 1
        # tail[i]: the longest path from task i's start to the end of the graph.
        successors: list[list[int]] = [[] for _ in range(count)]
        for task, deps in enumerate(dependencies):
            for dep in deps:
                successors[dep].append(task)
        self.tail = [0.0] * count
        for task in reversed(_topological(count, dependencies)):
            longest = max((self.tail[s] for s in successors[task]), default=0.0)
            self.tail[task] = self.durations[task] + longest
        # Earliest time each state (finished, started, running offsets) was reached.
        self.seen: dict[tuple[int, int, tuple[tuple[float, int], ...]], float] = {}

    def run(self) -> None:
        self._decide(0.0, 0, 0, ())

    def _decide(
        self, now: float, finished: int, started: int, running: tuple[tuple[float, int], ...]
    ) -> None:
        if self.nodes > self.node_limit:
            return
        self.nodes += 1
        if finished == self.all_tasks:
            self.best = min(self.best, now)
            return

        key = (finished, started, tuple((round(end - now, 9), task) for end, task in running))
        earlier = self.seen.get(key)
        if earlier is not None and earlier <= now + _EPSILON:
            return
        self.seen[key] = now

        ready = [
            task
            for task in range(len(self.durations))
            if not started >> task & 1 and self.needs[task] & finished == self.needs[task]
        ]
        if self._lower_bound(now, started, running, ready) >= self.best - _EPSILON:
            return

        # Longest tails first, so good schedules are found early and cut more.
        ready.sort(key=lambda task: -self.tail[task])
        free = self.agents - len(running)
        largest = min(free, len(ready))
        smallest = 0 if running else 1
        for size in range(largest, smallest - 1, -1):
            for chosen in itertools.combinations(ready, size):
                self._start(now, finished, started, running, chosen)

    def _start(
        self,
        now: float,
        finished: int,
        started: int,
        running: tuple[tuple[float, int], ...],
        chosen: tuple[int, ...],
    ) -> None:
        active = sorted([*running, *((now + self.durations[t], t) for t in chosen)])
        for task in chosen:
            started |= 1 << task
        # Move to the next finish and mark every task ending then as finished.
        next_time = active[0][0]
        still: list[tuple[float, int]] = []
        for end, task in active:
            if end <= next_time + _EPSILON:
                finished |= 1 << task
            else:
                still.append((end, task))
        self._decide(next_time, finished, started, tuple(still))

    def _lower_bound(
        self,
        now: float,
        started: int,
        running: tuple[tuple[float, int], ...],
        ready: Sequence[int],
    ) -> float:
        # Every unstarted task lies below a running or a ready one, so their
        # tails cover the longest remaining path.
        path = max(
            [end + self.tail[task] - self.durations[task] for end, task in running]
            + [now + self.tail[task] for task in ready],
            default=now,
        )
        unstarted = sum(
            self.durations[task] for task in range(len(self.durations)) if not started >> task & 1
        )
        work = unstarted + sum(end - now for end, _ in running)
        return max(path, now + work / self.agents)


def _topological(count: int, dependencies: Sequence[Sequence[int]]) -> list[int]:
    order: list[int] = []
    placed: set[int] = set()
    while len(order) < count:
        progress = [
            task
            for task in range(count)
            if task not in placed and all(d in placed for d in dependencies[task])
        ]
        if not progress:
            raise ValueError("the dependencies contain a cycle")
        order.extend(progress)
        placed.update(progress)
    return order
