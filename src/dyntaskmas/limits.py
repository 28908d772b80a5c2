"""Size limits on requests, plans and runs, in one place.

Planner output and requests are untrusted input, so every size a model or a
user controls has a bound here. Going past one gives a one-line error that
names the value and the limit, or is contained: a plan that would break a
limit is not added, and its task runs undecomposed instead, with a note in
the result. docs/journal.md lists them with what happens at each.
"""

from __future__ import annotations

from typing import Final

#: Characters of one request. A longer one is almost certainly a file passed
#: by mistake, and it would fill the model's window before any context.
MAX_REQUEST_CHARS: Final = 20_000

#: Characters of one task description in a graph given to ``run_graph``.
MAX_DESCRIPTION_CHARS: Final = MAX_REQUEST_CHARS

#: Subtasks of one decomposition, the largest ``max_subtasks`` accepted: the
#: label enum and the prompt grow with it, and a single decomposition wider
#: than this is better split over levels.
MAX_SUBTASKS_PER_PLAN: Final = 50

#: Largest ``max_depth``: levels of decomposition below the request. Each
#: level can multiply the task count by ``max_subtasks``.
MAX_DEPTH_LIMIT: Final = 8

#: Default and largest number of tasks in one run's graph, plan, join and
#: answer tasks included.
DEFAULT_MAX_TASKS: Final = 500
MAX_TASKS_LIMIT: Final = 10_000

#: Characters of one plan call's output that the validator reads. The
#: schema's largest valid plan (50 subtasks of 200-character descriptions)
#: takes about 25,000; a longer output is a server ignoring max_tokens.
MAX_PLAN_OUTPUT_CHARS: Final = 100_000

#: Problems of one plan listed in the repair prompt; the rest are counted.
MAX_PLAN_PROBLEMS: Final = 20
