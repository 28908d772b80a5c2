"""The resource allocator: R(t+1) = R(t) + ΔR(t) every control interval.

:class:`Allocator` wakes every ``interval_s`` seconds of its clock. For
each endpoint it reads the monitor, builds an
:class:`~dyntaskmas.adapt.controller.Observation` from the attempts
finished since its last decision, gets the next limit from the pure
controller and sets the endpoint's :class:`~dyntaskmas.llm.limiter.ConcurrencyLimiter`
to it. When a limit rises it tells the agent pool, so that waiting tasks
start at once instead of at the next completion.

While a run is going on (between its ``RunStarted`` and ``RunFinished``
on the bus) each step emits a
:class:`~dyntaskmas.observe.events.MonitorSample` and an
:class:`~dyntaskmas.observe.events.AllocatorDecision` per endpoint, so
the journal records every decision. With ``adjust=False`` the limits stay
fixed and only the samples are emitted.

With a :class:`~dyntaskmas.adapt.roles.RoleAllocatorConfig` and a pool of
role-specialised agents, each step also moves idle agents between groups
of roles by the rule of :func:`~dyntaskmas.adapt.roles.decide_roles`, and
emits an :class:`~dyntaskmas.observe.events.AgentsMoved` per move. The
total number of agents stays the same. When every agent serves every
role there is one group and nothing moves.

    allocator = Allocator(monitor, [(endpoint, ControllerConfig(max_limit=16))],
                          clock=clock, events=engine.events, pool=pool)
    async with allocator.running():
        result = await engine.run(request)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from dyntaskmas.adapt.controller import (
    ControllerConfig,
    ControllerState,
    Decision,
    LoadSample,
    Observation,
    decide,
    initial_state,
)
from dyntaskmas.adapt.monitor import Monitor
from dyntaskmas.adapt.roles import (
    GroupObservation,
    RoleAllocatorConfig,
    RoleAllocatorState,
    decide_roles,
)
from dyntaskmas.clock import Clock
from dyntaskmas.engine.agent_pool import AgentPool, RoleGroup
from dyntaskmas.errors import ConfigError
from dyntaskmas.llm.attempts import FlowControl
from dyntaskmas.observe.events import (
    AgentsMoved,
    AllocatorDecision,
    Event,
    EventBus,
    MonitorSample,
    RunFinished,
    RunStarted,
)

logger = logging.getLogger(__name__)

#: One second: long enough for several calls of a few hundred tokens to
#: finish on a GPU server, short enough to react to 429s within a second or two.
DEFAULT_INTERVAL_S = 1.0
#: How far back attempts count when 429s are compared by load: long enough
#: to span many bursts of a backoff gate that pauses after each 429, short
#: enough to follow a server whose capacity changes.
LOAD_WINDOW_S = 30.0


@dataclass
class _Controlled:
    flow: FlowControl
    config: ControllerConfig
    state: ControllerState
    # Start of the attempts the next observation reads: the clock time of
    # the last decision that had enough data.
    since: float


class Allocator:
    """Adjusts each endpoint's concurrency limit, and optionally each role's agents, on a clock."""

    def __init__(
        self,
        monitor: Monitor,
        endpoints: Sequence[tuple[FlowControl, ControllerConfig]],
        *,
        clock: Clock,
        events: EventBus | None = None,
        pool: AgentPool | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        adjust: bool = True,
        roles: RoleAllocatorConfig | None = None,
    ) -> None:
        if not (math.isfinite(interval_s) and interval_s > 0):
            raise ConfigError(f"control interval must be a finite number > 0 s, got {interval_s}")
        self.monitor = monitor
        self.clock = clock
        self.events = events
        self.pool = pool
        self.interval_s = interval_s
        self.adjust = adjust
        if roles is not None and pool is None:
            raise ConfigError("moving agents between roles needs the agent pool; pass pool=")
        self.roles = roles
        self._role_state = RoleAllocatorState()
        self.moves: list[AgentsMoved] = []
        now = clock.now()
        self._controlled = [
            _Controlled(flow, config, initial_state(config, flow.limiter.limit), now)
            for flow, config in endpoints
        ]
        if adjust:
            for item in self._controlled:
                item.flow.limiter.limit = item.state.limit
        self._run_id: str | None = None
        self._run_started = 0.0
        self.decisions: list[AllocatorDecision] = []
        if events is not None:
            events.subscribe(self._follow_run)

    def state(self, endpoint: str) -> ControllerState:
        """Return the controller state of ``endpoint``."""
        for item in self._controlled:
            if item.flow.name == endpoint:
                return item.state
        raise KeyError(f"endpoint {endpoint!r} is not controlled by this allocator")

    def step(self) -> list[AllocatorDecision]:
        """Run one control step for every endpoint and return its decisions."""
        now = self.clock.now()
        decisions = []
        raised = False
        for item in self._controlled:
            decision, seen = self._decide(item, now)
            old = item.flow.limiter.limit
            if self.adjust:
                item.state = decision.state
                if decision.reason != "no_data":
                    item.since = now
                if decision.limit != old:
                    item.flow.limiter.limit = decision.limit
                    raised = raised or decision.limit > old
                    logger.debug(
                        "endpoint %s: limit %d -> %d (%s)",
                        item.flow.name,
                        old,
                        decision.limit,
                        decision.reason,
                    )
            else:
                item.since = now
            record = AllocatorDecision(
                self._run_id or "",
                now - self._run_started,
                item.flow.name,
                old,
                item.flow.limiter.limit,
                decision.reason if self.adjust else "fixed",
                seen.latency_s,
                item.state.baseline_s,
            )
            decisions.append(record)
            self._emit(self._sample(item, now))
            if self.adjust:
                self._emit(record)
        self.decisions.extend(decisions)
        if self.roles is not None and self._move_agents(now):
            raised = True
        if raised and self.pool is not None:
            self.pool.capacity_raised()
        return decisions

    async def run(self) -> None:
        """Step every ``interval_s`` until cancelled."""
        while True:
            await self.clock.sleep(self.interval_s)
            self.step()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the control loop for the duration of the ``async with`` block.

        The loop task is owned by the block: it is cancelled and awaited on
        exit, and the block's own exception propagates unwrapped (a task
        group would wrap it in an ``ExceptionGroup``).
        """
        loop = asyncio.get_running_loop().create_task(self.run())
        try:
            yield
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    # --- internals --------------------------------------------------------------

    def _decide(self, item: _Controlled, now: float) -> tuple[Decision, Observation]:
        summary = self.monitor.attempt_summary(
            item.flow.name, window_s=now - item.since + 1e-9, started_after=None
        )
        limiter = item.flow.limiter
        binding = (
            summary.peak_in_flight >= item.state.limit
            or limiter.in_flight >= limiter.limit
            or limiter.waiting > 0
        )
        if item.state.probe_left == 1:
            # The probe's verdict reads only requests sent under its limit.
            probe_started = now - self.interval_s * item.config.probe_intervals
            summary = self.monitor.attempt_summary(
                item.flow.name, window_s=now - probe_started, started_after=probe_started
            )
        # Were the 429s at loads higher than the recent rest? The 429s of
        # this interval, against the recent attempts at lower loads.
        split = None
        if summary.rate_limited:
            split = self.monitor.load_split(
                item.flow.name, summary.peak_limited_in_flight, window_s=LOAD_WINDOW_S
            )
        seen = Observation(
            successes=summary.successes,
            latency_s=summary.latency_per_token_p50_s,
            rate_limited=summary.rate_limited,
            timeouts=summary.timeouts,
            binding=binding,
            requests=summary.requests,
            load=None
            if split is None
            else (
                LoadSample(
                    split.requests_below,
                    split.limited_below,
                    split.requests_above,
                    split.limited_above,
                )
            ),
        )
        return decide(item.config, item.state, seen), seen

    def _move_agents(self, now: float) -> bool:
        """Move idle agents between role groups; return whether any moved."""
        assert self.roles is not None and self.pool is not None
        pool = self.pool
        members = pool.groups()
        if len(members) < 2:
            return False
        role_stats = {stats.role: stats for stats in self.monitor.snapshot().roles}
        by_name: dict[str, RoleGroup] = {}
        observations = []
        for group, agents in members.items():
            by_name[group.name] = group
            stats = [role_stats[role] for role in group.roles if role in role_stats]
            # A role's utilisation times its agents is its busy share of the
            # window, in agents; the group's is the sum over its roles.
            # NOTE: a role served by several groups counts in full in each,
            # so its ready tasks can make more than one group ask for agents.
            # Config files give each role one endpoint, so this needs a pool
            # built by hand.
            busy = sum(item.utilisation * item.agents for item in stats)
            observations.append(
                GroupObservation(
                    group.name,
                    group.endpoint,
                    agents=len(agents),
                    idle=sum(1 for agent in agents if agent.idle),
                    ready=sum(item.ready for item in stats),
                    utilisation=min(1.0, busy / len(agents)) if agents else 0.0,
                )
            )
        free = {
            endpoint: slots
            for endpoint in {group.endpoint for group in members}
            if (slots := pool.free_slots(endpoint)) is not None
        }
        decision = decide_roles(self.roles, self._role_state, observations, free)
        self._role_state = decision.state
        seen = {item.name: item for item in observations}
        for move in decision.moves:
            source, target = by_name[move.source], by_name[move.target]
            moved = pool.move_agents(source, target, move.count)
            if not moved:
                continue
            counts = pool.groups()
            record = AgentsMoved(
                self._run_id or "",
                now - self._run_started,
                tuple(agent.name for agent in moved),
                tuple(sorted(source.roles)),
                source.endpoint,
                tuple(sorted(target.roles)),
                target.endpoint,
                len(counts[source]),
                len(counts[target]),
                seen[move.target].ready,
                seen[move.source].utilisation,
            )
            logger.debug("moved %d agents from %s to %s", len(moved), move.source, move.target)
            self.moves.append(record)
            self._emit(record)
        return bool(decision.moves)

    def _sample(self, item: _Controlled, now: float) -> MonitorSample:
        summary = self.monitor.attempt_summary(item.flow.name)
        limiter = item.flow.limiter
        return MonitorSample(
            self._run_id or "",
            now - self._run_started,
            item.flow.name,
            limiter.limit,
            limiter.in_flight,
            limiter.waiting,
            summary.requests,
            summary.throughput_per_s,
            summary.tokens_per_s,
            summary.latency_p50_s,
            summary.latency_p95_s,
            summary.rate_429,
            summary.error_rate,
            self.monitor.ready_tasks(),
            ttft_p50_s=summary.ttft_p50_s,
            ttft_p95_s=summary.ttft_p95_s,
        )

    def _emit(self, event: Event) -> None:
        if self.events is not None and self._run_id is not None:
            self.events.emit(event)

    def _follow_run(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._run_id = event.run_id
            self._run_started = self.clock.now() - event.at_s
        elif isinstance(event, RunFinished):
            self._run_id = None
