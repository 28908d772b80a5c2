"""The JSON schema that a decomposition must follow, and its closed vocabularies.

This module owns the shape of the planner's structured output: the subtask
labels the model may use (``s1`` .. ``sN``), the cost and output-size words it
chooses from, and what those words mean in seconds and tokens. It does not
check model output; :mod:`dyntaskmas.planning.validate` does that.

The schema is written for grammar-constrained decoding (llama.cpp builds a
grammar from it), so every string has a ``maxLength`` and every list a
``maxItems``. Such a grammar does not enforce ``uniqueItems`` or numeric
bounds, and other servers may ignore the schema altogether, so the validator
checks every rule again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from dyntaskmas.limits import MAX_SUBTASKS_PER_PLAN

CostSize = Literal["small", "medium", "large"]
OutputSize = Literal["short", "medium", "long"]

COST_SIZES: Final[tuple[CostSize, ...]] = ("small", "medium", "large")
OUTPUT_SIZES: Final[tuple[OutputSize, ...]] = ("short", "medium", "long")

#: Estimated execution time C(v), in seconds, for each cost word. These are
#: starting estimates only: the engine recalibrates them from measured latencies.
DEFAULT_COST_S: Final[Mapping[CostSize, float]] = {"small": 2.0, "medium": 8.0, "large": 30.0}

#: Estimated output length, in tokens, for each output-size word.
DEFAULT_OUTPUT_TOKENS: Final[Mapping[OutputSize, int]] = {"short": 64, "medium": 256, "long": 1024}

DEFAULT_MAX_DESCRIPTION_CHARS: Final = 200

#: Words a subtask description may start with by default. Making the model
#: start with a verb keeps small models from stating a result, such as "The
#: depth is 20 m", where a piece of work belongs.
DEFAULT_DESCRIPTION_VERBS: Final = (
    "Find",
    "Look up",
    "Search",
    "Calculate",
    "Estimate",
    "Count",
    "Convert",
    "Compare",
    "Rank",
    "Choose",
    "Check",
    "List",
    "Extract",
    "Summarize",
    "Explain",
    "Write",
    "Draft",
    "Review",
    "Combine",
)

#: Maximum length of a subtask label that the validator accepts. Labels are only references
#: inside one decomposition, so a long one is a runaway generation, not a name.
MAX_LABEL_CHARS: Final = 24

#: Upper bound on ``max_subtasks``; see :mod:`dyntaskmas.limits`.
MAX_SUBTASKS_LIMIT: Final = MAX_SUBTASKS_PER_PLAN

#: Keys every subtask object must have, in the order the grammar emits them.
#: ``id`` and ``description`` come first so the model names the work before it
#: chooses dependencies and size hints.
SUBTASK_KEYS: Final = ("id", "description", "role", "depends_on", "atomic", "cost", "output_size")

#: Optional key of a subtask, allowed only when the planner may ask for
#: reviews: true asks for a critique-and-revise loop around the subtask.
REVIEW_KEY: Final = "review"


def subtask_labels(max_subtasks: int) -> tuple[str, ...]:
    """Return the labels a decomposition of up to ``max_subtasks`` items may use."""
    _check_max_subtasks(max_subtasks)
    return tuple(f"s{k}" for k in range(1, max_subtasks + 1))


def decomposition_schema(
    roles: Sequence[str],
    max_subtasks: int,
    *,
    max_description_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS,
    ordered: bool = True,
    description_verbs: Sequence[str] = (),
    review: bool = False,
) -> dict[str, Any]:
    """Build the JSON schema of a decomposition into at most ``max_subtasks`` subtasks.

    With ``ordered`` (the default), the k-th subtask must have the id ``sk``
    and may depend only on ``s1`` .. ``s(k-1)``. A grammar built from that
    schema cannot produce a repeated id, an unknown dependency or a cycle. It
    uses ``prefixItems`` and ``anyOf``, so pass ``ordered=False`` for a server
    that rejects those keywords; the schema then only lists the allowed labels.

    ``description_verbs``, when given, makes each description start with one
    of these words followed by a space. This steers small models away from
    stating a result in the description. The validator does not require it.

    ``review`` adds the optional boolean ``review`` to each subtask.

    Raises ``ValueError`` when ``roles`` is empty or repeats a role, or when a
    limit is out of range.
    """
    _check_max_subtasks(max_subtasks)
    if not roles:
        raise ValueError("roles is empty; give at least one role name")
    if len(set(roles)) != len(roles):
        raise ValueError(f"roles {list(roles)!r} repeat a name; list each role once")
    if max_description_chars < 1:
        raise ValueError(f"max_description_chars must be at least 1, got {max_description_chars}")

    labels = list(subtask_labels(max_subtasks))
    # Shared parts live in $defs, so a grammar built from the schema has one
    # rule for each of them instead of a copy per position.
    definitions: dict[str, Any] = {
        "description": _description_schema(max_description_chars, description_verbs),
        "role": {"type": "string", "enum": list(roles)},
        "cost": {"type": "string", "enum": list(COST_SIZES)},
        "output_size": {"type": "string", "enum": list(OUTPUT_SIZES)},
    }
    if ordered:
        for k, label in enumerate(labels):
            definitions[f"subtask_{label}"] = _subtask_schema(label, labels[:k], review)
        subtasks: dict[str, Any] = {
            "anyOf": [
                {
                    "type": "array",
                    "prefixItems": [_ref(f"subtask_{label}") for label in labels[:count]],
                    "items": False,
                    "minItems": count,
                    "maxItems": count,
                }
                for count in range(1, max_subtasks + 1)
            ]
        }
    else:
        definitions["subtask"] = _subtask_schema(None, labels, review)
        subtasks = {
            "type": "array",
            "items": _ref("subtask"),
            "minItems": 1,
            "maxItems": max_subtasks,
        }
    return {
        "$defs": definitions,
        "type": "object",
        "properties": {"subtasks": subtasks},
        "required": ["subtasks"],
        "additionalProperties": False,
    }


def _subtask_schema(
    label: str | None, dependency_labels: Sequence[str], review: bool = False
) -> dict[str, Any]:
    """Build the schema of one subtask with the id ``label`` (any label when None)."""
    if label is None:
        id_schema: dict[str, Any] = {"type": "string", "enum": list(dependency_labels)}
        # A subtask cannot depend on itself, so at most every other label.
        max_dependencies = max(len(dependency_labels) - 1, 0)
    else:
        id_schema = {"type": "string", "const": label}
        max_dependencies = len(dependency_labels)
    depends_on: dict[str, Any] = {
        "type": "array",
        "items": {"type": "string", "enum": list(dependency_labels)},
        "maxItems": max_dependencies,
        "uniqueItems": True,
    }
    if not dependency_labels:
        # An empty enum is invalid JSON schema, and maxItems 0 alone means "[]".
        depends_on["items"] = {"type": "string"}
    properties: dict[str, Any] = {
        "id": id_schema,
        "description": _ref("description"),
        "role": _ref("role"),
        "depends_on": depends_on,
        "atomic": {"type": "boolean"},
        "cost": _ref("cost"),
        "output_size": _ref("output_size"),
    }
    if review:
        properties[REVIEW_KEY] = {"type": "boolean"}
    return {
        "type": "object",
        "properties": properties,
        "required": list(SUBTASK_KEYS),
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def check_description_verbs(verbs: Sequence[str], max_description_chars: int) -> None:
    """Raise ``ValueError`` unless ``verbs`` can start descriptions of that length.

    Each verb must be letters and spaces, because it goes into a regular
    expression unescaped, and the longest must leave room for more words.
    """
    for verb in verbs:
        if not re.fullmatch(r"[A-Za-z][A-Za-z ]*", verb):
            raise ValueError(f"description verb {verb!r} must be letters and spaces only")
    if verbs and max_description_chars - max(len(verb) for verb in verbs) - 1 < 1:
        raise ValueError(
            f"max_description_chars {max_description_chars} leaves no room after the verb"
        )


def _description_schema(max_chars: int, verbs: Sequence[str]) -> dict[str, Any]:
    if not verbs:
        return {"type": "string", "minLength": 1, "maxLength": max_chars}
    check_description_verbs(verbs, max_chars)
    rest = max_chars - max(len(verb) for verb in verbs) - 1
    # llama-cpp-python 0.3.36 ignores maxLength next to a pattern when it
    # builds the grammar, so the pattern carries the length limit itself.
    pattern = "^(" + "|".join(verbs) + ') [^"\\\\]{1,' + str(rest) + "}$"
    return {"type": "string", "pattern": pattern, "minLength": 1, "maxLength": max_chars}


def _check_max_subtasks(max_subtasks: int) -> None:
    if not 1 <= max_subtasks <= MAX_SUBTASKS_LIMIT:
        raise ValueError(
            f"max_subtasks must be between 1 and {MAX_SUBTASKS_LIMIT}, got {max_subtasks}"
        )
