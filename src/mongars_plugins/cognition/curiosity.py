"""Curiosity: notice what the user asks about that monGARS does not know.

:func:`find_gaps` pulls the topics a message names (capitalised names, quoted
terms, the object of "what is ..." questions) and keeps those that no recalled
memory or history turn mentions. The pipeline may then research them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mongars_core import hookimpl
from mongars_core.offload import run_by_size
from mongars_core.text import (
    DECIMAL,
    WORD,
    fingerprint,
    fold,
    search_terms,
    sentence_spans,
    word_set,
)
from mongars_core.types import KnowledgeGap, Turn
from mongars_plugins.cognition.units import lookup_unit

MAX_GAPS = 5
MAX_TOPIC_WORDS = 6


_PRONOUNS = word_set(
    "i me my mine myself you your yours yourself he him his she her hers it its itself we us "
    "our ours they them their theirs this that these those i'm i've i'd i'll you're it's "
    "je moi tu toi il elle nous vous ils elles on ce ca cela ceci mon ma mes ton ta tes "
    "son sa ses notre votre leur"
)
_GREETINGS = word_set(
    "hello hi hey yo greetings thanks thank ok okay yes no please sorry bonjour salut "
    "merci coucou oui non hola gracias ciao hallo danke"
)
_FUNCTION_WORDS = word_set(
    "a an the and or but if then so of to in on at by for with from about as is are was "
    "were be been being am do does did have has had can could would should will shall may "
    "might must not what who whom whose which where when why how there here some any all "
    "more most much many very just also really something anything everything nothing "
    "one le la les l un une des du de d et ou mais qui que quoi est sont c qu "
    "tell explain describe know think mean"
)
# Dates and times are the reasoning plugin's business, not research topics.
_CALENDAR_WORDS = word_set(
    "time date day today tomorrow yesterday now monday tuesday wednesday thursday friday "
    "saturday sunday january february march april may june july august september october "
    "november december"
)
# Titles before a name ("Dr. Coyle"): the name is the topic, not the title.
_TITLES = word_set("dr mr mrs ms mx prof sir st mme mlle mgr")
_SKIP_WORDS = _PRONOUNS | _GREETINGS | _FUNCTION_WORDS | _CALENDAR_WORDS | _TITLES
# Requests to an assistant start with a verb whose capital only marks the sentence
# start: "Call Desmond Achebe", "Compare Lumora and Vexa".
_REQUEST_VERBS = word_set(
    "add ask book buy call check compare draft email find get give help invite let list "
    "make meet message order phone plan remind schedule send show summarise summarize text "
    "thank translate visit write"
)

# Lower-case words allowed inside a capitalised name ("Bank of America",
# "Leonardo da Vinci"), only when a capitalised word follows.
_NAME_CONNECTORS = frozenset({"of", "de", "da", "del", "der", "van", "von", "la", "le", "du"})
_LEADING_DETERMINERS = word_set("a an the some le la les l un une des du de d el los las")
_CLAUSE_BREAKS = word_set("and or but because if when while so then et ou mais parce quand")

_QUOTED = re.compile(
    r"\"([^\"\n]{2,80})\""
    r"|“([^”\n]{2,80})”"
    r"|«\s*([^»\n]{2,80}?)\s*»"
    # Single quotes only around whole words, so "don't ... it's" is no quote.
    r"|(?<!\w)'([^'\n]{2,80})'(?!\w)"
)
_CLAUSE_END = r"[^?.!,;:\n]+"
_QUESTION_PATTERNS = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        rf"\b(?:what|who|where)\s+(?:is|are|was|were)\s+(?P<obj>{_CLAUSE_END})",
        rf"\b(?:what|who)['’]s\s+(?P<obj>{_CLAUSE_END})",
        rf"\btell\s+me\s+(?:more\s+)?about\s+(?P<obj>{_CLAUSE_END})",
        r"\bwhat\s+(?:does|do)\s+(?P<obj>[^?.!,;:\n]+?)\s+mean\b",
        rf"\bqui\s+(?:est|était|sont)\s+(?P<obj>{_CLAUSE_END})",
        rf"\bqu['’]est[- ]ce\s+que\s+(?:c['’]est\s+(?:que\s+)?)?(?P<obj>{_CLAUSE_END})",
        rf"\bc['’]est\s+quoi\s+(?P<obj>{_CLAUSE_END})",
        rf"\bparle[- ]moi\s+(?:de|du|des)\s+(?P<obj>{_CLAUSE_END})",
    )
)
# Numbers and arithmetic ("17 * 23", "2^10") are answered by the reasoning
# plugin; a topic starting with a quantity ("5 km in miles") is a conversion.
_MATH = re.compile(r"[\d\s.,+\-*/×÷^%()=x]+")
_STARTS_WITH_NUMBER = re.compile(rf"[-−]?(?:{DECIMAL})\b")


def _is_capitalised(word: str) -> bool:
    return word[0].isalpha() and word[0].isupper()


def _drop_possessive(word: str) -> str:
    return re.sub(r"['’]s$", "", word)


def _sentence_starts(message: str) -> set[int]:
    """Offsets of the first word of each sentence, whose capital says nothing."""
    starts: set[int] = set()
    for start, _ in sentence_spans(message):
        first = WORD.search(message, start)
        if first:
            starts.add(first.start())
    return starts


def _capitalised_phrases(message: str) -> list[str]:
    """Runs of capitalised words, e.g. "Zorblax Quintero" or "Bank of America"."""
    starts = _sentence_starts(message)
    words = list(WORD.finditer(message))
    phrases: list[str] = []
    i = 0
    while i < len(words):
        if not _is_capitalised(words[i].group()):
            i += 1
            continue
        run = [words[i]]
        j = i + 1
        while j < len(words) and message[run[-1].end() : words[j].start()].isspace():
            word = words[j].group()
            if _is_capitalised(word):
                run.append(words[j])
            elif (
                word in _NAME_CONNECTORS
                and j + 1 < len(words)
                and message[words[j].end() : words[j + 1].start()].isspace()
                and _is_capitalised(words[j + 1].group())
            ):
                run.extend((words[j], words[j + 1]))
                j += 1
            else:
                break
            j += 1
        i = j
        texts = [m.group() for m in run]
        if run[0].start() in starts:
            # "Who is ..." or "Paris is nice": a sentence-initial capital is
            # only a name when more capitalised words follow it.
            # "What's Kessling Labs", "Call Desmond Achebe": the first word is no name.
            while texts and (
                _drop_possessive(texts[0]).casefold() in _SKIP_WORDS
                or texts[0].casefold() in _REQUEST_VERBS
            ):
                texts.pop(0)
            if len(texts) < 2 and len(run) == len(texts):
                continue
        while texts and texts[0].casefold() in _NAME_CONNECTORS:
            texts.pop(0)
        if texts:
            texts[-1] = _drop_possessive(texts[-1])
            phrases.append(" ".join(texts))
    return phrases


def _question_objects(message: str) -> list[str]:
    """What "what is X" / "tell me about X" questions ask about, tidied up.

    An object with a number and no name ("the product of 48 and 52", "half of
    90") is phrased arithmetic: the reasoning plugin's, not a topic."""
    objects: list[str] = []
    for pattern in _QUESTION_PATTERNS:
        for match in pattern.finditer(message):
            text = _tidy_object(match.group("obj"))
            if text is None:
                continue
            words = text.split()
            if any(c.isdigit() for c in text) and not any(_is_capitalised(w) for w in words):
                continue
            objects.append(text)
    return objects


SubjectKind = Literal["who", "what"]


@dataclass(frozen=True)
class Subject:
    """What a question asks about: ``text`` as written, ``kind`` ``"who"`` for a
    person ("who is X"), else ``"what"``; ``language`` the question's (``"en"``, ``"fr"``)."""

    text: str
    kind: SubjectKind
    language: str


# Questions whose answer is all about one thing: "what is X", "how do I use X".
# (pattern, kind, language); the plain what-is patterns are _QUESTION_PATTERNS'.
_SUBJECT_SPECS: tuple[tuple[str, SubjectKind, str], ...] = (
    (rf"\bwho\s+(?:is|are|was|were)\s+(?P<obj>{_CLAUSE_END})", "who", "en"),
    (rf"\bwho['’]s\s+(?P<obj>{_CLAUSE_END})", "who", "en"),
    (rf"\b(?:what|where)\s+(?:is|are|was|were)\s+(?P<obj>{_CLAUSE_END})", "what", "en"),
    (rf"\bwhat['’]s\s+(?P<obj>{_CLAUSE_END})", "what", "en"),
    (rf"\btell\s+me\s+(?:more\s+)?about\s+(?P<obj>{_CLAUSE_END})", "what", "en"),
    (r"\bwhat\s+(?:does|do)\s+(?P<obj>[^?.!,;:\n]+?)\s+(?:mean|do)\b", "what", "en"),
    (
        r"\bhow\s+(?:do|can|should|would)\s+(?:i|we|you|one)\s+"
        r"(?:use|install|configure|set\s+up|run|start|play|cook|make|build|fix|"
        rf"reset|update|upgrade|connect\s+to|log\s+in\s+to)\s+(?P<obj>{_CLAUSE_END})",
        "what",
        "en",
    ),
    (
        rf"\b(?:explain|describe|define)\s+(?P<obj>{_CLAUSE_END})",
        "what",
        "en",
    ),
    (
        rf"\b(?:do\s+you\s+know|have\s+you\s+heard\s+of)\s+(?P<obj>{_CLAUSE_END})",
        "what",
        "en",
    ),
    (rf"\bqui\s+(?:est|était|sont)\s+(?P<obj>{_CLAUSE_END})", "who", "fr"),
    (
        rf"\bqu['’]est[- ]ce\s+que\s+(?:c['’]est\s+(?:que\s+)?)?(?P<obj>{_CLAUSE_END})",
        "what",
        "fr",
    ),
    (rf"\bc['’]est\s+quoi\s+(?P<obj>{_CLAUSE_END})", "what", "fr"),
    (rf"\bparle[- ]moi\s+(?:de|du|des)\s+(?P<obj>{_CLAUSE_END})", "what", "fr"),
)
_SUBJECT_PATTERNS = tuple(
    (re.compile(pattern, re.IGNORECASE), kind, language)
    for pattern, kind, language in _SUBJECT_SPECS
)


def _tidy_object(raw: str) -> str | None:
    """A question's object without what follows a clause break, its leading
    determiners and pronoun objects ("your name"): ``None`` when nothing is left."""
    words = raw.split()
    for index, word in enumerate(words):
        if word.casefold() in _CLAUSE_BREAKS:
            words = words[:index]
            break
    while words and words[0].casefold().replace("’", "'").rstrip("'") in _LEADING_DETERMINERS:
        words.pop(0)
    if words and re.match(r"^l['’]\w", words[0], re.IGNORECASE):
        words[0] = words[0][2:]
    if not words or words[0].casefold() in _PRONOUNS:
        return None
    return " ".join(words[:MAX_TOPIC_WORDS])


def question_subjects(message: str) -> list[Subject]:
    """What the questions of ``message`` are about, in order: the X of "what is X",
    "who is X", "tell me about X", "how do I use X", "qu'est-ce que X"...

    A gap that is (part of) a subject is one the answer depends on; a gap named
    elsewhere in the message is incidental to it.
    """
    found: list[tuple[int, Subject]] = []
    seen: set[str] = set()
    for pattern, kind, language in _SUBJECT_PATTERNS:
        for match in pattern.finditer(message):
            text = _tidy_object(match.group("obj"))
            if text is None:
                continue
            text = text.strip(" \t\"'“”«»()[]")
            key = fingerprint(text)
            if not key or key in seen or not _is_topic(text):
                continue
            seen.add(key)
            found.append((match.start(), Subject(text, kind, language)))
    return [subject for _, subject in sorted(found, key=lambda item: item[0])]


def content_words(text: str) -> set[str]:
    """The folded words of ``text`` that carry meaning: not function words,
    pronouns, greetings or calendar words, plural "s" dropped ("servers" ->
    "server"), so two wordings of one topic share them."""
    words: set[str] = set()
    for word in search_terms(text):
        if word in _SKIP_WORDS or (word.isdigit() and len(word) < 2):
            continue
        words.add(_singular(word))
    return words


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _quoted_terms(message: str) -> list[str]:
    return [next(g for g in match.groups() if g) for match in _QUOTED.finditer(message)]


def _is_topic(candidate: str) -> bool:
    words = WORD.findall(fold(candidate))
    if not words or all(word in _SKIP_WORDS or _singular(word) in _SKIP_WORDS for word in words):
        return False
    if lookup_unit(candidate) is not None:  # "Celsius", "miles": conversions are reasoning's
        return False
    if len(candidate) < 2 or _MATH.fullmatch(candidate.strip()):
        return False
    return not _STARTS_WITH_NUMBER.match(candidate.strip())


def _mentions(known: str, topic: str) -> bool:
    return f" {topic} " in f" {known} "


def find_gaps(message: str, known_texts: list[str]) -> list[KnowledgeGap]:
    """Topics ``message`` names that none of ``known_texts`` mentions (at most five).

    Matching ignores case, accents and punctuation. When one gap is part of a
    longer one ("France" in "capital of France") only the longer is kept.
    """
    candidates = _capitalised_phrases(message) + _quoted_terms(message)
    candidates += _question_objects(message)
    known = [fingerprint(text) for text in known_texts]
    gaps: dict[str, str] = {}
    for candidate in candidates:
        topic = candidate.strip(" \t\"'“”«»()[]")
        # Apostrophes split words here, so "Zorblax's" still mentions "Zorblax".
        key = fingerprint(topic)
        if key in gaps or not _is_topic(topic):
            continue
        if any(_mentions(text, key) for text in known):
            continue
        gaps[key] = topic
    kept = [
        topic
        for key, topic in gaps.items()
        if not any(other != key and _mentions(other, key) for other in gaps)
    ]
    return [KnowledgeGap(topic=topic) for topic in kept[:MAX_GAPS]]


@hookimpl(trylast=True)
async def mongars_find_gaps(turn: Turn) -> list[KnowledgeGap]:
    """Gaps of ``turn.message`` against recalled memories and the session history."""
    known = [memory.text for memory in turn.memories]
    for past in turn.history:
        known.extend((past.message, past.reply))
    return await run_by_size(len(turn.message), find_gaps, turn.message, known)
