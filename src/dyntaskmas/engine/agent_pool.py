"""Agents, the pool that holds them, and the load balancer that picks one.

An agent serves one or more roles and runs one task at a time through its
model. The pool tracks who is idle, how much work each has done and how many
tasks run on each endpoint; it does not run anything.

The balancer chooses, for a ready task's role, among idle agents that serve
the role and whose endpoint has a free slot: the one with the least
accumulated busy time, then by name for determinism. Checking the endpoint's
slots here, rather than letting the task wait inside the HTTP client, keeps
waiting tasks in the ready queue, where priority decides who goes next, and
makes a task's start time the moment its request can really be served.

The pool answers both questions of a dispatch without scanning its agents:
it keeps, per endpoint, how many idle agents serve each role, and per
endpoint and role a heap of idle agents by ``(busy_s, name)``. So a
dispatch costs O(endpoints x roles + log agents), which matters with
hundreds of agents. Only :meth:`AgentPool.assign` and
:meth:`AgentPool.release` may change who is idle.

Agents that serve the same roles through the same endpoint form a
:class:`RoleGroup`. :meth:`AgentPool.move_agents` moves idle agents from one
group to another, which is how the role allocator changes each role's
agent count while the total stays fixed.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.types import ChatModel


@dataclass
class Agent:
    """A worker that runs one task at a time with one model.

    ``roles`` are the task roles it accepts. ``busy_s`` and ``tasks_run``
    accumulate as it works, for load balancing and reports.
    """

    name: str
    roles: frozenset[str]
    model: ChatModel
    endpoint: str = "default"
    busy_s: float = 0.0
    tasks_run: int = 0
    current_task: str | None = None

    @property
    def idle(self) -> bool:
        return self.current_task is None


@dataclass(frozen=True)
class RoleGroup:
    """The roles and endpoint shared by a group of agents."""

    roles: frozenset[str]
    endpoint: str

    @property
    def name(self) -> str:
        """Return a readable label such as ``research,write@gpu``."""
        return f"{','.join(sorted(self.roles))}@{self.endpoint}"


class SlotLimit(Protocol):
    """Anything with a current concurrency limit, such as an endpoint's limiter."""

    @property
    def limit(self) -> int: ...


@dataclass
class AgentPool:
    """The agents of a run, and the concurrency limit of each endpoint.

    ``limits`` maps an endpoint name to its limiter; the limit is read at
    every decision, so changes made while the run goes on take effect at
    once. Endpoints not listed have no limit beyond their agents.
    """

    agents: list[Agent]
    limits: Mapping[str, SlotLimit] = field(default_factory=dict)
    #: Called by :meth:`capacity_raised`; the executor registers one per run,
    #: so that waiting tasks start without waiting for a completion.
    capacity_listeners: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _running: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    # Endpoint -> role -> idle agents on that endpoint serving that role.
    _idle_count: dict[str, Counter[str]] = field(default_factory=dict, init=False, repr=False)
    # (endpoint, role) -> heap of (busy_s, name, agent index, version) over
    # idle agents. An entry is live only while its agent is idle and its
    # version is the agent's current one; others are skipped when met.
    _idle_heap: dict[tuple[str, str], list[tuple[float, str, int, int]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _endpoints_of_role: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    _version: list[int] = field(default_factory=list, init=False, repr=False)
    _index: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _roles: frozenset[str] = field(default=frozenset(), init=False, repr=False)
    # Every group present at creation, with the model its agents call.
    _group_models: dict[RoleGroup, ChatModel] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        names = [agent.name for agent in self.agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agent names must be unique; repeated: {', '.join(duplicates)}")
        if not self.agents:
            raise ValueError("an agent pool needs at least one agent")
        self._version = [0] * len(self.agents)
        for index, agent in enumerate(self.agents):
            self._index[agent.name] = index
            self._idle_count.setdefault(agent.endpoint, Counter())
            self._group_models.setdefault(RoleGroup(agent.roles, agent.endpoint), agent.model)
            for role in agent.roles:
                endpoints = self._endpoints_of_role.setdefault(role, [])
                if agent.endpoint not in endpoints:
                    endpoints.append(agent.endpoint)
                self._idle_heap.setdefault((agent.endpoint, role), [])
            if agent.idle:
                self._mark_idle(index)
            else:
                self._running[agent.endpoint] += 1
        self._roles = frozenset(self._endpoints_of_role)

    @property
    def roles(self) -> frozenset[str]:
        """Return every role some agent serves."""
        return self._roles

    def idle_roles(self) -> set[str]:
        """Return the roles served by at least one agent that can start a task now."""
        roles: set[str] = set()
        for endpoint, counts in self._idle_count.items():
            if self.has_room(endpoint):
                roles.update(role for role, count in counts.items() if count > 0)
        return roles

    def has_room(self, endpoint: str) -> bool:
        """Tell whether ``endpoint`` can take one more task under its limit."""
        limiter = self.limits.get(endpoint)
        return limiter is None or self._running[endpoint] < limiter.limit

    def free_slots(self, endpoint: str) -> int | None:
        """Return how many more tasks ``endpoint`` can take under its limit; None if unlimited."""
        limiter = self.limits.get(endpoint)
        return None if limiter is None else max(0, limiter.limit - self._running[endpoint])

    def capacity_raised(self) -> None:
        """Tell the executors that a limit went up, so ready tasks may start now."""
        for listener in list(self.capacity_listeners):
            listener()

    def busy_count(self) -> int:
        return sum(self._running.values())

    def choose(self, role: str) -> Agent | None:
        """Return the available agent best suited to ``role``, or None if none can take it."""
        best: tuple[float, str, int, int] | None = None
        for endpoint in self._endpoints_of_role.get(role, ()):
            if not self.has_room(endpoint):
                continue
            head = self._live_head(self._idle_heap[(endpoint, role)])
            if head is not None and (best is None or head < best):
                best = head
        return self.agents[best[2]] if best is not None else None

    def assign(self, agent: Agent, task_id: str) -> None:
        assert agent.idle, f"agent {agent.name} is already running {agent.current_task}"
        agent.current_task = task_id
        self._running[agent.endpoint] += 1
        index = self._index[agent.name]
        self._version[index] += 1
        counts = self._idle_count[agent.endpoint]
        for role in agent.roles:
            counts[role] -= 1

    def release(self, agent: Agent, busy_s: float) -> None:
        agent.current_task = None
        self._running[agent.endpoint] -= 1
        agent.busy_s += busy_s
        agent.tasks_run += 1
        self._mark_idle(self._index[agent.name])

    def groups(self) -> dict[RoleGroup, list[Agent]]:
        """Return the agents of every group, including groups left with none."""
        members: dict[RoleGroup, list[Agent]] = {group: [] for group in self._group_models}
        for agent in self.agents:
            members[RoleGroup(agent.roles, agent.endpoint)].append(agent)
        return members

    def move_agents(self, source: RoleGroup, target: RoleGroup, count: int) -> list[Agent]:
        """Move up to ``count`` idle agents of ``source`` to ``target``; return those moved.

        A moved agent keeps its name and accumulated figures and from then
        on serves ``target``'s roles with ``target``'s model. The least busy
        idle agents move first. Running agents never move.
        """
        if target not in self._group_models:
            known = ", ".join(group.name for group in self._group_models)
            raise ValueError(f"group {target.name!r} is not in this pool; known groups: {known}")
        idle = sorted(
            (
                agent
                for agent in self.agents
                if agent.idle and RoleGroup(agent.roles, agent.endpoint) == source
            ),
            key=lambda agent: (agent.busy_s, agent.name),
        )
        moved = idle[: max(0, count)]
        for agent in moved:
            index = self._index[agent.name]
            # Invalidate the agent's heap entries under its old roles.
            self._version[index] += 1
            for role in agent.roles:
                self._idle_count[agent.endpoint][role] -= 1
            agent.roles = target.roles
            agent.endpoint = target.endpoint
            agent.model = self._group_models[target]
            self._mark_idle(index)
        return moved

    def _mark_idle(self, index: int) -> None:
        agent = self.agents[index]
        counts = self._idle_count[agent.endpoint]
        entry = (agent.busy_s, agent.name, index, self._version[index])
        for role in agent.roles:
            counts[role] += 1
            heapq.heappush(self._idle_heap[(agent.endpoint, role)], entry)

    def _live_head(
        self, heap: list[tuple[float, str, int, int]]
    ) -> tuple[float, str, int, int] | None:
        while heap:
            _, _, index, version = heap[0]
            if self.agents[index].idle and self._version[index] == version:
                return heap[0]
            heapq.heappop(heap)  # stale: the agent was assigned since this entry
        return None


def build_agents(count: int, roles: Iterable[str], models: Mapping[str, ChatModel]) -> list[Agent]:
    """Build ``count`` generalist agents serving every role, spread over ``models``.

    ``models`` maps endpoint names to models; agents go round-robin over them.
    """
    if count < 1:
        raise ValueError(f"agent count must be >= 1, got {count}")
    if not models:
        raise ValueError("at least one model endpoint is needed to build agents")
    role_set = frozenset(roles)
    endpoints = list(models.items())
    agents = []
    for index in range(count):
        endpoint, model = endpoints[index % len(endpoints)]
        agents.append(
            Agent(name=f"agent-{index + 1}", roles=role_set, model=model, endpoint=endpoint)
        )
    return agents


def build_role_agents(
    count: int,
    roles: Iterable[str],
    role_endpoints: Mapping[str, str],
    models: Mapping[str, ChatModel],
) -> list[Agent]:
    """Build ``count`` agents, each serving the roles mapped to its endpoint.

    Roles missing from ``role_endpoints`` go to the first endpoint of
    ``models``. Agents go round-robin over the endpoints that serve a role,
    so every role has an agent when ``count`` is at least their number.
    """
    if not models:
        raise ValueError("at least one model endpoint is needed to build agents")
    default = next(iter(models))
    served: dict[str, set[str]] = {}
    for role in roles:
        endpoint = role_endpoints.get(role, default)
        if endpoint not in models:
            raise ValueError(f"role {role!r} is mapped to the unknown endpoint {endpoint!r}")
        served.setdefault(endpoint, set()).add(role)
    if count < len(served):
        raise ConfigError(
            f"{count} agents cannot serve the roles of {len(served)} endpoints, because each "
            f"agent calls one endpoint; use at least {len(served)} agents"
        )
    endpoints = list(served)
    return [
        Agent(
            name=f"agent-{index + 1}",
            roles=frozenset(served[endpoints[index % len(endpoints)]]),
            model=models[endpoints[index % len(endpoints)]],
            endpoint=endpoints[index % len(endpoints)],
        )
        for index in range(count)
    ]
