"""The role allocator: its pure rule, the pool's moves, and a run where one role dominates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dyntaskmas.adapt.allocator import Allocator
from dyntaskmas.adapt.controller import ControllerConfig
from dyntaskmas.adapt.monitor import Monitor
from dyntaskmas.adapt.roles import (
    GroupObservation,
    Move,
    RoleAllocatorConfig,
    RoleAllocatorState,
    decide_roles,
)
from dyntaskmas.config import apply_config, load_config
from dyntaskmas.engine.agent_pool import AgentPool, RoleGroup, build_role_agents
from dyntaskmas.engine.executor import Engine, EngineConfig
from dyntaskmas.engine.prompts import DEFAULT_ROLES
from dyntaskmas.engine.result import RunResult
from dyntaskmas.errors import ConfigError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.journal.codec import decode_event
from dyntaskmas.journal.recorder import JournalRecorder
from dyntaskmas.journal.store import JournalStore
from dyntaskmas.llm.attempts import LocalFlow, RetryingChatModel
from dyntaskmas.llm.scripted import ScriptedLLMServer, ScriptedReply, ScriptedRequest
from dyntaskmas.observe.events import AgentsMoved, Event, EventBus, TaskStarted
from dyntaskmas.runner import Runner, RunOptions
from dyntaskmas.sim.capacity import CapacityChatModel, CapacityProfile, CapacityServer
from dyntaskmas.sim.virtual_time import EventLoopClock, run_virtual

#: 0.1 s per output token and no prefill: a 100-token task takes 10 s.
SLOW = CapacityProfile(prefill_s_per_token=0.0, decode_s_per_token=0.1)


# --- the pure rule -----------------------------------------------------------------


def group(
    name: str,
    *,
    agents: int = 2,
    idle: int = 0,
    ready: int = 0,
    utilisation: float = 0.0,
    endpoint: str | None = None,
) -> GroupObservation:
    return GroupObservation(name, endpoint or name, agents, idle, ready, utilisation)


def test_idle_group_gives_to_waiting_group() -> None:
    groups = [group("busy", agents=2, ready=9, utilisation=1.0), group("quiet", agents=4, idle=4)]

    decision = decide_roles(RoleAllocatorConfig(), RoleAllocatorState(), groups, {"busy": 8})

    assert decision.moves == (Move("quiet", "busy", 3),)


def test_no_move_when_endpoint_is_full() -> None:
    """More agents would only wait for a slot of the waiting group's endpoint."""
    groups = [group("busy", agents=2, ready=9, utilisation=1.0), group("quiet", agents=4, idle=4)]

    decision = decide_roles(RoleAllocatorConfig(), RoleAllocatorState(), groups, {"busy": 0})

    assert decision.moves == ()


def test_busy_group_keeps_its_idle_agents() -> None:
    """A group above ``give_below`` keeps its idle agents, and so does one with waiting work."""
    config = RoleAllocatorConfig(give_below=0.5)
    waiting = group("busy", agents=2, ready=9, utilisation=1.0)

    for donor in (
        group("quiet", agents=4, idle=2, utilisation=0.8),
        group("quiet", agents=4, idle=2, ready=1, endpoint="shared"),
    ):
        decision = decide_roles(config, RoleAllocatorState(), [waiting, donor], {})
        assert decision.moves == (), donor


def test_hold_stops_moves_back() -> None:
    """After a move, the receiver gives nothing and the giver receives nothing for 3 intervals."""
    config = RoleAllocatorConfig(hold_intervals=3)
    first = decide_roles(
        config,
        RoleAllocatorState(),
        [group("a", ready=5, utilisation=1.0), group("b", agents=3, idle=3)],
        {},
    )
    assert first.moves == (Move("b", "a", 2),)

    reversed_need = [group("a", agents=4, idle=3), group("b", agents=1, ready=5, utilisation=1.0)]
    state = first.state
    for _ in range(3):
        later = decide_roles(config, state, reversed_need, {})
        assert later.moves == ()
        state = later.state
    assert decide_roles(config, state, reversed_need, {}).moves == (Move("a", "b", 3),)


def test_config_rejects_zero_min_agents() -> None:
    with pytest.raises(ConfigError, match="min_agents must be >= 1"):
        RoleAllocatorConfig(min_agents=0)


@st.composite
def role_groups(draw: st.DrawFn) -> tuple[list[GroupObservation], dict[str, int]]:
    count = draw(st.integers(1, 5))
    endpoints = [f"e{i}" for i in range(draw(st.integers(1, 3)))]
    groups = []
    for index in range(count):
        agents = draw(st.integers(1, 8))
        groups.append(
            GroupObservation(
                f"g{index}",
                draw(st.sampled_from(endpoints)),
                agents,
                draw(st.integers(0, agents)),
                draw(st.integers(0, 12)),
                draw(st.floats(0.0, 1.0)),
            )
        )
    free = {endpoint: draw(st.integers(0, 10)) for endpoint in endpoints if draw(st.booleans())}
    return groups, free


@settings(max_examples=300, deadline=None)
@given(
    drawn=role_groups(),
    give_below=st.floats(0.0, 1.0),
    min_agents=st.integers(1, 3),
    max_moves=st.integers(1, 6),
    hold_lengths=st.dictionaries(st.sampled_from(["g0", "g1", "g2"]), st.integers(0, 3)),
)
def test_moves_keep_invariants(
    drawn: tuple[list[GroupObservation], dict[str, int]],
    give_below: float,
    min_agents: int,
    max_moves: int,
    hold_lengths: dict[str, int],
) -> None:
    groups, free = drawn
    config = RoleAllocatorConfig(min_agents=min_agents, give_below=give_below, max_moves=max_moves)
    state = RoleAllocatorState(give_hold=hold_lengths, receive_hold=hold_lengths)
    by_name = {item.name: item for item in groups}

    decision = decide_roles(config, state, groups, free)

    given_away = {name: 0 for name in by_name}
    received = {name: 0 for name in by_name}
    for move in decision.moves:
        assert move.count > 0
        given_away[move.source] += move.count
        received[move.target] += move.count
    assert sum(move.count for move in decision.moves) <= max_moves
    for name, item in by_name.items():
        if given_away[name]:
            # Only idle agents of a group with nothing waiting and low use move,
            # never below the minimum, and never from a group on hold.
            assert received[name] == 0
            assert item.ready == 0
            assert item.utilisation <= give_below
            assert given_away[name] <= item.idle
            assert item.agents - given_away[name] >= min_agents
            assert hold_lengths.get(name, 0) == 0
        if received[name]:
            assert hold_lengths.get(name, 0) == 0
            assert received[name] <= item.ready - item.idle
    for endpoint, slots in free.items():
        taken = sum(received[item.name] for item in groups if item.endpoint == endpoint)
        assert taken <= slots
    for move in decision.moves:
        assert decision.state.give_hold[move.target] == config.hold_intervals
        assert decision.state.receive_hold[move.source] == config.hold_intervals


# --- the pool's moves --------------------------------------------------------------


class _Unused:
    """A model the pool never calls; moving agents needs none."""

    async def complete(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("the pool must not call models")


def test_pool_moves_idle_agent_to_other_group() -> None:
    models = {"a": _Unused(), "b": _Unused()}
    agents = build_role_agents(
        4,
        ["research", "write"],
        {"research": "a", "write": "b"},
        models,  # type: ignore[arg-type]
    )
    pool = AgentPool(agents)
    research = RoleGroup(frozenset({"research"}), "a")
    write = RoleGroup(frozenset({"write"}), "b")
    pool.assign(pool.agents[1], "busy-task")  # agent-2, on b

    moved = pool.move_agents(write, research, 2)

    assert [agent.name for agent in moved] == ["agent-4"]  # agent-2 is running
    assert {len(members) for members in pool.groups().values()} == {1, 3}
    assert moved[0].model is models["a"]
    assert pool.choose("research") is not None
    # Only agent-2, now running, still serves "write".
    assert pool.choose("write") is None


# --- a run where one role's work dominates -----------------------------------------


def dominated_run(
    *, adapt_roles: bool, store: JournalStore | None = None
) -> tuple[RunResult, dict[RoleGroup, int], list[Event]]:
    """24 research tasks of 10 s on endpoint ``a``, then one writing task on ``b``.

    Six agents start split 3 and 3 by role. Each endpoint allows 6 requests
    in flight, so agents, not the endpoints, limit the research.
    """
    results: list[RunResult] = []
    counts: dict[RoleGroup, int] = {}
    events: list[Event] = []

    async def main() -> None:
        clock = EventLoopClock()
        flows = {name: LocalFlow(name, concurrency=6, clock=clock) for name in ("a", "b")}
        models = {
            name: RetryingChatModel(CapacityChatModel(CapacityServer(SLOW)), flow)
            for name, flow in flows.items()
        }
        agents = build_role_agents(
            6, ["research", "write"], {"research": "a", "write": "b"}, models
        )
        pool = AgentPool(agents, limits={name: flow.limiter for name, flow in flows.items()})
        bus = EventBus()
        bus.subscribe(events.append)
        if store is not None:
            JournalRecorder(store).attach(bus)
        monitor = Monitor(clock, pool=pool)
        monitor.attach(bus)
        for flow in flows.values():
            monitor.watch(flow)
        allocator = Allocator(
            monitor,
            [(flow, ControllerConfig(max_limit=6)) for flow in flows.values()],
            clock=clock,
            events=bus,
            pool=pool,
            adjust=False,
            roles=RoleAllocatorConfig() if adapt_roles else None,
        )
        engine = Engine(
            pool,
            config=EngineConfig(roles={"research": "r", "write": "w"}, work_max_tokens=100),
            clock=clock,
            events=bus,
        )
        research = [TaskSpec(f"r{i}", f"research {i}", role="research") for i in range(24)]
        summary = TaskSpec(
            "summary", "write it up", role="write", depends_on=tuple(t.id for t in research)
        )
        async with allocator.running():
            results.append(await engine.run_graph([*research, summary], run_id="roles"))
        counts.update({group: len(members) for group, members in pool.groups().items()})

    run_virtual(main())
    return results[0], counts, events


def test_dominant_role_gets_agents_and_finishes_sooner(tmp_path: Path) -> None:
    store = JournalStore(tmp_path / "journal")
    research = RoleGroup(frozenset({"research"}), "a")
    write = RoleGroup(frozenset({"write"}), "b")

    fixed, fixed_counts, _ = dominated_run(adapt_roles=False)
    adapted, adapted_counts, events = dominated_run(adapt_roles=True, store=store)

    assert fixed.status == "succeeded"
    assert adapted.status == "succeeded"
    assert fixed_counts == {research: 3, write: 3}
    assert adapted_counts[research] > 3
    assert adapted_counts[write] >= 1
    assert adapted_counts[research] + adapted_counts[write] == 6
    assert adapted.makespan_s < fixed.makespan_s
    moves = [event for event in events if isinstance(event, AgentsMoved)]
    assert moves
    assert all(move.target_roles == ("research",) for move in moves)
    rows = [row for row in store.events("roles") if row.kind == "AgentsMoved"]
    assert len(rows) == len(moves)
    assert decode_event(rows[0].kind, "roles", rows[0].at_s, rows[0].payload) == moves[0]
    store.close()


# --- the runner, over HTTP on the real clock ---------------------------------------


async def test_runner_moves_agent_to_waiting_role(tmp_path: Path) -> None:
    """A config file routes ``researcher`` to its own server; 12 research tasks of 0.3 s each.

    Four agents start split 2 and 2. Planning and the answer need little of
    the main server, so after a control interval one of its agents moves to
    research, and the research tasks then run on three agents. Each
    endpoint's limit is fixed at 4: the adaptive controller would halve it
    for a probe in the first seconds, and then the endpoint, not the agents,
    would limit this short run.
    """

    def main_handler(request: ScriptedRequest) -> str:
        if request.response_format is None:
            return "the answer"
        subtasks = [
            {
                "id": f"s{index}",
                "description": f"Find fact {index}",
                "role": "researcher",
                "depends_on": [],
                "atomic": True,
                "cost": "small",
                "output_size": "short",
            }
            for index in range(12)
        ]
        return json.dumps({"subtasks": subtasks})

    events: list[Event] = []
    async with (
        ScriptedLLMServer(main_handler) as main_server,
        ScriptedLLMServer(lambda _: ScriptedReply(text="a fact", delay_s=0.3)) as research,
    ):
        path = tmp_path / "config.toml"
        path.write_text(
            f'[[endpoint]]\nname = "main"\nbase_url = "{main_server.base_url}"\n'
            f'model = "{main_server.model}"\n'
            f'[[endpoint]]\nname = "research"\nbase_url = "{research.base_url}"\n'
            f'model = "{research.model}"\n'
            f'[roles]\nresearcher = "research"\n[limits]\nagents = 4\nmax_subtasks = 12\n',
            encoding="utf-8",
        )
        options = apply_config(
            # The twelve research tasks must stay apart for agents to move;
            # the optimiser would merge them.
            RunOptions(journal_dir=str(tmp_path / "journal"), concurrency=4, optimise=False),
            load_config(path, known_roles=DEFAULT_ROLES),
        )
        async with Runner(options) as runner:
            runner.engine.events.subscribe(events.append)
            result = await runner.run("Find twelve facts")

    moves = [event for event in events if isinstance(event, AgentsMoved)]
    research_agents = {
        event.agent
        for event in events
        if isinstance(event, TaskStarted) and event.endpoint == "research"
    }
    assert result.answer == "the answer"
    assert len(research.calls) == 12
    assert moves
    assert moves[0].source_endpoint == "main"
    assert moves[0].target_roles == ("researcher",)
    assert moves[0].target_agents == 3
    assert len(research_agents) == 3
