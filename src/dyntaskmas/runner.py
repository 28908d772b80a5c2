"""Assemble a ready-to-run engine from options: endpoint, agents, planner.

:class:`Runner` is what the CLI and most library users need. With a base URL
it talks to that OpenAI-compatible server; without one it starts the embedded
model (SmolLM2-135M-Instruct under llama-cpp-python's server) on 127.0.0.1 and
stops it on exit, whether the block ends normally, raises, or is cancelled.

    async with Runner(RunOptions(agents=4)) as runner:
        result = await runner.run("Which is longer, the Nile or the Amazon?")
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import openai

from dyntaskmas.adapt.allocator import Allocator
from dyntaskmas.adapt.calibration import CostCalibrator
from dyntaskmas.adapt.controller import ControllerConfig
from dyntaskmas.adapt.monitor import Monitor
from dyntaskmas.adapt.roles import RoleAllocatorConfig
from dyntaskmas.clock import MonotonicClock
from dyntaskmas.config import EndpointConfig, Price, apply_config, load_config
from dyntaskmas.context.manager import ContextManager
from dyntaskmas.context.relevance import DEFAULT_THETA
from dyntaskmas.engine.agent_pool import AgentPool, build_agents, build_role_agents
from dyntaskmas.engine.budget import Budget
from dyntaskmas.engine.executor import PLANNER_ROLE, Engine, EngineConfig
from dyntaskmas.engine.followups import FollowUpLimits
from dyntaskmas.engine.optimiser import OptimiserConfig
from dyntaskmas.engine.prompts import DEFAULT_ROLES
from dyntaskmas.engine.result import RunResult
from dyntaskmas.errors import ConfigError, EndpointUnavailableError
from dyntaskmas.graph.weights import WEIGHTINGS, Weighting
from dyntaskmas.journal.recorder import JournalRecorder, new_run_id
from dyntaskmas.journal.replay import ResumeState
from dyntaskmas.journal.store import JournalStore, default_journal_dir
from dyntaskmas.limits import DEFAULT_MAX_TASKS, MAX_DEPTH_LIMIT, MAX_TASKS_LIMIT
from dyntaskmas.llm.embedded import EmbeddedServer
from dyntaskmas.llm.endpoint import (
    MODEL_ENV_VAR,
    STRUCTURED_OUTPUT_MODES,
    Endpoint,
    StructuredOutputMode,
)
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.retry import RetryPolicy
from dyntaskmas.llm.types import ChatModel
from dyntaskmas.planning.planner import PlanLimits, Planner
from dyntaskmas.planning.schema import MAX_SUBTASKS_LIMIT

if TYPE_CHECKING:
    from dyntaskmas.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)

BASE_URL_ENV_VAR = "DYNTASKMAS_BASE_URL"
# A remote server's window is unknown to us; most current models take more.
REMOTE_CONTEXT_WINDOW_TOKENS = 8192
#: Re-plans of a failed task before its failure is reported. One second
#: attempt recovers from a single bad plan or reply, and bounds the cost.
DEFAULT_REPLANS = 1


@dataclass(frozen=True)
class RunOptions:
    """Everything needed to set up runs; each field is checked on creation.

    ``base_url`` falls back to ``DYNTASKMAS_BASE_URL``; with neither, the
    embedded model is used. ``api_key_env`` names the environment variable
    that contains the API key (keys are never passed as values, so they stay out
    of shell history and process lists). ``concurrency`` limits requests in
    flight per endpoint: ``"auto"`` (the default) lets the allocator adapt
    each limit while the run goes on, starting from the number of agents;
    a number fixes it. An embedded server serves one request at a time, so
    its limit is 1 either way. ``role_agents`` applies when roles are routed
    to different endpoints: ``"auto"`` (the default) lets the allocator move
    idle agents to roles whose ready tasks wait, ``"fixed"`` keeps the
    split the agents started with.
    ``local_servers`` is how many embedded server processes to start; each
    serves one request at a time, so two give real parallelism on two cores.
    ``model_file`` replaces the embedded SmolLM2 weights with another GGUF file.
    ``structured_output`` is how plan calls ask a remote server for JSON;
    the embedded server always gets the form it accepts. ``theta`` is the
    relevance threshold for sharing outputs beyond a task's predecessors;
    ``context_window_tokens`` is the model's window (default: the embedded
    server's, or 8192 for a remote endpoint), which no prompt exceeds.
    ``journal`` records every run in the SQLite journal under ``journal_dir``
    (default: ``$DYNTASKMAS_JOURNAL_DIR``, else ``$XDG_DATA_HOME/dyntaskmas``,
    else ``~/.local/share/dyntaskmas``), so that it can be resumed.
    ``max_tasks``, ``max_llm_calls`` and ``max_run_tokens`` are the run's
    budget (None: no limit). ``max_follow_ups`` is how many follow-up
    subtasks work agents may ask for in one run (0: work output is plain
    text). ``max_replans`` is how many times a failed task is re-planned
    (default :data:`DEFAULT_REPLANS`) before its failure is reported. Re-planning needs
    ``max_depth`` >= 2, because a re-plan decomposes the task one level down.
    ``optimise`` turns on the workflow optimiser (granularity of nested
    plans, merges of tiny sibling tasks); it is on by default, because it
    was never slower in ``dyntaskmas bench optimiser``. ``max_reviews`` is how many
    subtasks of one decomposition the planner may mark for a
    critique-and-revise loop. ``stream`` streams the responses of remote
    endpoints (a base URL, or config-file endpoints without their own
    ``stream`` key), which measures each call's time to first token. The
    embedded server never streams: llama-cpp-python 0.3.36 ignores
    ``stream_options`` and sends no token counts in a stream.
    """

    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    agents: int = 4
    concurrency: int | Literal["auto"] = "auto"
    role_agents: Literal["auto", "fixed"] = "auto"
    max_depth: int = 2
    max_subtasks: int = 6
    max_tasks: int = DEFAULT_MAX_TASKS
    work_max_tokens: int = 256
    answer_max_tokens: int = 384
    request_timeout_s: float = 120.0
    # Retries of transient model-call failures: attempts per call, the
    # first included, and the first backoff ceiling in seconds.
    max_attempts: int = 6
    retry_base_delay_s: float = 0.5
    weighting: Weighting = "normalized"
    local_servers: int = 2
    model_file: str | None = None
    structured_output: StructuredOutputMode = "json_schema"
    theta: float = DEFAULT_THETA
    context_window_tokens: int | None = None
    roles: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    journal: bool = True
    journal_dir: str | None = None
    # From a config file (see dyntaskmas.config); endpoints replace base_url.
    config_file: str | None = None
    endpoints: tuple[EndpointConfig, ...] = ()
    role_endpoints: Mapping[str, str] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)
    max_llm_calls: int | None = None
    max_run_tokens: int | None = None
    max_follow_ups: int = 0
    max_replans: int = DEFAULT_REPLANS
    optimise: bool = True
    max_reviews: int = 0
    stream: bool = True

    def __post_init__(self) -> None:
        _at_least("agents", self.agents, 1)
        if self.concurrency != "auto":
            if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
                raise ConfigError(
                    f"concurrency must be 'auto' or an integer >= 1, got {self.concurrency!r}"
                )
            _at_least("concurrency", self.concurrency, 1)
        if self.role_agents not in ("auto", "fixed"):
            raise ConfigError(f"role_agents must be 'auto' or 'fixed', got {self.role_agents!r}")
        _at_least("max_depth", self.max_depth, 1)
        if self.max_depth > MAX_DEPTH_LIMIT:
            raise ConfigError(f"max_depth must be <= {MAX_DEPTH_LIMIT}, got {self.max_depth}")
        if not 3 <= self.max_tasks <= MAX_TASKS_LIMIT:
            raise ConfigError(
                f"max_tasks must be between 3 and {MAX_TASKS_LIMIT}, got {self.max_tasks}"
            )
        # The planner's own limits, checked here so that a bad value fails
        # before any embedded server is started.
        if not 2 <= self.max_subtasks <= MAX_SUBTASKS_LIMIT:
            raise ConfigError(
                f"max_subtasks must be between 2 and {MAX_SUBTASKS_LIMIT}, got {self.max_subtasks}"
            )
        _at_least("work_max_tokens", self.work_max_tokens, 1)
        _at_least("answer_max_tokens", self.answer_max_tokens, 1)
        _at_least("local_servers", self.local_servers, 1)
        _at_least("max_attempts", self.max_attempts, 1)
        if not 0 <= self.retry_base_delay_s <= 60:
            raise ConfigError(
                f"retry_base_delay_s must be between 0 and 60 seconds, "
                f"got {self.retry_base_delay_s}"
            )
        if self.request_timeout_s <= 0:
            raise ConfigError(f"request timeout must be > 0 seconds, got {self.request_timeout_s}")
        if self.model_file is not None and self.base_url is not None:
            raise ConfigError(
                "a model file is only used by the embedded server; drop either the "
                "model file or the base URL"
            )
        if not 0.0 <= self.theta <= 1.0:
            raise ConfigError(f"theta must be between 0 and 1, got {self.theta}")
        if self.context_window_tokens is not None:
            _at_least("context_window_tokens", self.context_window_tokens, 512)
        if self.structured_output not in STRUCTURED_OUTPUT_MODES:
            raise ConfigError(
                f"structured output mode {self.structured_output!r} is unknown; use one of "
                f"{', '.join(STRUCTURED_OUTPUT_MODES)}"
            )
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(
                f"weighting {self.weighting!r} is unknown; use one of {', '.join(WEIGHTINGS)}"
            )
        for name in ("max_tasks", "max_llm_calls", "max_run_tokens"):
            value = getattr(self, name)
            if value is not None:
                _at_least(name, value, 1)
        _at_least("max_follow_ups", self.max_follow_ups, 0)
        _at_least("max_replans", self.max_replans, 0)
        _at_least("max_reviews", self.max_reviews, 0)
        if self.api_key_env is not None and not os.environ.get(self.api_key_env):
            raise ConfigError(
                f"environment variable {self.api_key_env} is not set or empty; "
                f"export it with the API key, or drop the option"
            )


def journal_options(options: RunOptions) -> dict[str, Any]:
    """Return ``options`` as the JSON the journal stores with a run.

    Holds no secret: an API key is only ever named by its environment
    variable (``api_key_env``), and the key itself is read when a run starts.
    """
    data = asdict(options)
    data["roles"] = dict(options.roles)
    # Endpoints are stored without their keys: a resume reads the config
    # file again, or the variable each api_key_env names.
    data["endpoints"] = [
        {key: value for key, value in asdict(endpoint).items() if key != "api_key"}
        for endpoint in options.endpoints
    ]
    data["role_endpoints"] = dict(options.role_endpoints)
    data["prices"] = {model: asdict(price) for model, price in options.prices.items()}
    return data


def options_from_journal(recorded: Mapping[str, Any], **overrides: Any) -> RunOptions:
    """Rebuild RunOptions from what :func:`journal_options` stored; unknown keys are dropped."""
    known = {f.name for f in fields(RunOptions)}
    values = {key: value for key, value in recorded.items() if key in known}
    # NOTE: an endpoint whose key was passed as a value, not through a
    # variable or a config file, resumes without it.
    values["endpoints"] = tuple(
        EndpointConfig(**item, api_key=os.environ.get(item["api_key_env"] or "") or None)
        for item in values.get("endpoints", ())
    )
    values["prices"] = {model: Price(**price) for model, price in values.get("prices", {}).items()}
    if values.get("concurrency", "auto") is None:
        # Journals written before adaptive concurrency stored None for "as many as agents".
        values["concurrency"] = recorded.get("agents", "auto")
    values.update(overrides)
    options = RunOptions(**values)
    if options.config_file is not None:
        config = load_config(options.config_file, known_roles=options.roles)
        options = apply_config(options, config)
    return options


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")


class Runner:
    """An engine bound to endpoints; use it as an async context manager."""

    def __init__(
        self, options: RunOptions | None = None, *, tools: ToolRegistry | None = None
    ) -> None:
        self.options = options or RunOptions()
        # The only tools work tasks may call; not journalled, so pass it again to resume.
        self.tools = tools
        self.endpoints: list[Endpoint] = []
        self._models: list[OpenAIChatModel] = []
        self._stack = contextlib.AsyncExitStack()
        self._engine: Engine | None = None
        self._allocator: Allocator | None = None
        self._default_window = REMOTE_CONTEXT_WINDOW_TOKENS
        self.journal: JournalStore | None = None
        #: The id of the run started last, so that an interrupted caller can name it.
        self.current_run_id: str | None = None

    async def __aenter__(self) -> Runner:
        try:
            await self._open()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    @property
    def journalled(self) -> bool:
        """Whether runs are recorded in the journal, so that they can be resumed."""
        return self.options.journal

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("the runner is not open; use it in 'async with'")
        return self._engine

    async def run(self, request: str, *, run_id: str | None = None) -> RunResult:
        """Plan and run one request; with the journal on, ``run_id`` defaults to a new id."""
        if run_id is None and self.journal is not None:
            run_id = new_run_id()
            logger.info("run %s is journalled in %s", run_id, self.journal.path)
        self.current_run_id = run_id
        async with self._adapting():
            return await self.engine.run(request, run_id=run_id)

    async def resume(self, state: ResumeState) -> RunResult:
        """Continue a journalled run from the state loaded from the journal.

        A run killed before its first graph was recorded starts again from
        its request, under the same id.
        """
        self.current_run_id = state.run_id
        async with self._adapting():
            if not state.deltas:
                return await self.engine.run(state.request, run_id=state.run_id)
            return await self.engine.resume(state)

    @property
    def allocator(self) -> Allocator:
        """The allocator that adapts (or, with a fixed concurrency, only monitors) each limit."""
        if self._allocator is None:
            raise RuntimeError("the runner is not open; use it in 'async with'")
        return self._allocator

    def _adapting(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.allocator.running()

    async def _open(self) -> None:
        options = self.options
        base_url = options.base_url or os.environ.get(BASE_URL_ENV_VAR) or None
        if base_url is not None and options.model_file is not None:
            raise ConfigError(
                f"a model file is only used by the embedded server, but {BASE_URL_ENV_VAR} "
                f"is set to {base_url}; unset it, or drop the model file"
            )
        if options.endpoints:
            self.endpoints = [await self._configured_endpoint(item) for item in options.endpoints]
        elif base_url is None:
            self.endpoints = await self._start_embedded()
        else:
            self.endpoints = [await self._remote_endpoint(base_url)]

        models: dict[str, ChatModel] = {}
        policy = RetryPolicy(
            max_attempts=options.max_attempts, base_delay_s=options.retry_base_delay_s
        )
        for endpoint in self.endpoints:
            model = OpenAIChatModel(endpoint, policy=policy, timeout_s=options.request_timeout_s)
            self._stack.push_async_callback(model.aclose)
            self._models.append(model)
            models[endpoint.name] = model

        roles = dict(options.roles)
        if options.role_endpoints:
            agents = build_role_agents(
                options.agents, [*roles, PLANNER_ROLE], options.role_endpoints, models
            )
        else:
            agents = build_agents(options.agents, [*roles, PLANNER_ROLE], models)
        pool = AgentPool(
            agents,
            limits={endpoint.name: endpoint.limiter for endpoint in self.endpoints},
        )
        planner = Planner(
            self._models[0],
            roles=roles,
            limits=PlanLimits(
                max_subtasks=options.max_subtasks,
                max_depth=options.max_depth,
                max_reviews=options.max_reviews,
            ),
        )
        window = options.context_window_tokens or self._default_window
        config = EngineConfig(
            roles=roles,
            work_max_tokens=options.work_max_tokens,
            answer_max_tokens=options.answer_max_tokens,
            weighting=options.weighting,
            context_window_tokens=window,
            max_tasks=options.max_tasks,
            budget=Budget(options.max_tasks, options.max_llm_calls, options.max_run_tokens),
            follow_ups=(
                FollowUpLimits(
                    max_per_task=min(4, options.max_follow_ups), max_per_run=options.max_follow_ups
                )
                if options.max_follow_ups
                else None
            ),
            max_replans=options.max_replans,
            optimiser=OptimiserConfig() if options.optimise else None,
        )

        def new_context(run_id: str) -> ContextManager:
            return ContextManager(run_id, theta=options.theta)

        calibrator = CostCalibrator()
        self._engine = Engine(
            pool,
            planner=planner,
            config=config,
            context=new_context,
            tools=self.tools,
            calibrator=calibrator,
        )
        self._allocator = self._adaptive_manager(
            pool, calibrator, self._engine, embedded=base_url is None
        )
        if options.journal:
            journal_dir = (
                Path(options.journal_dir) if options.journal_dir else default_journal_dir()
            )
            self.journal = JournalStore(journal_dir)
            self._stack.callback(self.journal.close)
            JournalRecorder(self.journal, options=journal_options(options)).attach(
                self._engine.events
            )

    def _adaptive_manager(
        self, pool: AgentPool, calibrator: CostCalibrator, engine: Engine, *, embedded: bool
    ) -> Allocator:
        """Wire the monitor, the calibrator and the allocator to the endpoints and events."""
        clock = MonotonicClock()
        monitor = Monitor(clock, pool=pool)
        controlled = []
        for endpoint in self.endpoints:
            monitor.watch(endpoint)
            calibrator.watch(endpoint)
            # More requests in flight than agents cannot happen, and an
            # embedded server stays at its one request.
            limit = endpoint.limiter.limit
            max_limit = limit if embedded else max(limit, self.options.agents)
            controlled.append((endpoint, ControllerConfig(max_limit=max_limit)))
        monitor.attach(engine.events)
        calibrator.attach(engine.events)
        return Allocator(
            monitor,
            controlled,
            clock=clock,
            events=engine.events,
            pool=pool,
            adjust=self.options.concurrency == "auto",
            roles=RoleAllocatorConfig() if self.options.role_agents == "auto" else None,
        )

    async def _start_embedded(self) -> list[Endpoint]:
        options = self.options
        count = options.local_servers
        threads = max(1, (os.cpu_count() or 1) // count)
        endpoints = []
        for index in range(1, count + 1):
            server = EmbeddedServer(options.model_file, threads=threads)
            await self._stack.enter_async_context(server)
            self._default_window = server.context_tokens
            endpoints.append(
                Endpoint(
                    server.base_url,
                    model=server.model,
                    name=f"embedded-{index}",
                    # The server runs one request at a time; more in flight
                    # would only queue inside it and hide the wait from us.
                    concurrency=1,
                    structured_output=server.structured_output,
                )
            )
        return endpoints

    async def _configured_endpoint(self, item: EndpointConfig) -> Endpoint:
        model = item.model
        if model is None:
            probe = Endpoint(item.base_url, model="unused", api_key=item.api_key)
            served = await _served_models(probe)
            if len(served) != 1:
                raise ConfigError(
                    f"endpoint {item.name!r} has no model in the config file and "
                    f'{item.base_url} lists {len(served)} models; add model = "..."'
                )
            model = served[0]
        return Endpoint(
            item.base_url,
            model=model,
            api_key=item.api_key,
            name=item.name,
            concurrency=item.concurrency or self._starting_concurrency(),
            structured_output=item.structured_output,
            stream=item.stream if item.stream is not None else self.options.stream,
        )

    async def _remote_endpoint(self, base_url: str) -> Endpoint:
        options = self.options
        api_key = os.environ[options.api_key_env] if options.api_key_env else None
        # The probe resolves the URL and key the same way the real endpoint
        # will; its model name is never sent.
        probe = Endpoint(base_url, model=options.model or "unused", api_key=api_key)
        served = await _served_models(probe)
        model = options.model or os.environ.get(MODEL_ENV_VAR) or None
        if model is None:
            if len(served) != 1:
                listed = ", ".join(served[:10]) or "none"
                hint = "" if served or "/v1" in base_url else "; the URL may lack its /v1 suffix"
                raise ConfigError(
                    f"no model given and {base_url} lists {len(served)} models ({listed}); "
                    f"pass --model or set {MODEL_ENV_VAR}{hint}"
                )
            model = served[0]
        return Endpoint(
            base_url,
            model=model,
            api_key=api_key,
            concurrency=self._starting_concurrency(),
            structured_output=options.structured_output,
            stream=options.stream,
        )

    def _starting_concurrency(self) -> int:
        """Return an endpoint's first limit: the fixed one, or the agent count to adapt from."""
        concurrency = self.options.concurrency
        return self.options.agents if concurrency == "auto" else concurrency


async def _served_models(endpoint: Endpoint) -> list[str]:
    """Return the model ids the endpoint lists, or raise if it cannot be reached.

    A server that does not implement ``/models`` counts as reachable and
    listing nothing.
    """
    client = openai.AsyncOpenAI(
        base_url=endpoint.base_url, api_key=endpoint.api_key, max_retries=1, timeout=10.0
    )
    try:
        page = await client.models.list()
        return [item.id for item in page.data]
    except (openai.APIConnectionError, openai.APITimeoutError) as exc:
        raise EndpointUnavailableError(
            f"cannot reach the endpoint {endpoint.base_url}: {str(exc).rstrip('.')}; "
            f"check that the server "
            f"is running and the URL (including /v1) is right"
        ) from exc
    except openai.AuthenticationError as exc:
        raise ConfigError(
            f"the endpoint {endpoint.base_url} rejected the API key (401); set the right "
            f"key in the variable named by --api-key-env, or DYNTASKMAS_API_KEY"
        ) from exc
    except openai.APIStatusError as exc:
        logger.info("endpoint %s does not list models (%s)", endpoint.base_url, exc.status_code)
        return []
    finally:
        await client.close()
