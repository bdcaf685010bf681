"""Research: look what a turn doesn't know up in the user's documents and memories.

The bundled ``mongars_research``. For each knowledge gap curiosity found it asks
the one retrieval (:func:`mongars_core.retrieval.retrieve`, the same that recall
and the RAG route use) with the gap's topic and the message's words, and keeps
the passages that really are about the gap: those that mention every word of the
topic, or most of them when both search methods (words and meaning) ranked the
passage. A question with no gap is looked up in the user's documents too, so a
fact only an uploaded file holds still reaches the model. The passages kept
become numbered findings (``[1]``, ``[2]``...) that the prompt shows as sources
and the reply lists in ``Reply.sources``; a reply that used a source without
citing it gets its ``[n]`` (``mongars_adapt_reply``).

When nothing is found about a gap the question is *about* ("what is Zorblax?",
"who is X", "how do I use X"), research sets ``turn.clarification`` to one
clarifying question, and the pipeline asks it instead of letting a small model
invent an answer. By default only for a subject the bundled model has never
read about either (a word its vocabulary lacks: "Zorblax", not "photosynthesis"),
so general knowledge is still answered (``research.clarify``).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from mongars_core import hookimpl
from mongars_core.hookspecs import RegisterSection
from mongars_core.retrieval import retrieve
from mongars_core.settings import Section
from mongars_core.text import fold, search_terms, word_set
from mongars_core.types import Finding, KnowledgeGap, Passage, RetrievalQuery, Turn
from mongars_plugins.cognition.curiosity import Subject, content_words, question_subjects

FAMILIAR_WORDS_FILE = Path(__file__).with_name("familiar_words.txt")

ClarifyWhen = Literal["unfamiliar", "unresolved", "never"]


class ResearchSettings(BaseModel):
    """Research on knowledge gaps: numbered sources and clarifying questions."""

    sources: int = Field(
        3,
        ge=1,
        le=20,
        description="Most numbered sources one reply is given (a small model reads few well).",
    )
    per_gap: int = Field(2, ge=1, le=10, description="Most sources kept for one gap.")
    neighbours: int = Field(
        1,
        ge=0,
        le=5,
        description="Adjacent turns fetched on each side of a remembered passage, added to "
        "a source shorter than `source_words` (a document chunk already holds its section).",
    )
    source_words: int = Field(
        120, ge=20, le=1000, description="Words a source shows the model at most."
    )
    questions: bool = Field(
        True,
        description="Look a question with no knowledge gap up in the user's documents too.",
    )
    clarify: ClarifyWhen = Field(
        "unfamiliar",
        description="When a question is about a gap research found nothing on, ask the user "
        "one clarifying question instead of generating: `unfamiliar` only for a subject with "
        "a word the bundled model's vocabulary lacks (general knowledge is still answered), "
        "`unresolved` for every such gap, `never` to always generate.",
    )


RESEARCH = Section("research", ResearchSettings)


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(RESEARCH)


@hookimpl
async def mongars_research(turn: Turn, gaps: list[KnowledgeGap]) -> list[Finding]:
    """Numbered findings about ``gaps`` (and, for a question, about the question)
    from ``turn.user_id``'s documents and memories; sets ``turn.clarification``
    when the question is about a gap nothing was found on."""
    settings = _settings(turn)
    lookups = [_lookup_gap(turn, gap, settings) for gap in gaps]
    if settings.questions and not gaps and _asks(turn.message):
        lookups.append(_lookup_question(turn, settings))
    found = await asyncio.gather(*lookups)
    findings = _numbered(found, turn, settings)
    # Found counts even when the cap on sources left it out of the prompt.
    resolved = {finding.topic for each in found for finding in each}
    unresolved = [gap for gap in gaps if gap.topic not in resolved]
    turn.clarification = clarifying_question(turn.message, unresolved, settings.clarify)
    return findings


def _settings(turn: Turn) -> ResearchSettings:
    """The research section; defaults when a unit test gives no services."""
    if turn.services is None:
        return ResearchSettings()
    settings: ResearchSettings = turn.services.settings.section(RESEARCH)
    return settings


async def _lookup_gap(turn: Turn, gap: KnowledgeGap, settings: ResearchSettings) -> list[Finding]:
    query = RetrievalQuery(
        user_id=turn.user_id,
        text=f"{gap.topic} {turn.message}",
        kinds=frozenset({"memory", "document"}),
        limit=max(8, settings.per_gap * 4),
        neighbours=settings.neighbours,
    )
    passages = await retrieve(turn.services, query)
    topic = content_words(gap.topic)
    kept = [p for p in passages if _about(p, topic, all_of=True)]
    return [_finding(gap.topic, p, settings) for p in kept[: settings.per_gap]]


async def _lookup_question(turn: Turn, settings: ResearchSettings) -> list[Finding]:
    """Document passages that answer a question with no gap (its memories are
    recall's: ``turn.memories``)."""
    words = content_words(turn.message)
    if len(words) < 2:  # "why?", "how so": nothing to look up
        return []
    query = RetrievalQuery(
        user_id=turn.user_id,
        text=turn.message,
        kinds=frozenset({"document"}),
        limit=max(8, settings.sources * 3),
        neighbours=settings.neighbours,
    )
    passages = await retrieve(turn.services, query)
    kept = [p for p in passages if _about(p, words, all_of=False)]
    return [_finding(turn.message, p, settings) for p in kept[: settings.sources]]


def _about(passage: Passage, words: set[str], *, all_of: bool) -> bool:
    """Whether ``passage`` is about ``words``: it mentions all of them (a gap's
    topic) or two thirds (a question's words); half is enough when the passage was
    ranked by both search methods, words and meaning."""
    if not words:
        return False
    said = content_words(" ".join((passage.text, passage.heading or "", passage.source)))
    covered = len(words & said) / len(words)
    both_methods = len(passage.ranks) >= 2
    if covered >= (1.0 if all_of else 2 / 3):
        return True
    return both_methods and covered >= 0.5


def _finding(topic: str, passage: Passage, settings: ResearchSettings) -> Finding:
    return Finding(
        topic=topic,
        text=source_text(passage, settings.source_words),
        source=passage.source,
        passage=passage,
    )


def source_text(passage: Passage, max_words: int) -> str:
    """What the model reads of ``passage``: its text, cut to ``max_words`` at a word
    (an ellipsis marks the cut). A remembered turn takes in the turns around it while
    it is short ("yes, that one" means little alone); a document chunk already holds
    its section, and the next chunk is often another section, which misleads."""
    words = passage.text.split()
    around = passage.kind == "memory"
    before = [w for text in passage.before for w in text.split()] if around else []
    after = [w for text in passage.after for w in text.split()] if around else []
    room = max_words - len(words)
    if room > 0 and (before or after):
        take_after = min(len(after), max(room // 2, room - len(before)))
        take_before = min(len(before), room - take_after)
        words = before[len(before) - take_before :] + words + after[:take_after]
    if len(words) > max_words:
        return " ".join(words[:max_words]) + " …"
    return " ".join(words)


def _numbered(
    found: Iterable[list[Finding]], turn: Turn, settings: ResearchSettings
) -> list[Finding]:
    """The findings in gap order, each passage once, none of the memories recall
    already put in the prompt, at most ``settings.sources``, numbered from 1."""
    recalled = {memory.id for memory in turn.memories}
    seen: set[str] = set()
    kept: list[Finding] = []
    for findings in found:
        for finding in findings:
            passage = finding.passage
            assert passage is not None, "research findings come from passages"
            # The same text twice (a memory repeated, a file uploaded twice) is one source.
            text = " ".join(finding.text.split()).casefold()
            if passage.key in seen or text in seen:
                continue
            if passage.memory_id is not None and passage.memory_id in recalled:
                continue
            seen.update((passage.key, text))
            kept.append(finding.model_copy(update={"number": len(kept) + 1}))
            if len(kept) == settings.sources:
                return kept
    return kept


# -- citations ---------------------------------------------------------------------------

_CITATION = re.compile(r"\[(\d{1,3})\]")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([.,;:!?])")


@hookimpl(trylast=True)
def mongars_adapt_reply(turn: Turn, text: str) -> str | None:
    """Cite the sources a reply used, and only those (a small model seldom cites,
    and cites the wrong one when it does)."""
    return cite_sources(turn, text)


def cite_sources(turn: Turn, text: str) -> str | None:
    """``text`` ending with ``[n]`` for each numbered source it took something from;
    ``None`` to leave it as it is.

    A reply uses a source when they share words the question did not ask: two, or
    one that is a number or a word the bundled model doesn't know ("8443",
    "Meadowlark"). Echoing the question cites nothing. The model's own ``[n]`` for
    the turn's sources are replaced by these: a 135M model cites [2] for what [1]
    says as readily as [1].
    """
    numbered = [finding for finding in turn.findings if finding.number is not None]
    if not numbered or not text.strip():
        return None
    numbers = {finding.number for finding in numbered}
    bare = _CITATION.sub(lambda m: "" if int(m.group(1)) in numbers else m.group(0), text)
    bare = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", bare).rstrip()
    said = content_words(bare) - content_words(turn.message)
    known = familiar_words()
    used: list[int] = []
    for finding in numbered:
        shared = said & content_words(finding.text)
        telling = [w for w in shared if any(c.isdigit() for c in w) or w not in known]
        if len(shared) >= 2 or telling:
            used.append(finding.number or 0)
    if {int(n) for n in _CITATION.findall(text)} & numbers == set(used):
        return None  # the model cited what it used, where it did
    cited = bare + (" " + "".join(f"[{number}]" for number in used) if used else "")
    return None if cited == text.rstrip() else cited


# -- clarifying questions ---------------------------------------------------------------


_QUESTION_STARTS = word_set(
    "what who whom whose which where when why how is are was were do does did can could "
    "would should will shall may tell explain describe define show list give find "
    "quel quelle quels quelles qui que quoi ou quand comment pourquoi combien est"
)


def _asks(message: str) -> bool:
    """Whether ``message`` asks something (a question mark, or a question or request
    word first): only then may documents answer it."""
    if "?" in message:
        return True
    words = search_terms(message)
    return bool(words) and words[0] in _QUESTION_STARTS


def clarifying_question(
    message: str, unresolved: list[KnowledgeGap], when: ClarifyWhen = "unfamiliar"
) -> str | None:
    """One question asking the user about the first unresolved gap ``message``'s
    question is about ("I don't know what Zorblax is. Could you tell me what it
    is?"); ``None`` when the gaps are incidental to the question, or familiar
    (``when="unfamiliar"``), or ``when`` is ``"never"``."""
    if when == "never" or not unresolved:
        return None
    subjects = question_subjects(message)
    for gap in unresolved:
        subject = _subject_of(gap, subjects)
        if subject is None:
            continue
        if when == "unfamiliar" and not unfamiliar(gap.topic, subject.language):
            continue
        return _ask(_as_said(message, gap.topic), subject)
    return None


def _subject_of(gap: KnowledgeGap, subjects: list[Subject]) -> Subject | None:
    """The question subject ``gap`` is part of, if any: the answer depends on it."""
    topic = " ".join(search_terms(gap.topic))
    for subject in subjects:
        if f" {topic} " in f" {' '.join(search_terms(subject.text))} ":
            return subject
    return None


def _as_said(message: str, topic: str) -> str:
    """The gap with the article the message put before it: "a flumpet", "the gate code"."""
    said = re.search(rf"\b(?:(?:a|an|the)\s+)?{re.escape(topic)}", message, re.IGNORECASE)
    return said.group(0) if said else topic


def _ask(topic: str, subject: Subject) -> str:
    if subject.language == "fr":
        if subject.kind == "who":
            return f"Je ne sais pas qui est {topic}. Pouvez-vous me dire qui c'est ?"
        return f"Je ne sais pas ce qu'est {topic}. Pouvez-vous me dire ce que c'est ?"
    if subject.kind == "who":
        return f"I don't know who {topic} is. Could you tell me who they are?"
    return f"I don't know what {topic} is. Could you tell me what it is?"


@functools.cache
def familiar_words() -> frozenset[str]:
    """The words the bundled model holds as one token (``familiar_words.txt``)."""
    lines = FAMILIAR_WORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def unfamiliar(topic: str, language: str = "en") -> bool:
    """Whether ``topic`` has a word of three letters or more that the bundled model's
    vocabulary lacks: a name or term it has not read about ("Zorblax", "flumpet").

    The vocabulary is English: in another language only capitalised words (names)
    are judged, so "Parle-moi du café" is not taken for an unknown subject.
    """
    known = familiar_words()
    if language != "en":
        topic = " ".join(word for word in topic.split() if word[:1].isupper())
    words = [word for word in search_terms(fold(topic)) if word.isalpha() and len(word) >= 3]
    return any(word not in known and word.removesuffix("s") not in known for word in words)
