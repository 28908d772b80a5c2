"""The role allocator's rule: which agents move between role groups next (pure).

Role-specialised agents come in groups: the agents of one group serve the
same roles through the same endpoint, such as the agents a config file's
``[roles]`` table routes to one endpoint. The total number of agents is
fixed, and :func:`decide_roles` moves agents between groups once per
control interval, from what the monitor measured:

- A group **needs** agents when ready tasks of its roles wait, all its
  agents are busy, and its endpoint has free slots under its concurrency
  limit. Its need is min(ready - idle agents, free slots of the endpoint).
  When the endpoint's limit is what keeps the tasks waiting, more agents
  would only wait for a slot, so the need is 0.
- A group **can give** agents when no ready task of its roles waits, its
  utilisation over the monitor's window is at most ``give_below``, and it
  has idle agents beyond ``min_agents``. Only idle agents move, so no
  running task is disturbed.
- Groups that need agents take them from groups that can give, largest
  need first, up to ``max_moves`` agents per interval.
- A group that received agents gives none for ``hold_intervals`` intervals,
  and a group that gave receives none for as long. Without this hold,
  agents would follow every short burst of tasks back and forth.

A group never drops below ``min_agents`` (at least 1), so every role keeps
an agent and no task waits for a role that nobody serves.

    config = RoleAllocatorConfig()
    state = RoleAllocatorState()
    groups = [GroupObservation("research@a", "a", agents=2, idle=0, ready=9, utilisation=1.0),
              GroupObservation("write@b", "b", agents=2, idle=2, ready=0, utilisation=0.0)]
    decision = decide_roles(config, state, groups, free_slots={"a": 4, "b": 4})
    decision.moves  # (Move(source="write@b", target="research@a", count=1),)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dyntaskmas.errors import ConfigError


@dataclass(frozen=True)
class RoleAllocatorConfig:
    """Parameters of :func:`decide_roles`; see the module docstring for how each is used."""

    #: Agents every group keeps, so that each role always has one.
    min_agents: int = 1
    #: Highest utilisation over the monitor's window at which a group gives agents.
    give_below: float = 0.5
    #: Intervals after a move during which the groups involved do not move the other way.
    hold_intervals: int = 3
    #: Agents moved per interval at most, over all groups.
    max_moves: int = 4

    def __post_init__(self) -> None:
        if self.min_agents < 1:
            raise ConfigError(
                f"min_agents must be >= 1 so that every role keeps an agent, got {self.min_agents}"
            )
        if not (math.isfinite(self.give_below) and 0 <= self.give_below <= 1):
            raise ConfigError(f"give_below must be between 0 and 1, got {self.give_below}")
        if self.hold_intervals < 0:
            raise ConfigError(f"hold_intervals must be >= 0, got {self.hold_intervals}")
        if self.max_moves < 1:
            raise ConfigError(f"max_moves must be >= 1, got {self.max_moves}")


@dataclass(frozen=True)
class GroupObservation:
    """One group of agents at a control step.

    ``ready`` counts the ready tasks of the group's roles that wait for an
    agent. ``utilisation`` is the fraction of the group's agent-seconds
    spent on tasks over the monitor's window, from 0 to 1.
    """

    name: str
    endpoint: str
    agents: int
    idle: int
    ready: int
    utilisation: float

    def __post_init__(self) -> None:
        if not 0 <= self.idle <= self.agents:
            raise ValueError(
                f"group {self.name!r} has {self.idle} idle of {self.agents} agents; "
                f"idle must be between 0 and the agent count"
            )
        if self.ready < 0:
            raise ValueError(f"group {self.name!r} has {self.ready} ready tasks; must be >= 0")


@dataclass(frozen=True)
class Move:
    """``count`` idle agents of group ``source`` go to group ``target``."""

    source: str
    target: str
    count: int


@dataclass(frozen=True)
class RoleAllocatorState:
    """The rule's memory between intervals: the holds still running, by group name."""

    #: Intervals left during which the group gives no agents (it received some).
    give_hold: Mapping[str, int] = field(default_factory=dict)
    #: Intervals left during which the group receives no agents (it gave some).
    receive_hold: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RoleDecision:
    """The moves of one interval and the rule's next state."""

    state: RoleAllocatorState
    moves: tuple[Move, ...]


def decide_roles(
    config: RoleAllocatorConfig,
    state: RoleAllocatorState,
    groups: Sequence[GroupObservation],
    free_slots: Mapping[str, int],
) -> RoleDecision:
    """Return the agent moves of this interval and the next state.

    ``free_slots`` maps an endpoint to the requests it can take beyond
    those in flight, which is its limit minus its requests in flight. An
    endpoint that is not listed has no limit beyond its agents.
    """
    names = [group.name for group in groups]
    if len(set(names)) != len(names):
        raise ValueError(f"group names must be unique, got {names}")
    held_giving = {name for name, left in state.give_hold.items() if left > 0}
    held_receiving = {name for name, left in state.receive_hold.items() if left > 0}

    room = dict(free_slots)
    needs: list[tuple[int, str]] = []
    for group in sorted(groups, key=lambda g: (-(g.ready - g.idle), g.name)):
        if group.name in held_receiving:
            continue
        unserved = group.ready - group.idle
        free = room.get(group.endpoint)
        # Groups on one endpoint share its free slots.
        need = unserved if free is None else min(unserved, free)
        if need > 0:
            needs.append((need, group.name))
            if free is not None:
                room[group.endpoint] = free - need

    spares: list[tuple[int, str]] = []
    for group in groups:
        if group.name in held_giving or group.ready > 0 or group.utilisation > config.give_below:
            continue
        spare = min(group.idle, group.agents - config.min_agents)
        if spare > 0:
            spares.append((spare, group.name))
    spares.sort(key=lambda item: (-item[0], item[1]))

    moves: list[Move] = []
    budget = config.max_moves
    for need, target in needs:
        for index, (spare, source) in enumerate(spares):
            if budget == 0 or need == 0:
                break
            count = min(need, spare, budget)
            if count == 0:
                continue
            moves.append(Move(source, target, count))
            spares[index] = (spare - count, source)
            need -= count
            budget -= count

    give_hold = _count_down(state.give_hold)
    receive_hold = _count_down(state.receive_hold)
    for move in moves:
        give_hold[move.target] = config.hold_intervals
        receive_hold[move.source] = config.hold_intervals
    return RoleDecision(
        RoleAllocatorState(
            give_hold={name: left for name, left in give_hold.items() if left > 0},
            receive_hold={name: left for name, left in receive_hold.items() if left > 0},
        ),
        tuple(moves),
    )


def _count_down(holds: Mapping[str, int]) -> dict[str, int]:
    """Return the holds one interval later, without those that ended."""
    return {name: left - 1 for name, left in holds.items() if left > 1}
