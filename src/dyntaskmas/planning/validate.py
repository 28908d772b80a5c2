"""Validation of a model's decomposition text, treated as untrusted input.

This module owns :func:`parse_decomposition`, which turns the raw text of a
plan call into a :class:`Decomposition` or into a list of problems worded for
the repair prompt. It is pure: no I/O, no model calls, no logging. It does not
choose graph ids or task kinds; :mod:`dyntaskmas.planning.planner` does.

Two kinds of findings come out:

- **fixes**: changes with exactly one sensible reading, made and reported.
  Examples are surrounding whitespace, a Markdown code fence, a subtask that
  depends on itself, a dependency listed twice, and a subtask repeated word
  for word (its dependents then point at the copy that is kept).
- **problems**: anything else, such as invalid JSON, wrong types, missing
  keys, unknown roles or dependencies, one id or one description used for
  different subtasks, cycles, or too many subtasks. Each problem is one
  sentence that names the offending ids, so the model can act on it.

When there is any problem, no decomposition is returned: nothing invalid
reaches the graph.
"""

from __future__ import annotations

import heapq
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dyntaskmas.limits import MAX_PLAN_OUTPUT_CHARS, MAX_PLAN_PROBLEMS
from dyntaskmas.planning.schema import (
    COST_SIZES,
    DEFAULT_COST_S,
    DEFAULT_MAX_DESCRIPTION_CHARS,
    DEFAULT_OUTPUT_TOKENS,
    MAX_LABEL_CHARS,
    OUTPUT_SIZES,
    REVIEW_KEY,
    SUBTASK_KEYS,
    CostSize,
    OutputSize,
)

# Characters of model output quoted in a problem: enough to recognise the
# spot, short enough to keep the repair prompt small.
_EXCERPT_CHARS = 60

# A unit of 1-8 characters repeated at least 6 times in a row, over at least
# 20 characters, is a decoding loop ("1.1.1.1.1...", "0000000..."), not text.
_LOOP_PATTERN = re.compile(r"(.{1,8}?)\1{5,}", re.DOTALL)
_LOOP_MIN_CHARS = 20

_CONTROL_PATTERN = re.compile(r"[\x00-\x1f\x7f]+")

_FENCE_PATTERN = re.compile(r"\A```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\Z", re.DOTALL)


@dataclass(frozen=True)
class ProposedSubtask:
    """One subtask as the model proposed it, after validation.

    ``label`` is the model's own reference (such as ``"s2"``); the planner
    replaces it with a graph id. ``depends_on`` contains labels of subtasks that
    come earlier in the decomposition.
    """

    label: str
    description: str
    role: str
    depends_on: tuple[str, ...]
    atomic: bool
    cost_s: float
    output_tokens: int
    # The model asked for a critique-and-revise loop around this subtask.
    review: bool = False


@dataclass(frozen=True)
class Decomposition:
    """A valid decomposition: unique labels, known dependencies, no cycle.

    ``subtasks`` is in topological order: every subtask comes after all the
    subtasks it depends on.
    """

    subtasks: tuple[ProposedSubtask, ...]

    def __post_init__(self) -> None:
        if not self.subtasks:
            raise ValueError("a decomposition needs at least one subtask")
        seen: set[str] = set()
        for subtask in self.subtasks:
            if subtask.label in seen:
                raise ValueError(f"label {subtask.label!r} is used twice")
            for dependency in subtask.depends_on:
                if dependency not in seen:
                    raise ValueError(
                        f"subtask {subtask.label!r} depends on {dependency!r}, "
                        f"which does not come before it"
                    )
            seen.add(subtask.label)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(subtask.label for subtask in self.subtasks)


@dataclass(frozen=True)
class ParseResult:
    """The outcome of :func:`parse_decomposition`.

    ``decomposition`` is ``None`` exactly when ``problems`` is non-empty.
    ``fixes`` lists the changes made to reach the decomposition, and it may be
    non-empty in either case.
    """

    decomposition: Decomposition | None
    fixes: tuple[str, ...]
    problems: tuple[str, ...]

    def __post_init__(self) -> None:
        if (self.decomposition is None) != bool(self.problems):
            raise ValueError("a ParseResult has either a decomposition or problems")

    @property
    def ok(self) -> bool:
        return self.decomposition is not None


@dataclass
class _Item:
    """Working record of one well-formed subtask object during validation."""

    position: int  # 1-based position in the model's list
    label: str
    description: str
    role: str
    depends_on: list[str]
    atomic: bool
    cost: CostSize
    output_size: OutputSize
    review: bool = False

    def content_key(self, alias: Mapping[str, str]) -> tuple[object, ...]:
        """Return the fields that must match for two items to count as repeats."""
        dependencies = frozenset(_resolve(d, alias) for d in self.depends_on) - {self.label}
        return (
            " ".join(self.description.split()).casefold(),
            self.role,
            dependencies,
            self.atomic,
            self.cost,
            self.output_size,
        )


def parse_decomposition(
    text: str,
    *,
    roles: Collection[str],
    max_subtasks: int,
    max_description_chars: int = DEFAULT_MAX_DESCRIPTION_CHARS,
    cost_s: Mapping[CostSize, float] = DEFAULT_COST_S,
    output_tokens: Mapping[OutputSize, int] = DEFAULT_OUTPUT_TOKENS,
    max_reviews: int = 0,
) -> ParseResult:
    """Parse and validate a decomposition from a model's output ``text``.

    ``roles`` are the role names a subtask may take, and ``max_subtasks`` is
    the largest number of subtasks accepted after repeats are dropped.
    ``cost_s`` and ``output_tokens`` translate the size words into estimates.
    ``max_reviews`` allows the optional ``review`` flag on that many
    subtasks; marks beyond it are dropped (a fix), and with 0 the key is ignored.
    Does not raise for any ``text``, because every defect becomes a problem;
    a property test checks this.
    """
    fixes: list[str] = []
    problems: list[str] = []

    raw_items = _load_items(text, fixes, problems)
    if raw_items is None:
        return _result(None, fixes, problems)
    if not raw_items:
        problems.append("the decomposition has no subtasks; list at least one subtask")
        return _result(None, fixes, problems)

    # Labels of every object with a usable id, well-formed or not, so that a
    # dependency on a broken subtask is not also reported as unknown.
    known_labels: set[str] = set()
    positions_by_label: dict[str, list[int]] = {}
    items: list[_Item] = []
    for position, raw in enumerate(raw_items, start=1):
        item, label = _read_item(
            raw, position, roles, max_description_chars, fixes, problems, max_reviews > 0
        )
        if label is not None:
            known_labels.add(label)
            positions_by_label.setdefault(label, []).append(position)
        if item is not None:
            items.append(item)

    # Checked before repeats are dropped, so that the subtasks of a label
    # used twice still get their dependencies checked.
    _check_unknown_dependencies(items, known_labels, problems)
    items = _drop_repeated_labels(items, positions_by_label, fixes, problems)
    alias = _merge_repeated_subtasks(items, fixes)
    kept_labels = {label for label in known_labels if label not in alias}
    for item in items:
        _rewrite_dependencies(item, alias, fixes)

    # Count what would be kept: repeats dropped, broken subtasks included,
    # because a repair would keep them too.
    if len(kept_labels) > max_subtasks:
        problems.append(
            f"the decomposition has {len(kept_labels)} subtasks, more than the limit of "
            f"{max_subtasks}; merge related subtasks"
        )

    problems.extend(_repeated_description_problems(items))
    problems.extend(_cycle_problems(items))

    if problems:
        return _result(None, fixes, problems)
    _limit_reviews(items, max_reviews, fixes)
    ordered = _topological_order(items)
    subtasks = tuple(
        ProposedSubtask(
            label=item.label,
            description=item.description,
            role=item.role,
            depends_on=tuple(item.depends_on),
            atomic=item.atomic,
            cost_s=float(cost_s[item.cost]),
            output_tokens=int(output_tokens[item.output_size]),
            review=item.review,
        )
        for item in ordered
    )
    return _result(Decomposition(subtasks), fixes, [])


def _result(
    decomposition: Decomposition | None, fixes: list[str], problems: list[str]
) -> ParseResult:
    # Two copies of one subtask yield the same finding twice, so report each once.
    unique = list(dict.fromkeys(problems))
    # Thousands of broken subtasks would make a repair prompt longer than any window.
    if len(unique) > MAX_PLAN_PROBLEMS:
        more = len(unique) - MAX_PLAN_PROBLEMS
        unique = [*unique[:MAX_PLAN_PROBLEMS], f"and {more} more problems of the same kinds"]
    return ParseResult(decomposition, tuple(dict.fromkeys(fixes)), tuple(unique))


# --- text to JSON -------------------------------------------------------------


def _load_items(text: str, fixes: list[str], problems: list[str]) -> list[Any] | None:
    """Decode ``text`` and return its list of subtask values, or ``None`` on a problem."""
    stripped = text.strip()
    if not stripped:
        problems.append("the output is empty; reply with a JSON object that has a 'subtasks' list")
        return None
    if len(stripped) > MAX_PLAN_OUTPUT_CHARS:
        problems.append(
            f"the output has {len(stripped)} characters, more than the limit of "
            f"{MAX_PLAN_OUTPUT_CHARS}; write fewer subtasks with shorter descriptions"
        )
        return None

    fence = _FENCE_PATTERN.match(stripped)
    if fence is not None:
        stripped = fence.group(1).strip()
        fixes.append("removed the Markdown code fence around the JSON")

    # strict=False accepts raw newlines and tabs inside strings, which some
    # grammars allow. _read_description turns them into spaces.
    decoder = json.JSONDecoder(strict=False)
    try:
        value, end = decoder.raw_decode(stripped)
    except json.JSONDecodeError as exc:
        problems.append(
            f"the output is not valid JSON: {exc.msg} (character {exc.pos}), "
            f"near {_excerpt(stripped, exc.pos)!r}"
        )
        return None
    except RecursionError:
        problems.append("the output is not valid JSON: it is nested too deeply to read")
        return None
    except ValueError as exc:
        # Python rejects integers of more than 4300 digits (sys.int_info), so a
        # runaway number in the output reaches this branch.
        problems.append(f"the output is not usable JSON: {_short(str(exc))}")
        return None
    trailing = stripped[end:].strip()
    if trailing:
        fixes.append(f"ignored {len(trailing)} characters after the JSON value")

    if isinstance(value, list):
        fixes.append("read the top-level JSON list as the 'subtasks' list")
        return value
    if not isinstance(value, dict):
        problems.append(
            f"the output is a JSON {_json_type(value)}, not an object with a 'subtasks' list"
        )
        return None
    if "subtasks" not in value:
        found = ", ".join(repr(key) for key in list(value)[:5]) or "no keys"
        problems.append(f"the JSON object has no 'subtasks' list (found {found})")
        return None
    for key in value:
        if key != "subtasks":
            fixes.append(f"ignored the unknown top-level key {_short(key)}")
    subtasks = value["subtasks"]
    if not isinstance(subtasks, list):
        problems.append(f"'subtasks' is a JSON {_json_type(subtasks)}, not a list")
        return None
    return subtasks


# --- one subtask object -------------------------------------------------------


def _read_item(
    raw: Any,
    position: int,
    roles: Collection[str],
    max_description_chars: int,
    fixes: list[str],
    problems: list[str],
    allow_review: bool = False,
) -> tuple[_Item | None, str | None]:
    """Read one subtask object and return the item (None unless well-formed) and its label."""
    if not isinstance(raw, dict):
        problems.append(f"item {position} is a JSON {_json_type(raw)}, not a subtask object")
        return None, None

    errors_before = len(problems)
    label = _read_label(raw.get("id"), position, fixes, problems) if "id" in raw else None
    name = f"subtask {label!r}" if label is not None else f"item {position}"

    missing = [key for key in SUBTASK_KEYS if key not in raw]
    if missing:
        problems.append(f"{name} is missing {_join_quoted(missing)}")
    for key in raw:
        if key not in SUBTASK_KEYS and not (allow_review and key == REVIEW_KEY):
            fixes.append(f"ignored the unknown key {_short(key)} in {name}")

    description = _read_description(raw, name, max_description_chars, fixes, problems)
    role = _read_choice(raw, "role", sorted(roles), name, fixes, problems)
    depends_on = _read_dependencies(raw, name, label, fixes, problems)
    atomic = raw.get("atomic")
    if "atomic" in raw and not isinstance(atomic, bool):
        problems.append(f"'atomic' of {name} is a JSON {_json_type(atomic)}, not true or false")
    cost = _read_choice(raw, "cost", COST_SIZES, name, fixes, problems)
    output_size = _read_choice(raw, "output_size", OUTPUT_SIZES, name, fixes, problems)
    review = raw.get(REVIEW_KEY, False) if allow_review else False
    if not isinstance(review, bool):
        problems.append(f"'review' of {name} is a JSON {_json_type(review)}, not true or false")

    if len(problems) > errors_before:
        return None, label
    # Every field was checked above; these asserts restate that for mypy.
    assert label is not None
    assert description is not None
    assert role is not None
    assert depends_on is not None
    assert isinstance(atomic, bool)
    assert cost is not None
    assert output_size is not None
    item = _Item(
        position=position,
        label=label,
        description=description,
        role=role,
        depends_on=depends_on,
        atomic=atomic,
        cost=_as_cost(cost),
        output_size=_as_output_size(output_size),
        review=bool(review),
    )
    return item, label


def _read_label(raw: Any, position: int, fixes: list[str], problems: list[str]) -> str | None:
    label = _read_reference(raw, f"the id of item {position}", fixes, problems)
    if label is not None and label != raw and isinstance(raw, str):
        fixes.append(f"stripped whitespace from the id {label!r}")
    return label


def _read_reference(raw: Any, what: str, fixes: list[str], problems: list[str]) -> str | None:
    """Read a subtask label: a short string, or an integer taken as its digits."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        label = str(raw)
        if len(label) > MAX_LABEL_CHARS:
            problems.append(f"{what} is the number {_short(label)}, which is too long for an id")
            return None
        fixes.append(f"read the number {label} in {what} as the id {label!r}")
        return label
    if not isinstance(raw, str):
        problems.append(f"{what} is a JSON {_json_type(raw)}, not a string")
        return None
    label = raw.strip()
    if not label:
        problems.append(f"{what} is empty")
        return None
    if len(label) > MAX_LABEL_CHARS:
        problems.append(
            f"{what} is {_short(label)}, longer than {MAX_LABEL_CHARS} characters; "
            f"use short ids such as 's1'"
        )
        return None
    return label


def _read_description(
    raw: dict[str, Any],
    name: str,
    max_chars: int,
    fixes: list[str],
    problems: list[str],
) -> str | None:
    if "description" not in raw:
        return None
    value = raw["description"]
    if not isinstance(value, str):
        problems.append(f"the description of {name} is a JSON {_json_type(value)}, not a string")
        return None

    # Fixes first: surrounding whitespace, then line breaks inside.
    description = value.strip()
    if description != value:
        fixes.append(f"stripped whitespace from the description of {name}")
    if _CONTROL_PATTERN.search(description):
        description = _CONTROL_PATTERN.sub(" ", description)
        description = " ".join(description.split())
        fixes.append(f"replaced line breaks and control characters in the description of {name}")

    # Then problems, each of which rejects the description.
    if not description:
        problems.append(f"the description of {name} is empty; describe the work it must do")
        return None
    if len(description) > max_chars:
        problems.append(
            f"the description of {name} has {len(description)} characters, more than "
            f"{max_chars}; shorten it"
        )
        return None
    loop = _decoding_loop(description)
    if loop is not None:
        problems.append(
            f"the description of {name} repeats {loop!r} over and over; describe the work in words"
        )
        return None
    if not any(char.isalpha() for char in description):
        problems.append(
            f"the description of {name} ({_short(description)}) has no words; "
            f"describe the work in words"
        )
        return None
    return description


def _read_choice(
    raw: dict[str, Any],
    key: str,
    allowed: Sequence[str],
    name: str,
    fixes: list[str],
    problems: list[str],
) -> str | None:
    """Read ``raw[key]`` as one of ``allowed``, ignoring surrounding space and case."""
    if key not in raw:
        return None
    value = raw[key]
    if not isinstance(value, str):
        problems.append(f"'{key}' of {name} is a JSON {_json_type(value)}, not a string")
        return None
    if value in allowed:
        return value
    # Accept a different case only when it points at exactly one allowed value.
    matches = [choice for choice in allowed if choice.casefold() == value.strip().casefold()]
    if len(matches) == 1:
        fixes.append(f"read {key} {_short(value)} of {name} as {matches[0]!r}")
        return matches[0]
    problems.append(
        f"{name} has the unknown {key} {_short(value)}; use one of {_join_quoted(allowed)}"
    )
    return None


def _read_dependencies(
    raw: dict[str, Any],
    name: str,
    label: str | None,
    fixes: list[str],
    problems: list[str],
) -> list[str] | None:
    if "depends_on" not in raw:
        return None
    value = raw["depends_on"]
    if not isinstance(value, list):
        problems.append(f"'depends_on' of {name} is a JSON {_json_type(value)}, not a list")
        return None
    dependencies: list[str] = []
    failed = False
    for entry in value:
        dependency = _read_reference(entry, f"a dependency of {name}", fixes, problems)
        if dependency is None:
            failed = True
        elif dependency == label:
            fixes.append(f"dropped the dependency of {name} on itself")
        elif dependency in dependencies:
            fixes.append(f"dropped the repeated dependency {dependency!r} of {name}")
        else:
            if isinstance(entry, str) and entry != dependency:
                fixes.append(f"stripped whitespace from the dependency {dependency!r} of {name}")
            dependencies.append(dependency)
    return None if failed else dependencies


def _limit_reviews(items: Sequence[_Item], max_reviews: int, fixes: list[str]) -> None:
    """Keep the first ``max_reviews`` review marks and drop the rest."""
    marked = [item for item in items if item.review]
    for item in marked[max_reviews:]:
        item.review = False
        fixes.append(
            f"dropped the review mark of subtask {item.label!r}; "
            f"at most {max_reviews} subtasks are reviewed"
        )


# --- repeats ------------------------------------------------------------------


def _drop_repeated_labels(
    items: list[_Item],
    positions_by_label: Mapping[str, list[int]],
    fixes: list[str],
    problems: list[str],
) -> list[_Item]:
    """Drop word-for-word repeats that share a label, and report labels used for different work."""
    kept: list[_Item] = []
    dropped_positions: set[int] = set()
    first_by_label: dict[str, _Item] = {}
    for item in items:
        first = first_by_label.setdefault(item.label, item)
        if first is not item and first.content_key({}) == item.content_key({}):
            dropped_positions.add(item.position)
            fixes.append(f"dropped item {item.position}, a repeat of subtask {item.label!r}")
        else:
            kept.append(item)

    # Broken objects count as distinct: they cannot be shown to be repeats.
    for label, positions in positions_by_label.items():
        distinct = [position for position in positions if position not in dropped_positions]
        if len(distinct) > 1:
            problems.append(
                f"the id {label!r} is used by items {_join_numbers(distinct)}, which differ; "
                f"give each subtask its own id"
            )
            kept = [item for item in kept if item.label != label]
    return kept


def _merge_repeated_subtasks(items: list[_Item], fixes: list[str]) -> dict[str, str]:
    """Drop subtasks that repeat an earlier one under another label.

    Removes the repeats from ``items`` and returns the alias map from each
    dropped label to the label kept in its place. Merging can make two later
    subtasks equal (both now depend on the kept copy), so it runs to a fixpoint.
    """
    alias: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        first_by_key: dict[tuple[object, ...], _Item] = {}
        for item in list(items):
            key = item.content_key(alias)
            first = first_by_key.get(key)
            if first is None:
                first_by_key[key] = item
                continue
            alias[item.label] = first.label
            items.remove(item)
            fixes.append(
                f"dropped subtask {item.label!r}, a repeat of subtask {first.label!r}, "
                f"and pointed its dependents at {first.label!r}"
            )
            changed = True
    return alias


def _rewrite_dependencies(item: _Item, alias: Mapping[str, str], fixes: list[str]) -> None:
    """Point ``item``'s dependencies at kept labels, without repeats or itself."""
    rewritten: list[str] = []
    for dependency in item.depends_on:
        target = _resolve(dependency, alias)
        if target == item.label:
            fixes.append(
                f"dropped the dependency of subtask {item.label!r} on {dependency!r}, "
                f"a repeat of itself"
            )
        elif target not in rewritten:
            rewritten.append(target)
    item.depends_on = rewritten


def _resolve(label: str, alias: Mapping[str, str]) -> str:
    # Alias chains are short and acyclic: each merge points at an item kept so far.
    while label in alias:
        label = alias[label]
    return label


# --- graph checks -------------------------------------------------------------


def _check_unknown_dependencies(
    items: Iterable[_Item], known_labels: Collection[str], problems: list[str]
) -> None:
    for item in items:
        unknown = [d for d in item.depends_on if d not in known_labels]
        if not unknown:
            continue
        if len(unknown) == 1:
            problems.append(
                f"subtask {item.label!r} depends on {unknown[0]!r}, which is not in the list; "
                f"use only ids of listed subtasks"
            )
        else:
            problems.append(
                f"subtask {item.label!r} depends on {_join_quoted(unknown)}, which are not in "
                f"the list; use only ids of listed subtasks"
            )


def _repeated_description_problems(items: Iterable[_Item]) -> list[str]:
    """Report subtasks that share a description but differ otherwise.

    Word-for-word repeats were merged already. What remains, such as one
    description given to a chain of subtasks, is a decoding loop or a split
    that does no new work. Which copy to keep is not clear, so the repair
    call decides.
    """
    labels_by_description: dict[str, list[str]] = {}
    for item in items:
        key = " ".join(item.description.split()).casefold()
        labels_by_description.setdefault(key, []).append(item.label)
    return [
        f"subtasks {_join_quoted(labels)} have the same description; "
        f"give each subtask different work, or keep only one"
        for labels in labels_by_description.values()
        if len(labels) > 1
    ]


def _cycle_problems(items: Sequence[_Item]) -> list[str]:
    """Describe one cycle in each strongly connected part of the dependency graph."""
    by_label = {item.label: item for item in items}
    successors: dict[str, list[str]] = {
        item.label: [d for d in item.depends_on if d in by_label] for item in items
    }
    problems: list[str] = []
    for component in _strongly_connected(successors):
        if len(component) < 2:
            continue
        start = min(component, key=lambda label: by_label[label].position)
        cycle = _find_cycle(start, successors, component)
        links = ", ".join(
            f"{label!r} depends on {cycle[(k + 1) % len(cycle)]!r}" for k, label in enumerate(cycle)
        )
        problems.append(
            f"the dependencies form a cycle ({links}); remove one of these dependencies"
        )
    return problems


def _strongly_connected(successors: Mapping[str, list[str]]) -> list[set[str]]:
    """Return the strongly connected components by Tarjan's algorithm.

    It is iterative, so a long dependency chain cannot exhaust the stack.
    """
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[set[str]] = []
    counter = 0

    for root in successors:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, next_edge = work.pop()
            if next_edge == 0:
                index[node] = lowlink[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = successors[node]
            if next_edge < len(edges):
                work.append((node, next_edge + 1))
                target = edges[next_edge]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    lowlink[node] = min(lowlink[node], index[target])
                continue
            if lowlink[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
    return components


def _find_cycle(
    start: str, successors: Mapping[str, list[str]], component: Collection[str]
) -> list[str]:
    """Return a cycle through ``start`` inside one strongly connected component."""
    # Breadth-first search back to start gives the shortest cycle through it.
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        next_frontier: list[str] = []
        for node in frontier:
            for target in successors[node]:
                if target not in component:
                    continue
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if target not in previous:
                    previous[target] = node
                    next_frontier.append(target)
        frontier = next_frontier
    raise AssertionError("a strongly connected component of two or more nodes has a cycle")


def _topological_order(items: Sequence[_Item]) -> list[_Item]:
    """Order ``items`` so dependencies come first, keeping the model's order otherwise."""
    by_label = {item.label: item for item in items}
    waiting = {item.label: len(item.depends_on) for item in items}
    dependents: dict[str, list[str]] = {item.label: [] for item in items}
    for item in items:
        for dependency in item.depends_on:
            dependents[dependency].append(item.label)

    # Heap entries are (position, label). Positions are unique, so labels are never compared.
    ready = [(item.position, item.label) for item in items if not item.depends_on]
    heapq.heapify(ready)
    ordered: list[_Item] = []
    while ready:
        _, label = heapq.heappop(ready)
        ordered.append(by_label[label])
        for dependent in dependents[label]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, (by_label[dependent].position, dependent))
    assert len(ordered) == len(items), "called only on acyclic items"
    return ordered


# --- wording helpers ----------------------------------------------------------


def _decoding_loop(text: str) -> str | None:
    for match in _LOOP_PATTERN.finditer(text):
        if len(match.group(0)) >= _LOOP_MIN_CHARS:
            return match.group(1)
    return None


def _excerpt(text: str, position: int) -> str:
    start = max(0, min(position, len(text)) - _EXCERPT_CHARS // 2)
    piece = text[start : start + _EXCERPT_CHARS]
    prefix = "..." if start > 0 else ""
    suffix = "..." if start + _EXCERPT_CHARS < len(text) else ""
    return f"{prefix}{piece}{suffix}" if piece else "(end of output)"


def _short(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > 30:
        text = text[:30] + "..."
    return repr(text)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _join_quoted(values: Iterable[str]) -> str:
    return ", ".join(repr(value) for value in values)


def _join_numbers(values: Iterable[int]) -> str:
    numbers = [str(value) for value in values]
    return ", ".join(numbers[:-1]) + " and " + numbers[-1] if len(numbers) > 1 else numbers[0]


def _as_cost(value: str) -> CostSize:
    for size in COST_SIZES:
        if size == value:
            return size
    raise AssertionError(f"unchecked cost {value!r}")


def _as_output_size(value: str) -> OutputSize:
    for size in OUTPUT_SIZES:
        if size == value:
            return size
    raise AssertionError(f"unchecked output size {value!r}")
