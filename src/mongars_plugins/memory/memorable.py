"""What is worth remembering: statements about the user, not keystrokes.

A small rule-based classifier, in English and French. A message is split
into sentences and each sentence gets one :data:`Kind`; only ``"statement"``
sentences are remembered. The rules, in the order they apply:

* ``empty``: no letters or digits; ``too_short``: one word, or under six letters.
* ``command``: starts with ``/`` (``/help``, ``/new``).
* ``arithmetic``: a calculation or unit conversion (``17 * 23``, ``15% of
  240``, ``100 °F in °C``): the reasoning plugin answers those every time.
* ``question``: ends with ``?``, or opens like one (``what is``, ``do you``,
  ``est-ce que``, ``peux-tu``, ``I wonder``) even without the mark. A
  ``when``/``where`` clause with its own subject (``When I was ten, ...``) is
  a statement, not a question.
* ``request``: an instruction to the assistant (``tell me a joke``, ``please
  write ...``, ``I want you to ...``, ``raconte-moi ...``).
* ``small_talk``: greetings, thanks, acknowledgements and reactions made only
  of small-talk words (``hi``, ``thanks a lot!``, ``ok cool``, ``I love it``).
  A greeting before a comma is skipped and the rest of the sentence decides
  (``Hello monGARS, please tell me ...`` is a request).
* ``impersonal``: nothing about the user: no first person, no date, no name
  (``the weather is nice``, ``you are wrong``).
* ``statement``: the rest: facts about the user, preferences, plans, people,
  dates (``My sister's name is Amélie``, ``I prefer tea``).

``remember that ...``, ``note that ...``, ``don't forget that ...`` (and the
French ``retiens que ...``) ask for a memory explicitly: the prefix is
dropped and the rest is classified as above. ``Call me Sam`` is a statement.
"""

from __future__ import annotations

import re
from typing import Literal

from mongars_core.text import sentences, word_set, word_tokens

Kind = Literal[
    "statement",
    "empty",
    "too_short",
    "command",
    "arithmetic",
    "question",
    "request",
    "small_talk",
    "impersonal",
]


_ARITHMETIC = (
    re.compile(r"\d\s*[+*×÷^=]\s*[\d(]"),
    re.compile(r"\d\s+[-/x]\s+\d"),
    re.compile(r"\d\s*%\s*(?:of|de|du|des)\b", re.IGNORECASE),
    re.compile(r"\b(?:sqrt|square root|racine carrée)\b", re.IGNORECASE),
    re.compile(
        r"^(?:(?:what(?:'s| is)|how (?:much|many) \w* ?(?:is|are))\s+)?[\d.,]+\s*°?\s*"
        r"[a-zA-Zµ°]{1,6}\s+(?:in|to|into|en)\s+°?\s*[a-zA-Zµ]{1,12}\s*\??$",
        re.IGNORECASE,
    ),
    re.compile(r"^(?:convert|converti[rs]?|calculate|compute|calcule[rz]?)\b", re.IGNORECASE),
)

_WH = word_set(
    "what what's whats who who's whom whose where where's when when's why how how's which "
    "qu'est-ce quel quelle quels quelles qui quoi où ou pourquoi comment combien quand"
)
_AUXILIARY = word_set(
    "is are am was were do does did can could would will should shall "
    "isn't aren't wasn't weren't doesn't didn't couldn't wouldn't shouldn't "
    "est-ce peux-tu pouvez-vous sais-tu savez-vous as-tu avez-vous es-tu êtes-vous "
    "connais-tu connaissez-vous veux-tu voulez-vous"
)
_NEGATED_AUXILIARY = word_set("don't can't won't haven't hasn't")
_PRONOUN = word_set("i i'm i've i'd i'll we we're we've he she they je j'ai nous il elle")
_SUBJECT = _PRONOUN | word_set("my our his her their mon ma mes notre nos")
_CLAUSE_WH = word_set("when where while quand où")
_ADDRESSEE = word_set("you you're your yours tu vous toi ton ta tes votre vos")
_WONDER = re.compile(
    r"^(?:i (?:wonder|was wondering|am wondering|want to know|would like to know|'d like "
    r"to know|need to know)|i'd like to know|je me demande|je voudrais savoir|dis-moi si|"
    r"c'est (?:quoi|qui))\b"
)
_REQUEST_VERBS = word_set(
    "tell give show write explain help list translate summarize summarise describe define "
    "make create generate find search look recommend suggest play sing draw say repeat "
    "continue stop answer check read fix correct rewrite compose send open set remind "
    "imagine pretend act teach name spell count shorten expand simplify rephrase "
    "reply respond use format avoid include convert compare output "
    "let's let dis dites raconte racontez donne donnez écris écrivez explique expliquez "
    "montre montrez traduis traduisez aide aidez fais faites trouve trouvez cherche "
    "propose proposez résume résumez calcule calculez"
)
_REQUEST_PREFIX = re.compile(
    r"^(?:i (?:want|need|would like) you to|i'd like you to|i need help|help me|"
    r"je veux que tu|j'aimerais que tu|je voudrais que tu|aide-moi)\b"
)
_EXPLICIT = re.compile(
    r"^(?:please\s+)?(?:remember|note|don't forget|do not forget|keep in mind|for the record|"
    r"fyi|retiens|souviens-toi|n'oublie pas)\b[\s,:]*(?:that\b|que\b|qu')?[\s,:]*",
    re.IGNORECASE,
)
_CALL_ME = re.compile(r"^(?:please\s+)?(?:call me|appelle-moi|appelez-moi)\b", re.IGNORECASE)
_SMALL_TALK = word_set(
    "hi hello hey hiya heya yo howdy greetings good morning afternoon evening night day "
    "thanks thank thx ty cheers you ok okay k kk alright all right sure yes yeah yep yup no "
    "nope nah fine great cool nice awesome perfect wow lol haha hahaha hehe hmm hm oh ah "
    "uh um sorry bye goodbye see ya later soon welcome you're please much a lot so very "
    "really too again that's that it's it this is was funny interesting amazing wonderful "
    "lovely excellent exactly indeed true agreed agree got of course never mind problem "
    "understood understand i i'm me well done there back here doing not sure know don't "
    "think guess see also just am bonjour salut coucou bonsoir bonne nuit journée merci "
    "beaucoup oui non bof super génial d'accord ça va bien très au revoir à plus tard "
    "c'est cool top parfait mongars"
)
_REACTION = re.compile(
    r"^i (?:really )?(?:like|love|hate|liked|loved|hated|enjoyed|enjoy) (?:it|that|this|them|"
    r"those|these|your \w+)$|^(?:that|this)'?s? (?:not )?what i (?:asked|said|meant|wanted)\b"
)
_FIRST_PERSON = word_set(
    "i i'm im i've i'd i'll me my mine myself we we're we've we'll we'd our ours us "
    "je moi mon ma mes nous notre nos"
)
_TEMPORAL = word_set(
    "tomorrow tonight yesterday birthday anniversary wedding monday tuesday wednesday "
    "thursday friday saturday sunday january february march april may june july august "
    "september october november december next last ago weekend demain hier anniversaire "
    "lundi mardi mercredi jeudi vendredi samedi dimanche janvier février mars avril mai "
    "juin juillet août septembre octobre novembre décembre prochain prochaine dernier "
    "dernière"
)


def _words(sentence: str) -> list[str]:
    """Lower-case words, hyphenated ones whole ("est-ce"), with plain apostrophes."""
    return word_tokens(sentence.replace("’", "'").casefold(), hyphens=True)


def _explicit(sentence: str) -> str | None:
    """What follows ``remember that`` and the like, when the sentence opens so."""
    found = _EXPLICIT.match(sentence.replace("’", "'"))
    if found is None:
        return None
    return sentence[found.end() :].strip()


def classify(sentence: str) -> Kind:
    """The :data:`Kind` of one sentence (see the module docstring for the rules)."""
    text = sentence.strip()
    words = _words(text)
    if not words:
        return "empty"
    if text.startswith("/"):
        return "command"
    if _CALL_ME.match(text) and len(words) > 2:
        return "statement"
    if len(words) < 2 or sum(char.isalnum() for char in text) < 4:
        return "too_short"
    opening, comma, rest = text.partition(",")
    if comma and rest.strip() and all(word in _SMALL_TALK for word in _words(opening)):
        # "Hello there, please tell me ...": the greeting says nothing; the rest decides.
        inner = classify(rest)
        return "small_talk" if inner in ("too_short", "empty") else inner
    personal = _first_person(words)
    if not personal and any(pattern.search(text) for pattern in _ARITHMETIC):
        return "arithmetic"
    phrase = " ".join(words)
    first, second = words[0], words[1]
    if _is_question(text, phrase, first, second):
        return "question"
    if first == "please" and len(words) > 2:
        return classify(text.split(None, 1)[1].lstrip(" ,"))
    if (
        first.split("-")[0] in _REQUEST_VERBS
        or first in ("don't", "never")
        or _REQUEST_PREFIX.match(phrase)
    ):
        return "request"
    if all(word in _SMALL_TALK for word in words) or _REACTION.match(phrase):
        return "small_talk"
    if not (personal or _dated_or_named(text, words)):
        return "impersonal"
    return "statement"


def _is_question(text: str, phrase: str, first: str, second: str) -> bool:
    if text.rstrip(" \"')»").endswith("?") or first in _AUXILIARY:
        return True
    if first in _WH:
        # "When I was ten, ..." and "What I love is ..." are statements.
        subjects = _SUBJECT if first in _CLAUSE_WH else _PRONOUN
        return second not in subjects
    if first in _NEGATED_AUXILIARY and second in _ADDRESSEE | _SUBJECT:
        return True
    return bool(_WONDER.match(phrase)) or first.endswith(("-tu", "-vous", "-il", "-elle"))


def _first_person(words: list[str]) -> bool:
    return any(word in _FIRST_PERSON or word.startswith(("j'", "m'")) for word in words)


def _dated_or_named(text: str, words: list[str]) -> bool:
    """Whether a sentence holds a date, a number, or a named person or place."""
    if any(word in _TEMPORAL for word in words) or any(char.isdigit() for char in text):
        return True
    # A capitalised word after the first one names someone or something.
    return any(word[:1].isupper() for word in word_tokens(text, hyphens=True)[1:])


def memorable_text(message: str) -> str | None:
    """The sentences of ``message`` worth remembering, joined; ``None`` when there are none."""
    kept: list[str] = []
    for sentence in sentences(message):
        explicit = _explicit(sentence)
        candidate = explicit if explicit else sentence
        if classify(candidate) == "statement":
            kept.append(candidate[0].upper() + candidate[1:] if explicit else candidate)
    return " ".join(kept) if kept else None
