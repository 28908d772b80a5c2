"""The ``dyntaskmas`` command line.

    dyntaskmas run "REQUEST"              plan, run and print the answer
    dyntaskmas run --input FILE [--json]  one request per line, or a JSON list
    dyntaskmas serve-sim [--port P]       serve the simulated LLM server over HTTP
    dyntaskmas runs                       list the journalled runs with their status
    dyntaskmas resume RUN_ID              finish an interrupted run from its journal
    dyntaskmas report RUN_ID -o FILE      write a journalled run's HTML report
    dyntaskmas plan "REQUEST"             show the plan of a request without running it
    dyntaskmas bench EXPERIMENT [--out DIR] [--json]
                                          run benchmarks on the simulated server

Exit codes: 0 every request answered; 1 a run finished without an answer;
2 bad options or input, an unreachable endpoint, a missing model file;
130 interrupted by SIGINT (Ctrl-C), 143 by SIGTERM, which print the run id
and the 'dyntaskmas resume' command first. Errors are one line on stderr,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

from dyntaskmas import __version__
from dyntaskmas.config import apply_config, load_config
from dyntaskmas.context.relevance import DEFAULT_THETA
from dyntaskmas.engine import admission
from dyntaskmas.engine.result import RunResult
from dyntaskmas.errors import (
    ConfigError,
    DynTaskMASError,
    EndpointUnavailableError,
    JournalError,
    RunInterruptedError,
)
from dyntaskmas.format import format_result
from dyntaskmas.graph.weights import WEIGHTINGS
from dyntaskmas.interrupt import RunTracker
from dyntaskmas.journal.codec import decode_event
from dyntaskmas.journal.resume import load_resume_state
from dyntaskmas.journal.store import (
    JOURNAL_DIR_ENV_VAR,
    JOURNAL_FILE_NAME,
    JournalStore,
    RunRow,
    default_journal_dir,
    with_shown_status,
)
from dyntaskmas.limits import DEFAULT_MAX_TASKS, MAX_DEPTH_LIMIT
from dyntaskmas.llm.endpoint import STRUCTURED_OUTPUT_MODES
from dyntaskmas.observe.accounting import format_accounting, load_prices, prices_from_mapping
from dyntaskmas.observe.graph_export import PLAN_FORMATS
from dyntaskmas.observe.progress import should_draw_progress
from dyntaskmas.observe.run_view import build_run_view
from dyntaskmas.observe.session import (
    ObserveOptions,
    RunObserver,
    check_output_path,
    write_observed_files,
)
from dyntaskmas.planning.schema import MAX_SUBTASKS_LIMIT
from dyntaskmas.runner import (
    BASE_URL_ENV_VAR,
    DEFAULT_REPLANS,
    Runner,
    RunOptions,
    options_from_journal,
)

if TYPE_CHECKING:
    from dyntaskmas.sim.capacity import CapacityProfile
    from dyntaskmas.sim.http_server import SimulatedLLMServer

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class InputError(ConfigError):
    """A request or input file is unusable."""


class _OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, as for every other error.

    argparse's default prints the whole usage block before the message.
    Subparsers are built from the parent's class, so they inherit this.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrorParser(
        prog="dyntaskmas",
        description="Plan a request into a task graph and run it on parallel LLM agents.",
    )
    parser.add_argument("--version", action="version", version=f"dyntaskmas {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="plan and run requests",
        description="Plan each request into a task graph, run it, print the answer and graph.",
    )
    source = run.add_mutually_exclusive_group(required=True)
    source.add_argument("request", nargs="?", help="the request text")
    source.add_argument(
        "--input",
        metavar="FILE",
        type=Path,
        help="a text file with one request per line, or a JSON list of strings or of "
        "objects with a 'question' field (such as the ParallelQA file); - reads standard "
        "input. The requests run one after another",
    )
    run.add_argument(
        "--limit", type=int, metavar="N", help="run only the first N requests of --input"
    )
    run.add_argument(
        "--base-url",
        metavar="URL",
        help=f"OpenAI-compatible API root, e.g. http://127.0.0.1:8000/v1 (default: "
        f"${BASE_URL_ENV_VAR}; if unset, the embedded SmolLM2 model is started)",
    )
    run.add_argument(
        "--model",
        help="model name on that endpoint (default: $DYNTASKMAS_MODEL, or the only "
        "model the endpoint lists)",
    )
    run.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="environment variable holding the API key (default: DYNTASKMAS_API_KEY, "
        "then OPENAI_API_KEY)",
    )
    run.add_argument("--agents", type=int, default=4, help="number of agents (default: 4)")
    run.add_argument(
        "--concurrency",
        type=concurrency_value,
        default="auto",
        metavar="auto|N",
        help="requests in flight per endpoint: 'auto' adapts the limit from measured "
        "latency and 429s, starting from the number of agents; N fixes it (default: auto; "
        "1 per embedded server either way)",
    )
    run.add_argument(
        "--role-agents",
        choices=("auto", "fixed"),
        default="auto",
        help="agents per role when a config file routes roles to different endpoints: "
        "'auto' moves idle agents to roles whose tasks wait, 'fixed' keeps the starting "
        "split (default: auto)",
    )
    run.add_argument(
        "--max-depth",
        type=int,
        default=2,
        help="decomposition levels: 1 plans once, 2 lets subtasks be planned again (default: 2)",
    )
    run.add_argument(
        "--max-subtasks",
        type=int,
        default=6,
        help=f"subtasks per decomposition, 2 to {MAX_SUBTASKS_LIMIT} (default: 6)",
    )
    run.add_argument(
        "--max-tasks",
        type=int,
        default=DEFAULT_MAX_TASKS,
        metavar="N",
        help="tasks one run's graph may hold: a plan that would pass it runs as one task, "
        "and other growth (follow-ups, review loops) stops the run once this many tasks "
        f"have called a model (default: {DEFAULT_MAX_TASKS})",
    )
    run.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file with endpoints, roles, limits and prices (see docs/configuration.md); "
        "options given here win over its limits",
    )
    run.add_argument(
        "--max-tokens",
        type=int,
        default=256,
        metavar="TOKENS",
        help="completion tokens per work task (default: 256)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="timeout of one HTTP request to the model, in seconds (default: 120)",
    )
    run.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default="normalized",
        help="edge weights: 'normalized' (alpha=1/T_c, beta=1/T_t) or 'seconds' "
        "(alpha=beta=1) (default: normalized)",
    )
    run.add_argument(
        "--local-servers",
        type=int,
        default=2,
        metavar="N",
        help="embedded model server processes, each serving one request at a time (default: 2)",
    )
    run.add_argument(
        "--theta",
        type=float,
        default=DEFAULT_THETA,
        help="relevance threshold (Jaccard of tags, 0 to 1) for sharing a task's output "
        f"with tasks other than its dependents (default: {DEFAULT_THETA})",
    )
    run.add_argument(
        "--context-window",
        type=int,
        metavar="TOKENS",
        help="the model's context window; no prompt exceeds it (default: the embedded "
        "server's, or 8192 for --base-url)",
    )
    run.add_argument(
        "--structured-output",
        choices=STRUCTURED_OUTPUT_MODES,
        default="json_schema",
        help="how plan calls ask the server for JSON: OpenAI's 'json_schema' "
        "(vLLM, Ollama, OpenAI), 'json_object' with a schema (llama-cpp-python's "
        "server), or 'none' (default: json_schema; ignored for the embedded model)",
    )
    run.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stream responses from --base-url and config-file endpoints, which measures "
        "each call's time to first token (default: on; the embedded model never streams, "
        "because its server sends no token counts in a stream)",
    )
    run.add_argument(
        "--model-file",
        metavar="PATH",
        help="GGUF file for the embedded server instead of SmolLM2-135M-Instruct",
    )
    run.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per request instead of text",
    )
    _add_dynamic_options(run)
    _add_journal_options(run)
    _add_observe_options(run)
    _add_serve_sim_parser(commands)
    _add_runs_parser(commands)
    _add_resume_parser(commands)
    _add_report_parser(commands)
    _add_plan_parser(commands, run)
    _add_bench_parser(commands)
    return parser


def read_requests(path: Path, limit: int | None = None) -> list[str]:
    """Read requests from a text file (one per line) or a JSON list.

    ``-`` reads standard input. Raises InputError naming the file and the problem.
    """
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"input file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read input file {str(path)!r}: {exc}") from None

    # A .json file is parsed as JSON, so that a wrong shape is reported
    # instead of run as the text of a request. Other files are JSON only if
    # they parse as JSON: a text line may well start with "[urgent]".
    if path.suffix.lower() == ".json" or _parses_as_json(text):
        requests = _requests_from_json(path, text)
    else:
        requests = [line.strip() for line in text.splitlines() if line.strip()]
    if not requests:
        raise InputError(f"input file {str(path)!r} contains no requests")
    if limit is not None:
        requests = requests[:limit]
    for index, request in enumerate(requests, start=1):
        check_request(request, where=f"request {index} of {str(path)!r}")
    return requests


def _parses_as_json(text: str) -> bool:
    if not text.lstrip().startswith(("[", "{")):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _requests_from_json(path: Path, text: str) -> list[str]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"input file {str(path)!r} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            f"give a JSON list, or plain text with one request per line"
        ) from None
    if not isinstance(items, list):
        raise InputError(
            f"input file {str(path)!r} does not hold a JSON list; give a list of strings "
            f"or of objects with a string 'question' field"
        )
    requests = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            requests.append(item)
        elif isinstance(item, dict) and isinstance(item.get("question"), str):
            requests.append(item["question"])
        else:
            raise InputError(
                f"item {index} of {str(path)!r} is neither a string nor an object with a "
                f"string 'question' field"
            )
    return requests


def check_request(request: str, *, where: str = "the request") -> None:
    """Apply the engine's request check, as an InputError the command reports."""
    try:
        admission.check_request(request, where=where)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def concurrency_value(text: str) -> int | Literal["auto"]:
    """Parse ``--concurrency``: ``auto`` or a whole number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid value {text!r}; use 'auto' or a whole number such as 8"
        ) from None


def options_from_args(args: argparse.Namespace) -> RunOptions:
    """Check the options under their flag names, then build RunOptions."""
    if args.limit is not None and args.input is None:
        raise ConfigError("--limit applies to --input only; drop it or give --input FILE")
    minimums = [
        ("--limit", args.limit, 1),
        ("--agents", args.agents, 1),
        ("--concurrency", None if args.concurrency == "auto" else args.concurrency, 1),
        ("--max-depth", args.max_depth, 1),
        ("--max-subtasks", args.max_subtasks, 2),
        ("--max-tokens", args.max_tokens, 1),
        ("--local-servers", args.local_servers, 1),
        ("--max-llm-calls", args.max_llm_calls, 1),
        ("--max-run-tokens", args.max_run_tokens, 1),
        ("--follow-ups", args.follow_ups, 0),
        ("--replans", args.replans, 0),
        ("--reviews", args.reviews, 0),
    ]
    for flag, value, minimum in minimums:
        if value is not None and value < minimum:
            raise ConfigError(f"{flag} must be >= {minimum}, got {value}")
    if args.max_depth > MAX_DEPTH_LIMIT:
        raise ConfigError(f"--max-depth must be <= {MAX_DEPTH_LIMIT}, got {args.max_depth}")
    if args.max_subtasks > MAX_SUBTASKS_LIMIT:
        raise ConfigError(
            f"--max-subtasks must be <= {MAX_SUBTASKS_LIMIT}, got {args.max_subtasks}"
        )
    replans = args.replans
    if replans is None:
        replans = DEFAULT_REPLANS if args.max_depth >= 2 else 0
    elif replans > 0 and args.max_depth < 2:
        raise ConfigError(
            f"--replans {replans} needs --max-depth 2 or more, because a re-plan decomposes "
            f"the failed task one level down; raise --max-depth or pass --replans 0"
        )
    if not 0.0 <= args.theta <= 1.0:
        raise ConfigError(f"--theta must be between 0 and 1, got {args.theta}")
    if args.context_window is not None and args.context_window < 512:
        raise ConfigError(f"--context-window must be >= 512 tokens, got {args.context_window}")
    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be > 0 seconds, got {args.timeout}")
    return RunOptions(
        base_url=args.base_url,
        model=args.model,
        api_key_env=args.api_key_env,
        agents=args.agents,
        concurrency=args.concurrency,
        role_agents=args.role_agents,
        max_depth=args.max_depth,
        max_subtasks=args.max_subtasks,
        max_tasks=args.max_tasks,
        work_max_tokens=args.max_tokens,
        request_timeout_s=args.timeout,
        weighting=args.weighting,
        local_servers=args.local_servers,
        model_file=args.model_file,
        structured_output=args.structured_output,
        theta=args.theta,
        context_window_tokens=args.context_window,
        journal=not args.no_journal,
        journal_dir=str(args.journal_dir) if args.journal_dir is not None else None,
        max_llm_calls=args.max_llm_calls,
        max_run_tokens=args.max_run_tokens,
        max_follow_ups=args.follow_ups,
        max_replans=replans,
        optimise=args.optimise,
        max_reviews=args.reviews,
        stream=args.stream,
    )


def _add_dynamic_options(parser: argparse.ArgumentParser) -> None:
    """Add the budget and graph-change options of ``run``."""
    budget = parser.add_argument_group(
        "budget (a run that reaches a limit stops and lists what did not run)"
    )
    budget.add_argument("--max-llm-calls", type=int, metavar="N", help="model calls per run")
    budget.add_argument(
        "--max-run-tokens",
        type=int,
        metavar="TOKENS",
        help="prompt plus completion tokens per run; calls in flight finish",
    )
    parser.add_argument(
        "--follow-ups",
        type=int,
        default=0,
        metavar="N",
        help="follow-up subtasks that work agents may ask for per run (default: 0, off)",
    )
    parser.add_argument(
        "--replans",
        type=int,
        default=None,
        metavar="N",
        help="times a failed task is re-planned before it counts as failed; needs "
        "--max-depth 2 or more (default: 1, or 0 with --max-depth 1; 0 reports a failure "
        "at once)",
    )
    parser.add_argument(
        "--reviews",
        type=int,
        default=0,
        metavar="N",
        help="subtasks per plan that the planner may mark for a critique-and-revise loop "
        "of up to 2 rounds (default: 0)",
    )
    parser.add_argument(
        "--optimise",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let the workflow optimiser choose how far to split nested plans and merge "
        "tiny sibling tasks (default: on; --no-optimise runs plans as the planner makes them)",
    )


async def _run_command(args: argparse.Namespace) -> int:
    tracker = RunTracker(journal_dir=args.journal_dir)
    return await tracker.run_until_signal(_run_requests(args, tracker))


async def _run_requests(args: argparse.Namespace, tracker: RunTracker) -> int:
    options = options_from_args(args)
    if args.config is not None:
        options = apply_config(options, load_config(args.config, known_roles=options.roles))
    if args.input is not None:
        requests = read_requests(args.input, args.limit)
    else:
        check_request(args.request)
        requests = [args.request]

    observe = with_config_prices(observe_options_from_args(args), options)
    if len(requests) > 1 and (observe.trace is not None or observe.report is not None):
        raise ConfigError(
            "--trace and --report write the file of one run; give one request, not --input"
        )

    status = EXIT_OK
    async with Runner(options) as runner:
        tracker.runner = runner
        for index, request in enumerate(requests):
            with RunObserver(runner.engine.events, observe, write_on_exit=False) as observer:
                result = await runner.run(request)
            if result.answer is None:
                status = EXIT_RUN_FAILED
            if args.json:
                print(json.dumps(_result_json(result, observer), ensure_ascii=False), flush=True)
            else:
                if len(requests) > 1:
                    print(f"=== Request {index + 1} of {len(requests)}: {request}")
                else:
                    print(f"Request: {request}")
                print(format_result(result), end="\n\n")
                print(format_accounting(observer.accounting()), end="\n\n", flush=True)
            # After the result is printed, so a file that cannot be written loses nothing.
            observer.write_files()
    return status


# --- serve-sim: the simulated LLM server over HTTP -----------------------------


def _add_serve_sim_parser(
    commands: argparse._SubParsersAction[_OneLineErrorParser],
) -> None:
    serve = commands.add_parser(
        "serve-sim",
        help="serve the simulated batched LLM server over HTTP",
        description="Serve an OpenAI-compatible simulated LLM server with continuous batching "
        "and optional fault injection. It prints its base URL when ready and stops on Ctrl-C "
        "or SIGTERM. Model latencies are simulated; fault delays are wall-clock seconds.",
    )

    # Where it listens and what it simulates.
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=int, default=0, help="port to listen on; 0 picks a free one (default: 0)"
    )
    serve.add_argument(
        "--slots", type=int, default=32, help="requests decoded together in one batch (default: 32)"
    )
    serve.add_argument(
        "--speedup",
        type=float,
        default=1.0,
        metavar="X",
        help="divide every simulated latency by X (default: 1)",
    )
    serve.add_argument(
        "--seed", type=int, default=0, help="seed of fault and output-length draws (default: 0)"
    )
    serve.add_argument("--model", default=None, help="model name to serve (default: sim-8b)")
    serve.add_argument(
        "--plan-fanout",
        type=int,
        default=4,
        metavar="N",
        help="subtasks of the plan sent for a request with a decomposition schema; 0 sends "
        "filler text instead (default: 4)",
    )
    serve.add_argument(
        "--max-context-tokens",
        type=int,
        metavar="TOKENS",
        help="context window: prompt plus output tokens per request (default: unlimited)",
    )

    # How long the outputs are.
    serve.add_argument(
        "--output-lengths",
        choices=("max-tokens", "conv", "code"),
        default="max-tokens",
        help="output length of a request: its max_tokens, or a draw from the Azure LLM "
        "trace's conversation or code service, capped by max_tokens (default: max-tokens)",
    )
    serve.add_argument(
        "--trace-dir",
        type=Path,
        metavar="DIR",
        help="directory with the Azure trace CSV files, to draw from every request instead "
        "of the built-in summary (needs --output-lengths conv or code)",
    )

    # Which requests fail, and how.
    faults = serve.add_argument_group("fault injection (rates are probabilities per request)")
    for flag, help_text in (
        ("--rate-429", "respond with 429 and Retry-After"),
        ("--rate-500", "respond with 500"),
        ("--rate-slow", "wait --slow-s seconds before handling the request"),
        ("--rate-malformed", "respond with 200 and a body that is not valid JSON"),
        ("--rate-truncated", "close the connection half-way through the body"),
    ):
        faults.add_argument(
            flag, type=float, default=0.0, metavar="R", help=f"{help_text} (default: 0)"
        )
    faults.add_argument(
        "--retry-after",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="wait requested by each 429, in seconds (default: 1)",
    )
    faults.add_argument(
        "--slow-s",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="delay of a slow response, in seconds (default: 5)",
    )

    # A capacity the server hides from its clients.
    capacity = serve.add_argument_group("hidden capacity (off unless one of these is given)")
    capacity.add_argument(
        "--inflate-above",
        type=int,
        metavar="N",
        help="double the latency of a request that arrives with more than N chat requests "
        "in flight (default with the others: 24)",
    )
    capacity.add_argument(
        "--reject-above",
        type=int,
        metavar="N",
        help="respond with 429 and Retry-After --retry-after to a request that would make more "
        "than N in flight (default with the others: 40)",
    )
    capacity.add_argument(
        "--throttle",
        metavar="START,SECONDS,RETRY_AFTER",
        help="respond to every chat request with 429 and Retry-After RETRY_AFTER seconds for "
        "SECONDS seconds from START seconds after the server starts, e.g. 0,5,2",
    )


def capacity_from_args(args: argparse.Namespace) -> CapacityProfile | None:
    """Return the hidden-capacity profile the serve-sim options ask for, or None."""
    from dyntaskmas.sim.capacity import CapacityProfile, ThrottleWindow

    if args.inflate_above is None and args.reject_above is None and args.throttle is None:
        return None
    defaults = CapacityProfile()
    inflate_above = defaults.inflate_above if args.inflate_above is None else args.inflate_above
    reject_above = defaults.reject_above if args.reject_above is None else args.reject_above
    if inflate_above < 1:
        raise ConfigError(f"--inflate-above must be >= 1, got {inflate_above}")
    if reject_above < inflate_above:
        raise ConfigError(
            f"--reject-above ({reject_above}) must be >= --inflate-above ({inflate_above})"
        )
    throttle = None
    if args.throttle is not None:
        parts = args.throttle.split(",")
        try:
            start, seconds, retry_after = (float(part) for part in parts)
        except ValueError:
            raise ConfigError(
                f"--throttle must be three numbers START,SECONDS,RETRY_AFTER such as 0,5,2, "
                f"got {args.throttle!r}"
            ) from None
        if not all(math.isfinite(v) and v >= 0 for v in (start, seconds, retry_after)):
            raise ConfigError(
                f"--throttle values must be numbers of seconds >= 0, got {args.throttle!r}"
            )
        throttle = ThrottleWindow(start, seconds, retry_after)
    return CapacityProfile(
        inflate_above=inflate_above,
        reject_above=reject_above,
        retry_after_s=args.retry_after,
        throttle=throttle,
    )


def sim_server_from_args(args: argparse.Namespace) -> SimulatedLLMServer:
    """Check the serve-sim options under their flag names, then build the server."""
    from dyntaskmas.sim.chat_model import DEFAULT_MODEL_NAME
    from dyntaskmas.sim.faults import FaultConfig
    from dyntaskmas.sim.http_server import SimulatedLLMServer
    from dyntaskmas.sim.server_model import ServerConfig
    from dyntaskmas.sim.workload_sizes import azure_sizes

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
    if args.slots < 1:
        raise ConfigError(f"--slots must be >= 1, got {args.slots}")
    if not (math.isfinite(args.speedup) and args.speedup > 0):
        raise ConfigError(f"--speedup must be a number > 0, got {args.speedup}")
    if args.plan_fanout < 0:
        raise ConfigError(f"--plan-fanout must be >= 0, got {args.plan_fanout}")
    if args.max_context_tokens is not None and args.max_context_tokens < 1:
        raise ConfigError(f"--max-context-tokens must be >= 1, got {args.max_context_tokens}")
    rates = [
        ("--rate-429", args.rate_429),
        ("--rate-500", args.rate_500),
        ("--rate-slow", args.rate_slow),
        ("--rate-malformed", args.rate_malformed),
        ("--rate-truncated", args.rate_truncated),
    ]
    for flag, rate in rates:
        if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
            raise ConfigError(f"{flag} must be between 0 and 1, got {rate}")
    total = sum(rate for _, rate in rates)
    if total > 1.0 + 1e-9:
        raise ConfigError(
            f"the fault rates add up to {total:g}, more than 1; a request gets at most one "
            f"fault, so lower some rates"
        )
    for flag, seconds in (("--retry-after", args.retry_after), ("--slow-s", args.slow_s)):
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ConfigError(f"{flag} must be a number of seconds >= 0, got {seconds}")
    if args.trace_dir is not None and args.output_lengths == "max-tokens":
        raise ConfigError("--trace-dir needs --output-lengths conv or code")

    output_lengths = None
    if args.output_lengths != "max-tokens":
        output_lengths = azure_sizes(args.trace_dir, args.output_lengths).output
    return SimulatedLLMServer(
        ServerConfig(slots=args.slots, max_context_tokens=args.max_context_tokens),
        faults=FaultConfig(
            rate_429=args.rate_429,
            retry_after_s=args.retry_after,
            rate_500=args.rate_500,
            rate_slow=args.rate_slow,
            slow_s=args.slow_s,
            rate_malformed=args.rate_malformed,
            rate_truncated=args.rate_truncated,
        ),
        host=args.host,
        port=args.port,
        model=args.model or DEFAULT_MODEL_NAME,
        speedup=args.speedup,
        seed=args.seed,
        output_lengths=output_lengths,
        plan_fanout=args.plan_fanout,
        capacity=capacity_from_args(args),
    )


async def _serve_sim_command(args: argparse.Namespace) -> int:
    server = sim_server_from_args(args)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Both signals stop the server cleanly, so Ctrl-C is not an interruption here.
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        try:
            await server.start()
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {args.host} port {args.port}: {exc.strerror or exc}; "
                f"pick another --port or --host"
            ) from None
        try:
            print(server.base_url, flush=True)
            await stop.wait()
        finally:
            await server.stop()
    finally:
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signal_number)
    return EXIT_OK


# --- bench: the benchmark experiments on the simulated server --------------------

DATA_DIR_ENV_VAR = "DYNTASKMAS_DATA_DIR"


def _add_bench_parser(
    commands: argparse._SubParsersAction[_OneLineErrorParser],
) -> None:
    from dyntaskmas.bench.experiments import EXPERIMENTS, STANDALONE_EXPERIMENTS

    bench = commands.add_parser(
        "bench",
        help="run the benchmark experiments on the simulated LLM server",
        description="Run benchmark experiments in simulated time: policies compared "
        "(baseline), agent-count sweep (scaling), server utilisation, AsyncHow plans against "
        "their lower bound, the engine's own overhead, the relevance threshold (theta), fixed "
        "concurrency limits against the allocator (adaptive), and "
        "the context manager under concurrent agents (context, real time, not in 'all'). "
        "Prints Markdown tables, or JSON.",
    )
    bench.add_argument(
        "experiment",
        choices=(*EXPERIMENTS, *STANDALONE_EXPERIMENTS, "all"),
        help="the experiment to run; 'all' runs every one but context",
    )
    bench.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write NAME.md, NAME.csv and NAME.png per experiment and report.md here",
    )
    bench.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object per experiment, {"experiment": NAME, "rows": [...]}',
    )
    bench.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"folder that contains asynchow/async_benchmark.json (default: ${DATA_DIR_ENV_VAR}, "
        "else ../shared/data from the current directory)",
    )
    bench.add_argument(
        "--quick",
        action="store_true",
        help="run tiny sizes in a few seconds, to check the setup; the numbers mean nothing",
    )


def bench_data_dir(option: Path | None, environ: Mapping[str, str]) -> Path:
    """Return the data folder: the option, else the environment variable, else ../shared/data."""
    if option is not None:
        return option
    from_env = environ.get(DATA_DIR_ENV_VAR)
    return Path(from_env) if from_env else Path("..") / "shared" / "data"


def _bench_command(args: argparse.Namespace) -> int:
    from dyntaskmas.bench.asynchow import ASYNC_FILE
    from dyntaskmas.bench.experiments import FULL, QUICK, experiment_names, run_experiment
    from dyntaskmas.bench.report import markdown_section, write_report

    names = list(experiment_names(args.experiment))
    data_dir = bench_data_dir(args.data_dir, os.environ)
    asynchow_file = data_dir / "asynchow" / ASYNC_FILE
    if "asynchow" in names and not asynchow_file.is_file():
        message = (
            f"the AsyncHow data is missing: {str(asynchow_file)!r} does not exist; pass "
            f"--data-dir DIR (the folder that contains asynchow/) or set {DATA_DIR_ENV_VAR}"
        )
        if args.experiment == "asynchow":
            raise ConfigError(message)
        print(f"dyntaskmas: warning: {message}; skipping the asynchow experiment", file=sys.stderr)
        names.remove("asynchow")
    if args.out is not None:
        # Fail before minutes of experiments, not after them.
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise ConfigError(f"--out {str(args.out)!r} is a file; pass a folder")
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot create the output folder {str(args.out)!r}: {exc.strerror}; "
                f"pass a writable folder to --out"
            ) from None

    results = []
    for name in names:
        result = run_experiment(name, data_dir=data_dir, sizes=QUICK if args.quick else FULL)
        results.append(result)
        if args.json:
            print(json.dumps(result.to_json()), flush=True)
        else:
            print(markdown_section(result), flush=True)
    if args.out is not None:
        try:
            written, plots_missing = write_report(results, args.out)
        except OSError as exc:
            raise ConfigError(f"cannot write the report to {str(args.out)!r}: {exc}") from None
        if plots_missing is not None:
            print(f"dyntaskmas: note: {plots_missing}", file=sys.stderr)
        print(f"dyntaskmas: wrote {len(written)} files to {args.out}", file=sys.stderr)
    return EXIT_OK


# --- runs and resume: the run journal -------------------------------------------

# Requests longer than this are cut in the runs table, to keep one run a line.
RUNS_REQUEST_CHARS = 60


def _add_journal_options(parser: argparse.ArgumentParser, *, run: bool = True) -> None:
    parser.add_argument(
        "--journal-dir",
        type=Path,
        metavar="DIR",
        help=f"folder of the run journal (default: ${JOURNAL_DIR_ENV_VAR}, else "
        "$XDG_DATA_HOME/dyntaskmas, else ~/.local/share/dyntaskmas)",
    )
    if run:
        parser.add_argument(
            "--no-journal",
            action="store_true",
            help="do not record the run, so it cannot be resumed",
        )


def _add_runs_parser(commands: argparse._SubParsersAction[_OneLineErrorParser]) -> None:
    runs = commands.add_parser(
        "runs",
        help="list the journalled runs with their status",
        description="List the runs in the journal, newest first: id, status (running, "
        "interrupted, succeeded, failed), tasks done, start time (UTC) and request.",
    )
    runs.add_argument("--json", action="store_true", help="print one JSON object per run")
    _add_journal_options(runs, run=False)


def _add_resume_parser(commands: argparse._SubParsersAction[_OneLineErrorParser]) -> None:
    resume = commands.add_parser(
        "resume",
        help="finish an interrupted, failed or stopped run from its journal",
        description="Rebuild an interrupted run's task graph and context from the journal "
        "and run only the tasks that had not finished, with the options the run started "
        "with. Prints the answer like 'run'.",
    )
    resume.add_argument("run_id", metavar="RUN_ID", help="the run's id, as 'dyntaskmas runs' lists")
    resume.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    resume.add_argument(
        "--base-url",
        metavar="URL",
        help="OpenAI-compatible API root to use instead of the one the run started with, "
        "e.g. after the server moved to another port",
    )
    _add_journal_options(resume, run=False)
    _add_observe_options(resume)


def format_runs(rows: Sequence[tuple[RunRow, str]]) -> str:
    """Return the runs table: one line per run, with the status to show."""
    if not rows:
        return "no runs recorded"
    lines = [f"{'RUN ID':<24} {'STATUS':<11} {'DONE':>5}  {'STARTED (UTC)':<19}  REQUEST"]
    for row, status in rows:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.created_at))
        request = " ".join(row.request.split())
        if len(request) > RUNS_REQUEST_CHARS:
            request = request[: RUNS_REQUEST_CHARS - 3] + "..."
        lines.append(f"{row.run_id:<24} {status:<11} {row.tasks_done:>5}  {started:<19}  {request}")
    return "\n".join(lines)


def _journal_dir(args: argparse.Namespace) -> Path:
    return Path(args.journal_dir) if args.journal_dir is not None else default_journal_dir()


def _runs_command(args: argparse.Namespace) -> int:
    journal_dir = _journal_dir(args)
    if args.journal_dir is not None and not Path(args.journal_dir).is_dir():
        raise ConfigError(
            f"journal folder {str(args.journal_dir)!r} does not exist; check --journal-dir"
        )
    if not (journal_dir / JOURNAL_FILE_NAME).exists():
        rows: list[tuple[RunRow, str]] = []
    else:
        with JournalStore(journal_dir, create=False) as store:
            rows = list(with_shown_status(store.runs()))
    if args.json:
        for row, status in rows:
            item = {
                "run_id": row.run_id,
                "status": status,
                "tasks_done": row.tasks_done,
                "created_at": row.created_at,
                "updated_at": row.updated_at,
                "request": row.request,
            }
            print(json.dumps(item, ensure_ascii=False))
    else:
        print(format_runs(rows))
    return EXIT_OK


async def _resume_command(args: argparse.Namespace) -> int:
    tracker = RunTracker(journal_dir=args.journal_dir)
    return await tracker.run_until_signal(_resume_run(args, tracker))


async def _resume_run(args: argparse.Namespace, tracker: RunTracker) -> int:
    journal_dir = _journal_dir(args)
    with JournalStore(journal_dir, create=False) as store:
        row, state = load_resume_state(store, args.run_id)
        history = [
            decode_event(event.kind, args.run_id, event.at_s, event.payload)
            for event in store.events(args.run_id)
        ]
    overrides: dict[str, object] = {"journal": True, "journal_dir": str(journal_dir)}
    if args.base_url is not None:
        overrides["base_url"] = args.base_url
    options = options_from_journal(row.options, **overrides)
    observe = with_config_prices(observe_options_from_args(args), options)
    # The trace and report cover every session of the run, so they are drawn
    # from the journal once this one has ended, not from its events alone.
    live = dataclasses.replace(observe, trace=None, report=None)
    async with Runner(options) as runner:
        tracker.runner = runner
        with RunObserver(runner.engine.events, live) as observer:
            # Earlier sessions' events give restored tasks their roles, and
            # the accounting the tokens those sessions spent.
            observer.add_history(history)
            result = await runner.resume(state)
    if args.json:
        print(json.dumps(_result_json(result, observer), ensure_ascii=False), flush=True)
    else:
        print(f"Request: {result.request}")
        print(format_result(result), end="\n\n")
        print(format_accounting(observer.accounting()), end="\n\n", flush=True)
    _write_journal_files(journal_dir, args.run_id, observe)
    return EXIT_OK if result.answer is not None else EXIT_RUN_FAILED


# --- observing runs: progress, accounting, trace, report, plan -------------------


def _add_observe_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="draw no live progress (it is drawn on stderr only when stdout and stderr "
        "are terminals)",
    )
    parser.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write a Chrome trace-event JSON file of the run, one track per agent, for "
        "Perfetto (ui.perfetto.dev) or chrome://tracing",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write the run's HTML report: graph, Gantt chart, utilisation, every task",
    )
    parser.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="TOML table of model prices per million tokens, to show costs "
        '(["MODEL"] prompt_per_million = X, completion_per_million = Y)',
    )


def observe_options_from_args(args: argparse.Namespace) -> ObserveOptions:
    """Check the observing options of run and resume, then build ObserveOptions."""
    for flag, path in (("--trace", args.trace), ("--report", args.report)):
        if path is not None:
            check_output_path(path, flag)
    prices = load_prices(args.prices) if args.prices is not None else None
    console = None
    if should_draw_progress(quiet=args.quiet, streams=(sys.stdout, sys.stderr)):
        from rich.console import Console

        console = Console(stderr=True)
    return ObserveOptions(
        console=console,
        trace=args.trace,
        report=args.report,
        prices=prices,
        otel_environ=os.environ,
    )


def with_config_prices(observe: ObserveOptions, options: RunOptions) -> ObserveOptions:
    """Use the config file's price table unless ``--prices`` gave one."""
    if observe.prices is not None or not options.prices:
        return observe
    table = {model: dataclasses.asdict(price) for model, price in options.prices.items()}
    return dataclasses.replace(observe, prices=prices_from_mapping(table))


def _result_json(result: RunResult, observer: RunObserver) -> dict[str, object]:
    data = result.to_json()
    data["accounting"] = observer.accounting().to_json()
    return data


def _add_report_parser(commands: argparse._SubParsersAction[_OneLineErrorParser]) -> None:
    report = commands.add_parser(
        "report",
        help="write a journalled run's HTML report",
        description="Write one self-contained HTML file (no network needed to view it) with "
        "the run's task graph, a Gantt chart of tasks per agent, agent utilisation over "
        "time, every task's prompt, output, tokens and timing, and the run's figures.",
    )
    report.add_argument("run_id", metavar="RUN_ID", help="the run's id, as 'dyntaskmas runs' lists")
    report.add_argument(
        "-o", "--output", type=Path, metavar="FILE", required=True, help="the HTML file to write"
    )
    report.add_argument(
        "--trace", type=Path, metavar="FILE", help="also write the run's Chrome trace JSON here"
    )
    report.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="TOML table of model prices per million tokens, to show costs",
    )
    _add_journal_options(report, run=False)


def _report_command(args: argparse.Namespace) -> int:
    check_output_path(args.output, "--output")
    if args.trace is not None:
        check_output_path(args.trace, "--trace")
    prices = load_prices(args.prices) if args.prices is not None else None
    observe = ObserveOptions(trace=args.trace, report=args.output, prices=prices)
    _write_journal_files(_journal_dir(args), args.run_id, observe)
    print(f"dyntaskmas: wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _write_journal_files(journal_dir: Path, run_id: str, observe: ObserveOptions) -> None:
    """Write the trace and report of ``observe`` for run ``run_id``, from its journal."""
    if observe.trace is None and observe.report is None:
        return
    with JournalStore(journal_dir, create=False) as store:
        store.run(run_id)
        rows = store.events(run_id)
    view = build_run_view(decode_event(row.kind, run_id, row.at_s, row.payload) for row in rows)
    write_observed_files(view, observe)


def _add_plan_parser(
    commands: argparse._SubParsersAction[_OneLineErrorParser], run: argparse.ArgumentParser
) -> None:
    plan = commands.add_parser(
        "plan",
        help="show the plan of a request without running it",
        description="Ask the planner to decompose the request (and subtasks it marks as not "
        "atomic, up to --max-depth), print the plan and run nothing else. Takes the "
        "endpoint options of 'run'.",
    )
    plan.add_argument("request", help="the request text")
    plan.add_argument(
        "--format",
        choices=PLAN_FORMATS,
        default="text",
        help="text (default), mermaid (a flowchart), dot (Graphviz) or json",
    )
    shared = (
        "--base-url",
        "--model",
        "--api-key-env",
        "--max-depth",
        "--max-subtasks",
        "--timeout",
        "--local-servers",
        "--structured-output",
        "--stream",
        "--model-file",
    )
    # The same argparse actions as run's, so that flags, defaults and help
    # cannot drift apart. argparse has no public way to copy an argument.
    for action in run._actions:
        if any(flag in shared for flag in action.option_strings):
            plan._add_action(action)
    # Every other option of run keeps run's default, so options_from_args
    # reads a plan's arguments as it reads a run's. A plan needs one agent
    # and records nothing in the journal.
    taken = {action.dest for action in plan._actions}
    plan.set_defaults(
        **{
            action.dest: action.default
            for action in run._actions
            if action.option_strings
            and action.dest not in taken
            and action.default is not argparse.SUPPRESS
        }
    )
    plan.set_defaults(agents=1, no_journal=True)


async def _plan_command(args: argparse.Namespace) -> int:
    from dyntaskmas.observe.graph_export import format_plan, plan_request

    check_request(args.request)
    options = options_from_args(args)
    async with Runner(options) as runner:
        planner = runner.engine.planner
        assert planner is not None, "the runner always builds a planner"
        role = next(iter(runner.engine.config.roles))
        tree = await plan_request(planner, args.request, role=role)
    print(format_plan(tree, args.format))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve-sim":
            return asyncio.run(_serve_sim_command(args))
        if args.command == "bench":
            return _bench_command(args)
        if args.command == "runs":
            return _runs_command(args)
        if args.command == "resume":
            return asyncio.run(_resume_command(args))
        if args.command == "report":
            return _report_command(args)
        if args.command == "plan":
            return asyncio.run(_plan_command(args))
        return asyncio.run(_run_command(args))
    except KeyboardInterrupt:
        print("dyntaskmas: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (as with `| head`); Python would otherwise
        # report the failed flush of stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except RunInterruptedError as exc:
        print(f"dyntaskmas: {exc}", file=sys.stderr)
        return exc.exit_status
    except (ConfigError, EndpointUnavailableError, JournalError) as exc:
        print(f"dyntaskmas: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DynTaskMASError as exc:
        print(f"dyntaskmas: error: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
