"""Pieces shared by dyntaskmas's own OpenAI-compatible HTTP servers.

The scripted test server (:mod:`dyntaskmas.llm.scripted`) and the simulated
server (:mod:`dyntaskmas.sim.http_server`) both serve OpenAI's chat API with
aiohttp. This module starts such an app on a socket, builds OpenAI-shaped
error bodies and reads message text; the routes stay with each server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web

logger = logging.getLogger(__name__)

#: OpenAI's error ``type`` for each status; other 4xx are invalid requests
#: and every 5xx is a server error.
ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


async def serve_app(
    app: web.Application, host: str, port: int, *, backlog: int
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host``:``port`` (0 picks a free port); return its runner and port.

    ``backlog`` must exceed the number of clients that connect at once, or
    connections beyond it are refused under load.
    """
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=backlog)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return runner, int(address[1])
    await runner.cleanup()
    raise RuntimeError(f"cannot find the port the server bound: {runner.addresses!r}")


def error_response(
    status: int,
    message: str,
    error_type: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    param: str | None = None,
) -> web.Response:
    """Return an error in OpenAI's shape: ``{"error": {message, type, param, code}}``."""
    if error_type is None:
        error_type = (
            "server_error" if status >= 500 else ERROR_TYPES.get(status, "invalid_request_error")
        )
    body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    logger.debug("responding with HTTP %d: %s", status, message)
    return web.json_response(body, status=status, headers=dict(headers or {}))


def message_text(content: object) -> str:
    """Return the text of a message's content, a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and isinstance(part.get("text"), str)
        )
    return ""
