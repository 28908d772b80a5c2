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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

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
    _running: Counter[str] = field(default_factory=Counter, init=False, repr=False)

    def __post_init__(self) -> None:
        names = [agent.name for agent in self.agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"agent names must be unique; repeated: {', '.join(duplicates)}")
        if not self.agents:
            raise ValueError("an agent pool needs at least one agent")

    @property
    def roles(self) -> frozenset[str]:
        """Return every role some agent serves."""
        return frozenset().union(*(agent.roles for agent in self.agents))

    def idle_roles(self) -> set[str]:
        """Return the roles served by at least one agent that can start a task now."""
        return {role for agent in self.agents if self._available(agent) for role in agent.roles}

    def has_room(self, endpoint: str) -> bool:
        """Tell whether ``endpoint`` can take one more task under its limit."""
        limiter = self.limits.get(endpoint)
        return limiter is None or self._running[endpoint] < limiter.limit

    def _available(self, agent: Agent) -> bool:
        return agent.idle and self.has_room(agent.endpoint)

    def busy_count(self) -> int:
        return sum(1 for agent in self.agents if not agent.idle)

    def choose(self, role: str) -> Agent | None:
        """Return the available agent best suited to ``role``, or None if none can take it."""
        candidates = [a for a in self.agents if role in a.roles and self._available(a)]
        if not candidates:
            return None
        return min(candidates, key=lambda agent: (agent.busy_s, agent.name))

    def assign(self, agent: Agent, task_id: str) -> None:
        assert agent.idle, f"agent {agent.name} is already running {agent.current_task}"
        agent.current_task = task_id
        self._running[agent.endpoint] += 1

    def release(self, agent: Agent, busy_s: float) -> None:
        agent.current_task = None
        self._running[agent.endpoint] -= 1
        agent.busy_s += busy_s
        agent.tasks_run += 1


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
