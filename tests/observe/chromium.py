"""Open a local HTML file in headless Chromium and report what happened, over DevTools.

A small client for the Chrome DevTools Protocol on aiohttp's websocket: it
starts Debian's ``chromium`` with a private profile and
``--remote-debugging-port=0``, reads the port from the profile's
``DevToolsActivePort`` file, opens the page and collects console messages,
uncaught exceptions, log entries (CSP violations among them) and dialogs
(``alert``) until the page has loaded and its script has run. Everything
stays on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_skip_reason() -> str | None:
    """Return why the browser tests cannot run here, or None; in CI they must run."""
    if chromium_binary() is not None:
        return None
    if os.environ.get("CI"):
        return None  # fail, not skip: the CI image must have chromium
    return "chromium is not installed (scripts/setup.sh --dev installs it as root)"


@dataclass
class PageReport:
    """What the page did: console messages, exceptions, log entries, dialogs, values read."""

    console: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    log_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""


class _Session:
    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def listen(self) -> None:
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            else:
                self.events.put_nowait(data)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        await self._socket.send_str(json.dumps({"id": call_id, "method": method, "params": params}))
        reply = await asyncio.wait_for(future, timeout=30)
        if "error" in reply:
            raise RuntimeError(f"DevTools {method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result


@contextlib.asynccontextmanager
async def _browser() -> AsyncIterator[int]:
    binary = chromium_binary()
    assert binary is not None, "chromium is not installed; install the Debian package chromium"
    # Chromium's helper processes may still write to the profile for a moment
    # after the browser exits, so a failed cleanup is not an error.
    with tempfile.TemporaryDirectory(
        prefix="dyntaskmas-chromium-", ignore_cleanup_errors=True
    ) as profile:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            for _ in range(600):
                if port_file.exists() and port_file.read_text().strip():
                    break
                if process.poll() is not None:
                    raise RuntimeError(f"chromium exited with status {process.returncode}")
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError("chromium did not open its DevTools port within 30 s")
            yield int(port_file.read_text().split()[0])
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def open_page(path: Path, expressions: dict[str, str]) -> PageReport:
    """Load ``path``, evaluate each of ``expressions`` once the page has run, screenshot it."""
    report = PageReport()
    async with _browser() as port, aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/json/list") as response:
            targets = await response.json()
        page = next(target for target in targets if target.get("type") == "page")
        async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as socket:
            session = _Session(socket)
            listener = asyncio.create_task(session.listen())
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await session.call(f"{domain}.enable")
                await session.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=1280,
                    height=1400,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                await session.call("Page.navigate", url=path.resolve().as_uri())
                await _collect_until_loaded(session, report)
                # Events that arrive with the load (console output of the
                # page's script) are drained once more.
                await asyncio.sleep(0)
                _drain(session, report)
                for name, expression in expressions.items():
                    result = await session.call(
                        "Runtime.evaluate", expression=expression, returnByValue=True
                    )
                    report.values[name] = result.get("result", {}).get("value")
                shot = await session.call(
                    "Page.captureScreenshot", format="png", captureBeyondViewport=True
                )
                report.screenshot = base64.b64decode(shot["data"])
                _drain(session, report)
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
    return report


async def _collect_until_loaded(session: _Session, report: PageReport) -> None:
    while True:
        event = await asyncio.wait_for(session.events.get(), timeout=30)
        _record(event, report)
        if event.get("method") == "Page.javascriptDialogOpening":
            # Dismiss it, or the page would hang waiting for the user.
            await session.call("Page.handleJavaScriptDialog", accept=True)
        if event.get("method") == "Page.loadEventFired":
            return


def _drain(session: _Session, report: PageReport) -> None:
    while not session.events.empty():
        _record(session.events.get_nowait(), report)


def _record(event: dict[str, Any], report: PageReport) -> None:
    method = event.get("method")
    params = event.get("params", {})
    if method == "Runtime.consoleAPICalled":
        texts = [str(arg.get("value", arg.get("description", ""))) for arg in params["args"]]
        report.console.append(f"{params['type']}: {' '.join(texts)}")
    elif method == "Runtime.exceptionThrown":
        report.exceptions.append(json.dumps(params["exceptionDetails"])[:500])
    elif method == "Log.entryAdded":
        entry = params["entry"]
        if entry.get("level") in ("error", "warning"):
            report.log_errors.append(f"{entry['level']}: {entry.get('text', '')}")
    elif method == "Page.javascriptDialogOpening":
        report.dialogs.append(params.get("message", ""))
