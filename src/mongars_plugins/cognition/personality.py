"""Personality: learn how each user writes and ask the model to mirror it.

A per-user :class:`~mongars_core.types.StyleProfile` (length, formality, emoji,
punctuation, language) is learned from the user's messages and stored through
``services.store`` under the ``"style"`` namespace. The pure functions here
(:func:`observe`, :func:`detect_language`, :func:`formality_score`,
:func:`style_instructions`) need no store and are what the tests pin down.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

from pydantic import ValidationError

from mongars_core import hookimpl
from mongars_core.offload import run_by_size
from mongars_core.services import Services, StashKey
from mongars_core.storage.unit_of_work import UnitOfWork
from mongars_core.text import fold, sentence_spans, without_spans, word_set, word_tokens
from mongars_core.types import Reply, StyleProfile, Turn

logger = logging.getLogger(__name__)

STYLE_NAMESPACE = "style"


# The first messages are averaged equally; after that each new message weighs
# ADAPT_WEIGHT, so the profile follows a user whose style changes instead of
# freezing on their first hundred messages.
ADAPT_WEIGHT = 0.2

SHORT_MESSAGE_WORDS = 12
LONG_MESSAGE_WORDS = 40
CASUAL_BELOW = 0.4
FORMAL_ABOVE = 0.65
EMOJI_MIRROR_RATE = 0.3

LANGUAGE_NAMES = {
    "en": "English",
    "fr": "French",
    "es": "Spanish",
    "de": "German",
    "it": "Italian",
    "pt": "Portuguese",
}

# Frequent function words and greetings, written without accents: text is
# accent-stripped before matching, so "está" and "esta" count the same. A word
# listed for several languages is split between them (see _language_scores).
_STOPWORDS: dict[str, frozenset[str]] = {
    "en": word_set(
        "the and is are you what how this that with have has it of to was for not my your "
        "can do does me please thanks thank hello hi hey would could should there where why "
        "when who will be just about from they we an in i am don doesn isn yes"
    ),
    "fr": word_set(
        "le la les des est et je tu vous nous une un pas que qui quoi ce avec pour dans sur "
        "mais bonjour merci salut oui mon ma mes ton ta suis sont comment pourquoi aussi "
        "il elle ils on ca cette leur peux veux fait au aux du ai va bien quel quelle "
        "aujourd hui vais a demain trop soir ici rien tout faire fais chez encore deja"
    ),
    "es": word_set(
        "el los las la es que de en un una por para con no como hola gracias esta estoy "
        "eres soy muy pero yo mi tu su del al lo se porque tambien si bien buenos dias "
        "donde quiero puedes tengo hay que cual"
    ),
    "de": word_set(
        "der die das und ist ich du nicht ein eine zu mit auf fur wie was sie es den dem "
        "auch bin bist sind haben habe hallo danke bitte guten tag wer warum kann ja nein "
        "mein dein aber oder wo gibt heute sehr keine kein zeit"
    ),
    "it": word_set(
        "il lo la gli le di che e un una per con non sono sei ciao grazie come cosa perche "
        "anche molto questo questa mi ti ho hai ha del della dei nel alla buongiorno bene "
        "dove chi quando vorrei puoi"
    ),
    "pt": word_set(
        "o os as a e um uma de do da dos das em no na para com nao que voce eu obrigado "
        "obrigada ola tudo bem sim muito como isso esta estou sao mas por meu minha tem "
        "tenho onde quem porque tambem oi bom dia pode"
    ),
}

# Letters that only some of the six languages use; a cheap tie-breaker for
# short texts where few stopwords appear.
_LETTER_HINTS: dict[str, tuple[str, ...]] = {
    "ñ¿¡": ("es",),
    "ßäöü": ("de",),
    "ãõ": ("pt",),
    "ç": ("fr", "pt"),
    "êâîôûëïœù": ("fr",),
    "ìò": ("it",),
    "àè": ("fr", "it"),
}
_LETTER_HINT_WEIGHT = 0.5
_LETTER_HINT_CAP = 2.0

_CASUAL_WORDS = word_set(
    "lol lmao rofl gonna wanna gotta hey yo yeah yep nope thx pls plz u ur btw omg idk "
    "dude kinda sorta ya cool haha hahaha mdr ouais salut coucou stp tkt slt bcp jaja"
)
_FORMAL_WORDS = word_set(
    "please kindly dear hello regards sincerely vous bonjour madame monsieur cordialement "
    "usted bitte ihnen"
)
_FORMAL_PHRASES = (
    "would you",
    "could you",
    "thank you",
    "i would",
    "may i",
    "s'il vous plait",
    "por favor",
    "sehr geehrte",
)
_FRENCH_INFORMAL = frozenset({"tu", "toi", "ton", "ta", "tes"})

_LETTERS = re.compile(r"[^\W\d_]+")
_CONTRACTION = re.compile(r"\b\w+['’](?:s|re|ve|ll|d|t|m)\b", re.IGNORECASE)
_EMOJI = re.compile(
    "[\U0001f300-\U0001faff\U0001f000-\U0001f2ff\u2600-\u27bf]"
    r"|(?<!\w)(?:[:;=]-?[)(DPp]|<3|xD|XD)(?!\w)"
)


class StateStore(Protocol):
    """The part of ``services.store`` this plugin uses."""

    async def get_state(self, namespace: str, user_id: str) -> dict[str, Any] | None: ...


def _language_scores(text: str) -> dict[str, float]:
    """Evidence for each language; all zeros when the text says nothing."""
    scores = dict.fromkeys(_STOPWORDS, 0.0)
    for word in _LETTERS.findall(fold(text)):
        languages = [lang for lang, words in _STOPWORDS.items() if word in words]
        for lang in languages:
            scores[lang] += 1.0 / len(languages)
    lowered = text.casefold()
    for letters, hinted in _LETTER_HINTS.items():
        hits = sum(lowered.count(letter) for letter in letters)
        for lang in hinted:
            scores[lang] += min(hits * _LETTER_HINT_WEIGHT, _LETTER_HINT_CAP) / len(hinted)
    return scores


def _best_language(text: str, current: str | None = None) -> str | None:
    """The best-supported language, ``current`` on a tie; ``None`` without evidence."""
    scores = _language_scores(text)
    best = max(scores.values())
    if best <= 0:
        return None
    if current is not None and scores.get(current) == best:
        return current
    # Other ties go to the earlier language of _STOPWORDS, English first.
    return next(lang for lang, score in scores.items() if score == best)


def detect_language(text: str) -> str:
    """The language code (en, fr, es, de, it, pt) of ``text``; "en" when unsure."""
    return _best_language(text) or "en"


def formality_score(text: str) -> float:
    """How formal ``text`` reads, from 0 (chatty) to 1 (letter-like); 0.5 is neutral."""
    stripped = text.strip()
    if not stripped:
        return 0.5
    words = [fold(word) for word in word_tokens(stripped)]
    plain = " ".join(words)
    score = 0.5

    casual_hits = sum(1 for w in words if w in _CASUAL_WORDS)
    score -= min(casual_hits * 0.12, 0.3)
    score -= min(len(_CONTRACTION.findall(stripped)) * 0.05, 0.15)
    if _EMOJI.search(stripped):
        score -= 0.1
    if re.search(r"[!?]{2,}", stripped):
        score -= 0.1
    first_letter = next((ch for ch in stripped if ch.isalpha()), "")
    if first_letter.islower():
        score -= 0.1
    if stripped[-1] not in ".!?…":
        score -= 0.1
    # "tu" vs "vous" is the clearest register signal French has.
    if any(w in _FRENCH_INFORMAL for w in words) and "vous" not in words:
        score -= 0.1

    formal_hits = sum(1 for w in words if w in _FORMAL_WORDS)
    formal_hits += sum(1 for phrase in _FORMAL_PHRASES if f" {phrase} " in f" {plain} ")
    score += min(formal_hits * 0.1, 0.3)
    sentences = sentence_spans(stripped)
    if sentences and stripped[-1] in ".!?…" and len(words) / len(sentences) >= 8:
        score += 0.1
    return round(min(max(score, 0.0), 1.0), 3)


def _blend(old: float, new: float, weight: float) -> float:
    return old + (new - old) * weight


def observe(profile: StyleProfile, message: str) -> StyleProfile:
    """A copy of ``profile`` updated with one more ``message`` of the user.

    Blank messages change nothing. The language follows the latest message that
    carries evidence of another one, so "ok" or "👍" does not flip it and an
    ambiguous message keeps the current language.
    """
    if not message.strip():
        return profile.model_copy()
    weight = max(1.0 / (profile.messages_seen + 1), ADAPT_WEIGHT)
    language = _best_language(message, profile.language) or profile.language
    return profile.model_copy(
        update={
            "messages_seen": profile.messages_seen + 1,
            "average_words": _blend(
                profile.average_words, float(len(word_tokens(message))), weight
            ),
            "formality": _blend(profile.formality, formality_score(message), weight),
            "emoji_rate": _blend(profile.emoji_rate, float(bool(_EMOJI.search(message))), weight),
            "exclamation_rate": _blend(profile.exclamation_rate, float("!" in message), weight),
            "question_rate": _blend(profile.question_rate, float("?" in message), weight),
            "language": language,
        }
    )


def style_instructions(profile: StyleProfile) -> list[str]:
    """Short system-prompt instructions that mirror the user's style.

    Each is an order about the reply ("Answer in one or two short sentences."),
    never a description of the user ("the user writes about 7 words"): a small
    model repeats descriptions as if they were the answer. Empty until the
    profile has seen a message: there is nothing to mirror yet.
    """
    if profile.messages_seen < 1:
        return []
    instructions: list[str] = []
    if profile.language != "en":
        name = LANGUAGE_NAMES.get(profile.language, profile.language)
        instructions.append(f"Reply in {name}.")
    if profile.average_words <= SHORT_MESSAGE_WORDS:
        instructions.append("Answer in one or two short sentences.")
    elif profile.average_words >= LONG_MESSAGE_WORDS:
        instructions.append("Give a detailed answer.")
    if profile.formality < CASUAL_BELOW:
        instructions.append("Use a casual, friendly tone.")
        if profile.language == "fr":
            instructions.append("Address the user as « tu ».")
    elif profile.formality > FORMAL_ABOVE:
        instructions.append("Use a formal, polite tone.")
        if profile.language == "fr":
            instructions.append("Address the user as « vous ».")
    if profile.emoji_rate >= EMOJI_MIRROR_RATE:
        instructions.append("Use an emoji or two.")
    else:
        instructions.append("Avoid emoji.")
    if profile.exclamation_rate >= 0.5 and profile.formality < FORMAL_ABOVE:
        instructions.append("Sound enthusiastic.")
    return instructions


# Sentences about the user's style are never an answer, whatever the wording.
_DESCRIBES_STYLE = re.compile(
    r"\bthe user(?:'s)? (?:writes|uses|prefers|style|messages?|emoji)\b|\bwords per message\b"
    r"|\b(?:casual, friendly|formal, polite) tone\b|\b(?:mirror|match) the user'?s?\b",
    re.IGNORECASE,
)
ECHO_OVERLAP = 0.75
"""A sentence whose words are this much an instruction's repeats it."""


def strip_echoes(text: str, instructions: list[str]) -> str | None:
    """``text`` without the sentences that repeat the style instructions.

    A sentence is an echo when it describes the user's style ("The user writes
    about 7 words per message.") or when at least :data:`ECHO_OVERLAP` of its
    words come from one instruction. ``None`` when there is none.
    """
    instruction_words = [set(word_tokens(line.casefold())) for line in instructions]
    echoes = [
        (start, end)
        for start, end in sentence_spans(text)
        if _echoes(text[start:end], instruction_words)
    ]
    return without_spans(text, echoes) if echoes else None


def _echoes(sentence: str, instruction_words: list[set[str]]) -> bool:
    words = set(word_tokens(sentence.casefold()))
    if not words:
        return False
    if _DESCRIBES_STYLE.search(sentence) is not None:
        return True
    return len(words) >= 3 and any(
        len(words & line) >= ECHO_OVERLAP * len(words) for line in instruction_words
    )


@hookimpl
async def mongars_adapt_reply(turn: Turn, text: str) -> str | None:
    """Drop the reply's sentences that echo the style instructions."""
    return await run_by_size(len(text), strip_echoes, text, turn.style_instructions)


async def load_profile(store: StateStore, user_id: str) -> StyleProfile:
    """The stored profile of ``user_id``, or a fresh one when none is usable."""
    return _profile(await store.get_state(STYLE_NAMESPACE, user_id), user_id)


def _profile(data: dict[str, Any] | None, user_id: str) -> StyleProfile:
    if data is None:
        return StyleProfile()
    try:
        return StyleProfile.model_validate(data)
    except ValidationError:
        # A blob from an older schema must not break every turn of this user;
        # start learning again and say so.
        logger.warning("discarding unreadable style profile of user %r", user_id, exc_info=True)
        return StyleProfile()


PROFILES = StashKey[dict[str, StyleProfile]]("personality.profiles")
"""Each user's style profile, once read from the store."""


async def _cached_profile(services: Services, user_id: str) -> StyleProfile:
    """The user's profile, read from the store once per assistant and then kept."""
    cache = services.stash.setdefault(PROFILES, {})
    if user_id not in cache:
        cache[user_id] = await load_profile(services.store, user_id)
    return cache[user_id]


@hookimpl(trylast=True)
async def mongars_style_instructions(turn: Turn) -> list[str]:
    """Mirror the user's style, counting the current message already.

    The current message is observed on a copy so that a first message in
    French gets a French reply; the stored profile only changes once the turn
    completes.
    """
    if turn.services is None:
        profile = StyleProfile()
    else:
        profile = await _cached_profile(turn.services, turn.user_id)
    return style_instructions(observe(profile, turn.message))


@hookimpl(trylast=True)
async def mongars_turn_completed(turn: Turn, reply: Reply, writes: UnitOfWork) -> None:
    """Learn from the user's message of the finished turn, committed with it.

    The message is observed on the stored profile inside the turn's
    transaction, so turns of one user finishing together each count; the
    cached profile follows once the turn is committed.
    """
    services = turn.services
    if services is None:
        return
    user_id = turn.user_id
    learnt: list[StyleProfile] = []

    def learn(stored: dict[str, Any] | None) -> dict[str, Any]:
        learnt.append(observe(_profile(stored, user_id), turn.message))
        return learnt[-1].model_dump(mode="json")

    def committed() -> None:
        cache = services.stash.setdefault(PROFILES, {})
        cached = cache.get(user_id)
        # Turns may commit in one order and get here in another: keep the latest.
        if cached is None or learnt[-1].messages_seen >= cached.messages_seen:
            cache[user_id] = learnt[-1]

    writes.change_state(STYLE_NAMESPACE, user_id, learn)
    writes.after_commit(committed)


@hookimpl(trylast=True)
async def mongars_invalidate(services: Services, user_id: str) -> None:
    """Another process saved this user's profile: read it again next time."""
    services.stash.get(PROFILES, {}).pop(user_id, None)
