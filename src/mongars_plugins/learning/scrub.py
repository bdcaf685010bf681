"""The bundled scrubber: personal data replaced with typed placeholders.

:func:`find_spans` finds e-mail addresses, phone numbers, IBANs, card numbers,
IP addresses, credentials in URLs and government ids; :func:`scrub` replaces
each with ``<EMAIL>``, ``<PHONE>``, ``<IBAN>``, ``<CARD>``, ``<IP>``,
``<CREDENTIAL>`` or ``<ID>``. Numbers that carry a check digit are replaced
only when it is right, which keeps dates, prices and order numbers out.
Every pattern is anchored by a look-behind so that a match can only start at a
token's first character and is bounded in length: the work stays linear in
the text (a test feeds 100 KB of adversarial input). docs/learning.md says
what is and is not covered.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mongars_plugins.learning import checks

EMAIL = "EMAIL"
PHONE = "PHONE"
IBAN = "IBAN"
CARD = "CARD"
IP = "IP"
CREDENTIAL = "CREDENTIAL"
ID = "ID"
KINDS = (EMAIL, PHONE, IBAN, CARD, IP, CREDENTIAL, ID)

# Where two spans overlap, the longer wins; at equal length, the earlier kind
# here (the one with the stronger check). Credentials win whatever their length:
# the e-mail-like "password@host" inside a URL must not leave the user name.
_PRIORITY = {CREDENTIAL: 0, EMAIL: 1, IBAN: 2, ID: 3, CARD: 4, IP: 5, PHONE: 6}


@dataclass(frozen=True, order=True)
class Span:
    """``text[start:end]`` is personal data of type ``kind``."""

    start: int
    end: int
    kind: str


Finder = Callable[[str], Iterator[Span]]

# -- e-mail ---------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w.%+-]{1,64}+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}"
    r"[A-Za-z]{2,24}+(?![\w-])"
)


# "icon@2x.png" is a file name
_FILE_SUFFIXES = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "pdf", "zip", "txt"})


def _emails(text: str) -> Iterator[Span]:
    for match in _EMAIL.finditer(text):
        if match.group().rsplit(".", 1)[1].lower() in _FILE_SUFFIXES:
            continue
        if match.group().startswith("git@") and text.startswith(":", match.end()):
            continue  # git@github.com:owner/repo.git is a remote, not a mailbox
        yield Span(match.start(), match.end(), EMAIL)


# -- credentials in URLs -------------------------------------------------------------

_URL_USERINFO = re.compile(
    r"(?<![\w+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}+://([^\s:/?#@\[\]]{1,256}+:[^\s/?#@]{1,256}+)@"
)
_SECRET_NAMES = (
    r"access_token|refresh_token|id_token|token|api_key|apikey|api-key|key|secret"
    r"|client_secret|password|passwd|pwd|pass|auth|sig|signature|session|sessionid"
)
_SECRET_PARAM = re.compile(
    rf"(?:(?<=[?&;])|(?<![\w-]))(?:{_SECRET_NAMES})=([^\s&#\"'<>]{{1,512}}+)", re.IGNORECASE
)


def _credentials(text: str) -> Iterator[Span]:
    for match in _URL_USERINFO.finditer(text):
        yield Span(match.start(1), match.end(1), CREDENTIAL)
    for match in _SECRET_PARAM.finditer(text):
        end = match.end(1)
        while end > match.start(1) + 1 and text[end - 1] in ".,;:!?)]":
            end -= 1  # the end of the sentence, not of the value
        yield Span(match.start(1), end, CREDENTIAL)


# -- IP addresses -------------------------------------------------------------------

_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.])(?:{_OCTET}\.){{3}}{_OCTET}(?!\.?\d|\w)")
_VERSION_WORDS = re.compile(r"(?:\bv|version|ver\.?|release|build|python|node|v\.)\s*$", re.I)
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}+"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?:%[\w.]{1,16})?(?![\w:]|\.\w)"
)


def _ips(text: str) -> Iterator[Span]:
    for match in _IPV4.finditer(text):
        if _VERSION_WORDS.search(text, max(0, match.start() - 12), match.start()):
            continue  # "version 1.2.3.4" is a version
        yield Span(match.start(), match.end(), IP)
    for match in _IPV6.finditer(text):
        candidate = match.group().split("%", 1)[0]
        if not any(c in "0123456789abcdefABCDEF" for c in candidate):
            continue
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        yield Span(match.start(), match.end(), IP)


# -- IBAN ---------------------------------------------------------------------------

_IBAN = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}+")


def _ibans(text: str) -> Iterator[Span]:
    position = 0
    while (match := _IBAN.search(text, position)) is not None:
        position = match.start() + 1  # the match may have run into the next IBAN
        found = match.group()
        # the end of each possible IBAN length, in characters of the match
        ends = [i + 1 for i, char in enumerate(found) if char != " "]
        expected = checks.IBAN_LENGTHS.get(found[:2].upper())
        lengths = [expected] if expected else range(min(34, len(ends)), 14, -1)
        for length in lengths:
            if length <= len(ends):
                end = ends[length - 1]
                after = found[end : end + 1]
                if after.isalnum():
                    continue  # would cut a word in two
                if checks.iban_valid(found[:end]):
                    yield Span(match.start(), match.start() + end, IBAN)
                    position = match.start() + end
                    break


# -- digit groups: cards, phones, ids -------------------------------------------------

# A run of digit groups joined by single spaces, dashes or dots; the run starts
# at a token boundary, so each digit is looked at by a bounded number of runs.
_DIGIT_RUN = re.compile(r"(?<![\w.,/+-])(?<!\d[ -])\d{1,19}+(?:[ -]\d{1,19}+){0,9}+")


def _group_prefixes(text: str, start: int, end: int) -> Iterator[tuple[int, str]]:
    """Each prefix of the run ``text[start:end]`` ending at a group's end: (end, digits)."""
    digits = ""
    position = start
    for group in re.split(r"([ -])", text[start:end]):
        position += len(group)
        if group in (" ", "-"):
            continue
        digits += group
        yield position, digits


def _ends_cleanly(text: str, end: int) -> bool:
    """No digit or letter follows (a sentence's full stop may)."""
    after = text[end : end + 2]
    return not after[:1].isalnum() and not (after[:1] in ".," and after[1:2].isdigit())


def _cards(text: str) -> Iterator[Span]:
    for match in _DIGIT_RUN.finditer(text):
        if match.group()[0] not in "23456":
            continue  # issuer digits of Visa, Mastercard, Amex, Discover, JCB, UnionPay...
        best = None
        for end, digits in _group_prefixes(text, match.start(), match.end()):
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _ends_cleanly(text, end) and checks.luhn_valid(digits):
                best = end
        if best is not None:
            yield Span(match.start(), best, CARD)


# -- phone numbers ---------------------------------------------------------------------

_BEFORE = r"(?<![\w+./-])(?<!\d[ ./-])"  # not the tail of a longer number
_AFTER = r"(?![\w]|[.,/-]\d)"
_PHONES = [
    # international: +CC and 7 to 14 more digits, with spaces, dots, dashes, parentheses
    re.compile(rf"(?<![\w+])\+\d(?:[ .\-()]{{0,3}}\d){{7,14}}{_AFTER}"),
    re.compile(rf"(?<![\w+])\(\+\d{{1,3}}\)(?:[ .\-()]{{0,3}}\d){{6,13}}{_AFTER}"),
    # 00 then the country code (written with separators, or it is an order number)
    re.compile(rf"{_BEFORE}00[ ]?[1-9](?:[ .\-()]{{0,3}}\d){{7,13}}{_AFTER}"),
    # France: 0X XX XX XX XX, one separator throughout
    re.compile(rf"{_BEFORE}0[1-9]([ .-]?)\d\d(?:\1\d\d){{3}}{_AFTER}"),
    # United States and Canada: (415) 555-2671, 415-555-2671, 1-800-555-0199
    re.compile(
        rf"{_BEFORE}(?:1[ .-])?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ .-])[2-9]\d\d[ .-]\d{{4}}{_AFTER}"
    ),
    # United Kingdom: 020 7946 0958, 0113 496 0000, 07700 900123, 01632 960983
    re.compile(
        rf"{_BEFORE}(?:\(0[1-9]\d\) ?|0[1-9]\d[ -]?)\d{{4}}[ -]?\d{{4}}{_AFTER}"
        rf"|{_BEFORE}(?:\(0[1-9]\d{{2}}\) ?|0[1-9]\d{{2}}[ -]?)\d{{3}}[ -]?\d{{4}}{_AFTER}"
        rf"|{_BEFORE}(?:\(0[1-9]\d{{3}}\) ?|0[1-9]\d{{3}}[ -]?)"
        rf"(?:\d{{6}}|\d{{3}}[ -]\d{{3}}){_AFTER}"
    ),
    # Germany: 030 12345678, 089/1234567, (0221) 9876543, 0151-23456789
    re.compile(
        rf"{_BEFORE}(?:\(0[1-9]\d{{1,3}}\) ?|0[1-9]\d{{1,3}}(?: ?/ ?| |-))"
        rf"\d{{3,8}}(?:[ -]\d{{1,5}})?{_AFTER}"
    ),
]


def _digit_count(value: str) -> int:
    return sum(char.isdigit() for char in value)


def _phones(text: str) -> Iterator[Span]:
    for index, pattern in enumerate(_PHONES):
        for match in pattern.finditer(text):
            value = match.group()
            count = _digit_count(value)
            if index <= 2:  # international
                if not 8 <= count <= 15 or value.count("(") != value.count(")"):
                    continue
                if index == 2 and sum(not c.isdigit() for c in value) < 2:
                    continue
            elif not 10 <= count <= 12:
                continue
            yield Span(match.start(), match.end(), PHONE)


# -- government ids --------------------------------------------------------------------

_NIR = re.compile(
    r"(?<![\w])[12] ?\d\d ?\d\d ?(?:\d\d|2[AaBb]) ?\d{3} ?\d{3} ?\d\d(?![\w]|[ .-]\d)"
)
_DNI = re.compile(
    r"(?<![\w])(?:\d{8}|\d{2}\.\d{3}\.\d{3}|[XYZxyz][ -]?\d{7})(?:[ -]?[A-Z]|[a-z])(?!\w)"
)
_CODICE_FISCALE = re.compile(
    r"(?<![\w])[A-Za-z]{6}[0-9LMNPQRSTUVlmnpqrstuv]{2}[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{2}"
    r"[A-Za-z][0-9LMNPQRSTUVlmnpqrstuv]{3}[A-Za-z](?!\w)"
)
_NINE = re.compile(
    r"(?<![\w.-])(?:\d{3}([ .-]?)\d{3}\1\d{3}|\d{3}([ -]?)\d{2}\2\d{4}|\d{4}\.\d\d\.\d{3})"
    r"(?![\w]|[.-]\d)"
)
_SIN_WORDS = re.compile(r"\b(?:SIN|NAS|social insurance|assurance sociale)\b", re.I)
_BSN_WORDS = re.compile(r"\b(?:BSN|burgerservicenummer|sofinummer|sofi)\b", re.I)
_SSN_WORDS = re.compile(r"\b(?:SSN|social security)\b", re.I)
_KEYWORD_WINDOW = 40


def _near(words: re.Pattern[str], text: str, start: int) -> bool:
    return words.search(text, max(0, start - _KEYWORD_WINDOW), start) is not None


def _ids(text: str) -> Iterator[Span]:
    for match in _NIR.finditer(text):
        if checks.nir_valid(match.group()):
            yield Span(match.start(), match.end(), ID)
    for match in _DNI.finditer(text):
        if checks.dni_valid(match.group()):
            yield Span(match.start(), match.end(), ID)
    for match in _CODICE_FISCALE.finditer(text):
        if checks.codice_fiscale_valid(match.group()):
            yield Span(match.start(), match.end(), ID)
    for match in _NINE.finditer(text):
        if _nine_digit_id(text, match):
            yield Span(match.start(), match.end(), ID)


def _nine_digit_id(text: str, match: re.Match[str]) -> bool:
    """Nine digits: a Canadian SIN, a Dutch BSN or a US SSN (the last only by its keyword)."""
    value, start = match.group(), match.start()
    sin_shape = match.group(1) is not None  # 3-3-3 digits (or 9 in a row)
    separated = bool(match.group(1))
    # 046 454 286 is a SIN on its own; nine digits in a row only beside the word
    sin = sin_shape and checks.luhn_valid(value) and (separated or _near(_SIN_WORDS, text, start))
    bsn = (
        (sin_shape or "." in value)
        and checks.bsn_valid(value)
        and ("." in value or _near(_BSN_WORDS, text, start))
    )
    ssn = (
        (not sin_shape or not separated)
        and _near(_SSN_WORDS, text, start)
        and checks.ssn_plausible(value)
    )
    return sin or bsn or ssn


FINDERS: tuple[Finder, ...] = (_credentials, _emails, _ibans, _ids, _cards, _ips, _phones)


def find_spans(text: str) -> list[Span]:
    """The personal data in ``text``, in order, without overlaps."""
    candidates = [span for finder in FINDERS for span in finder(text)]
    candidates.sort(
        key=lambda s: (s.kind != CREDENTIAL, s.start - s.end, _PRIORITY[s.kind], s.start)
    )
    starts: list[int] = []  # of the spans kept, sorted; they never overlap
    kept: dict[int, Span] = {}
    for span in candidates:
        index = bisect.bisect_right(starts, span.start)
        if index and kept[starts[index - 1]].end > span.start:
            continue  # the span before it reaches into it
        if index < len(starts) and starts[index] < span.end:
            continue  # it reaches into the span after it
        starts.insert(index, span.start)
        kept[span.start] = span
    return [kept[start] for start in starts]


def scrub(text: str) -> str:
    """``text`` with each span of personal data replaced by ``<KIND>``."""
    spans = find_spans(text)
    if not spans:
        return text
    pieces = []
    position = 0
    for span in spans:
        pieces.append(text[position : span.start])
        pieces.append(f"<{span.kind}>")
        position = span.end
    pieces.append(text[position:])
    return "".join(pieces)
