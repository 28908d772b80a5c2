"""Agents, the pool that holds them, and the load balancer that picks one.

An agent serves one or more roles and runs one task at a time through its
model. The pool only tracks who is idle and how much work each has done; it
does not run anything. The balancer chooses, for a ready task's role: an idle
agent that serves the role, then the one with the least accumulated busy time,
then one whose endpoint has spare concurrency, then by name for determinism.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

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


@dataclass
class AgentPool:
    """The agents of a run, with the endpoints' spare capacity for balancing.

    ``spare_capacity`` maps an endpoint name to how many more requests it
    accepts right now; endpoints not listed count as having room.
    """

    agents: list[Agent]
    spare_capacity: Mapping[str, int] = field(default_factory=dict)

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
        """Return the roles served by at least one idle agent."""
        return {role for agent in self.agents if agent.idle for role in agent.roles}

    def busy_count(self) -> int:
        return sum(1 for agent in self.agents if not agent.idle)

    def choose(self, role: str) -> Agent | None:
        """Return the idle agent best suited to ``role``, or None if none can take it."""
        candidates = [a for a in self.agents if a.idle and role in a.roles]
        if not candidates:
            return None
        return min(candidates, key=self._balance_key)

    def _balance_key(self, agent: Agent) -> tuple[float, int, str]:
        full = 1 if self.spare_capacity.get(agent.endpoint, 1) <= 0 else 0
        return (agent.busy_s, full, agent.name)

    def assign(self, agent: Agent, task_id: str) -> None:
        assert agent.idle, f"agent {agent.name} is already running {agent.current_task}"
        agent.current_task = task_id

    def release(self, agent: Agent, busy_s: float) -> None:
        agent.current_task = None
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
