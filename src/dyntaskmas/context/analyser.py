"""The semantic analyser: tags ST(x) of task descriptions and outputs.

Tags are keywords (content words) and named entities (runs of capitalised
words such as "New York" or "European Central Bank"), lower-cased and
reduced by :func:`normalise_tag`, which also normalises tags that callers
give by hand, so that "Hotels" and "hotel" meet. No dependencies: a word
list, a few suffix rules and capitalisation do the work, so the analyser is
fast and predictable, and misses what those cannot see (verbs it does not
list, entities written in lower case, synonyms).

Long texts keep their ``max_tags`` best tags, ranked by frequency with a
bonus for entities and for words of the first sentence, because a long
output tagged with every word it contains would share a tag with anything.

This module is pure: no I/O, no clock, no randomness.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DEFAULT_MAX_TAGS = 12


def _words(text: str) -> list[str]:
    return text.split()


# Function words, plus verbs and qualifiers that describe how a task is
# phrased rather than its topic ("find", "average", "several").
STOPWORDS: frozenset[str] = frozenset(
    _words(
        """
    a about above after again against all almost along already also although always am
    among an and another any anyone anything are around as at away be became because become
    been before being below between both but by can cannot could did do does doing done down
    during each either else enough etc even ever every few for from further get gets getting
    give given gives go goes had has have having he her here hers herself him himself his how
    however i if in including inside instead into is it its itself just least less like made
    make makes many may me might more most much must my myself near neither never no nor not
    now of off often on once one only onto or other others otherwise our ours ourselves out
    over own per perhaps please quite rather really same several shall she should since so
    some something such than that the their theirs them themselves then there these they this
    those though through thus to too toward towards under until up upon us use used uses using
    very via was we well were what whatever when whenever where whether which while who whom
    whose why will with within without would yet you your yours yourself
    add answer asked asking ask based calculate check choose compare compute count covering
    decide describe determine draft driven enter estimate explain find found give identify
    keep know let list look mention need needs note out plan provide recommend report reported
    return returns review say says see show sort state states step summarise summarize take
    takes tell think try want write
    average best better certain current different early first full high higher highest large
    larger last late least little long low lower main new next old other possible second
    short small total two three four five six seven eight nine ten hundred thousand million
    billion percent time times way whole week weeks day days year years month months row
    thing things part parts kind lot
    """
    )
)

# Words that end like a verb form but name things; kept whatever their suffix.
_KEEP_SUFFIXED: frozenset[str] = frozenset(
    {"bed", "feed", "need", "red", "seed", "speed", "shed", "bread", "embed", "weed"}
)

# Lower-case words allowed inside an entity: "Bank of America", "Rio de Janeiro".
_ENTITY_CONNECTORS: frozenset[str] = frozenset({"of", "de", "da", "del", "du", "van", "von", "la"})

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9]*(?:[-'\u2019][A-Za-z0-9]+)*")
# Sentence ends, line breaks and list markers start a new sentence.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?:;])\s+|\n+")
_YEAR = re.compile(r"[12]\d{3}")


@dataclass(frozen=True)
class Tagging:
    """The tags of one text, split by kind, best first."""

    keywords: tuple[str, ...]
    entities: tuple[str, ...]

    @property
    def tags(self) -> frozenset[str]:
        return frozenset(self.keywords) | frozenset(self.entities)


def normalise_tag(tag: str) -> str:
    """Return the canonical form of a tag: lower case, single spaces, plural nouns singular.

    The singular rule is a light stemmer for English plurals ("cities" ->
    "city", "hotels" -> "hotel", "boxes" -> "box"); it leaves words ending
    in "ss", "us" and "is" alone ("class", "status", "paris"). It is
    applied to the last word of a multi-word tag.
    """
    words = [_strip_possessive(word) for word in tag.lower().replace("\u2019", "'").split()]
    words = [word for word in words if word]
    if not words:
        return ""
    words[-1] = _singular(words[-1])
    return " ".join(words)


def normalise_tags(tags: Iterable[str]) -> frozenset[str]:
    """Normalise each tag with :func:`normalise_tag`, dropping empty ones."""
    return frozenset(tag for tag in (normalise_tag(t) for t in tags) if tag)


class SemanticAnalyser:
    """Extracts keyword and entity tags from text; see the module docstring."""

    def __init__(
        self, *, max_tags: int = DEFAULT_MAX_TAGS, stopwords: frozenset[str] = STOPWORDS
    ) -> None:
        if max_tags < 1:
            raise ValueError(f"max_tags must be >= 1, got {max_tags}")
        self.max_tags = max_tags
        self.stopwords = stopwords

    def tags(self, text: str) -> frozenset[str]:
        """Return ST(text), the normalised tags of ``text``."""
        return self.analyse(text).tags

    def analyse(self, text: str) -> Tagging:
        """Return the tags of ``text``, keywords and entities apart."""
        scores: dict[str, float] = {}
        first_seen: dict[str, int] = {}
        entities: set[str] = set()
        position = 0

        for sentence_index, sentence in enumerate(_SENTENCE_BREAK.split(text)):
            for candidate, is_entity in self._candidates(sentence):
                tag = normalise_tag(candidate)
                if not tag:
                    continue
                # Repetition counts most; entities and the opening sentence,
                # which usually states the topic, break ties.
                score = 1.0
                if is_entity:
                    score += 0.5
                if sentence_index == 0:
                    score += 0.25
                scores[tag] = scores.get(tag, 0.0) + score
                first_seen.setdefault(tag, position)
                position += 1
                if is_entity:
                    entities.add(tag)

        ranked = sorted(scores, key=lambda tag: (-scores[tag], first_seen[tag]))[: self.max_tags]
        return Tagging(
            keywords=tuple(tag for tag in ranked if tag not in entities),
            entities=tuple(tag for tag in ranked if tag in entities),
        )

    def _candidates(self, sentence: str) -> list[tuple[str, bool]]:
        """Return (text, is_entity) for each keyword and entity of one sentence."""
        tokens = [match.group(0) for match in _TOKEN.finditer(sentence)]
        found: list[tuple[str, bool]] = []
        index = 0
        while index < len(tokens):
            token = tokens[index]
            sentence_start = index == 0
            if _is_capitalised(token) and not (sentence_start and token.lower() in self.stopwords):
                end = self._entity_end(tokens, index)
                if end - index > 1 or not sentence_start:
                    found.append((" ".join(tokens[index:end]), True))
                    index = end
                    continue
            word = token.lower()
            if self._is_keyword(word):
                found.append((word, False))
            index += 1
        return found

    def _entity_end(self, tokens: list[str], start: int) -> int:
        """Return the index after the run of capitalised words that begins at ``start``."""
        end = start + 1
        while end < len(tokens):
            if _has_possessive(tokens[end - 1]):
                break
            token = tokens[end]
            if _is_capitalised(token) or (token.isdigit() and end - start == 1):
                end += 1
            elif (
                token in _ENTITY_CONNECTORS
                and end + 1 < len(tokens)
                and _is_capitalised(tokens[end + 1])
            ):
                end += 2
            else:
                break
        return end

    def _is_keyword(self, word: str) -> bool:
        word = _strip_possessive(word)
        if word.isdigit():
            return _YEAR.fullmatch(word) is not None
        if len(word) < 3 or word in self.stopwords or not any(c.isalpha() for c in word):
            return False
        if _singular(word) in self.stopwords:
            return False
        # Past tenses and adverbs describe events and manner, rarely the topic.
        if word.endswith("ed") and len(word) > 4 and word not in _KEEP_SUFFIXED:
            return False
        return not (word.endswith("ly") and len(word) >= 7 and not word.endswith("rly"))


def _is_capitalised(token: str) -> bool:
    return token[0].isupper()


def _has_possessive(token: str) -> bool:
    return token.lower().endswith(("'s", "\u2019s"))


def _strip_possessive(word: str) -> str:
    for suffix in ("'s", "\u2019s", "'"):
        if word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _singular(word: str) -> str:
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("xes", "ches", "shes", "sses")):
        return word[:-2]
    return word[:-1]
