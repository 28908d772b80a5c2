"""Checks of what enters a run: the request, a ready-made graph, a plan's new tasks.

Pure functions on plain data, called by the executor before a run starts
and before a plan's tasks join the graph. The limits themselves are in
:mod:`dyntaskmas.limits`.
"""

from __future__ import annotations

from collections.abc import Sequence

from dyntaskmas.errors import TooManyTasksError
from dyntaskmas.graph.task import TaskSpec
from dyntaskmas.limits import MAX_DESCRIPTION_CHARS, MAX_REQUEST_CHARS


def check_request(request: str, *, where: str = "the request") -> None:
    """Raise ValueError for an empty request or one longer than MAX_REQUEST_CHARS.

    ``where`` names the request in the message, such as ``request 3 of 'q.txt'``.
    """
    if not request.strip():
        raise ValueError(f"{where} is empty; give the text of a task to run")
    if len(request) > MAX_REQUEST_CHARS:
        raise ValueError(
            f"{where} has {len(request)} characters, more than the limit of "
            f"{MAX_REQUEST_CHARS}; shorten it or split it into several requests"
        )


def check_graph(specs: Sequence[TaskSpec], max_tasks: int | None) -> None:
    """Raise for a ready-made graph that is too large or has an oversized description.

    ``max_tasks`` None sets no limit on the size.
    Raises TooManyTasksError, or ValueError for a description longer than
    MAX_DESCRIPTION_CHARS. A role that no agent serves is not an error here:
    the executor fails that task and its descendants, and the rest runs.
    """
    if max_tasks is not None and len(specs) > max_tasks:
        raise TooManyTasksError(len(specs), max_tasks)
    for spec in specs:
        if len(spec.description) > MAX_DESCRIPTION_CHARS:
            raise ValueError(
                f"task {spec.id!r} has a description of {len(spec.description)} characters, "
                f"more than the limit of {MAX_DESCRIPTION_CHARS}; shorten it"
            )
