"""The bundled scrubber: personal data replaced with typed placeholders.

:func:`find_spans` finds e-mail addresses, phone numbers, IBANs, card numbers,
IP addresses, credentials in URLs and government ids; :func:`scrub` replaces
each with ``<EMAIL>``, ``<PHONE>``, ``<IBAN>``, ``<CARD>``, ``<IP>``,
``<CREDENTIAL>`` or ``<ID>``. Numbers that carry a check digit are replaced
only when it is right, which keeps dates, prices and order numbers out.
The patterns run on a copy of the text of the same length in which look-alike
characters are made plain (no-break and narrow no-break spaces, en dashes and
non-breaking hyphens, full-width digits and signs: NFKC, one character for
one), so each span found is a span of the original text.
Every pattern is anchored by a look-behind so that a match can only start at a
token's first character and is bounded in length: the work stays linear in
the text (a test feeds 100 KB of adversarial input). docs/learning.md says
what is and is not covered.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
import unicodedata
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
    r"(?<![\w.%+-])(?:[\w.%+-]{1,64}+|\"[^\"\\\n]{1,62}\")@"
    r"(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,8}[^\W\d_]{2,24}+(?![\w-])"
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

# scheme://authority: the user information ends at the authority's last "@"
_URL_AUTHORITY = re.compile(r"(?<![\w+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}+://([^\s/?#]{1,512}+)")
# user:password@host without a scheme
_BARE_USERINFO = re.compile(r"(?<![\w.%+:/@-])([\w.%+-]{1,64}+):([^\s/?#]{1,256}+)")
_HOST = re.compile(r"(?:[^\W_][\w-]{0,62}\.){1,8}[^\W_][\w-]{0,62}|localhost\b|\[")
# "mailto:bob@example.com" names a scheme or a field, not a user
_NOT_USERS = frozenset(
    {"mailto", "mail", "email", "e-mail", "courriel", "contact", "to", "from", "cc", "bcc",
     "reply-to", "sip", "sips", "tel", "xmpp", "im", "de", "à", "a"}
)  # fmt: skip
_PARAM = re.compile(r"(?<![\w.-])([A-Za-z_][\w.-]{0,63}+)=([^\s&#\"'<>]{1,512}+)")
_SECRET_SUFFIXES = (
    "token", "secret", "password", "passwd", "pwd", "apikey", "accesskey", "privatekey",
    "secretkey", "signingkey", "authkey", "sessionkey", "signature", "sig", "auth",
    "session", "sessionid", "credential", "credentials",
)  # fmt: skip
_SECRET_NAMES = frozenset({"key", "pass", "passphrase"})


def _secret_name(name: str) -> bool:
    """``auth_token``, ``X-Amz-Signature``, ``private_token``: a secret by its name's end."""
    compact = re.sub(r"[\W_]", "", name).lower()
    return compact in _SECRET_NAMES or compact.endswith(_SECRET_SUFFIXES)


def _credentials(text: str) -> Iterator[Span]:
    for match in _URL_AUTHORITY.finditer(text):
        authority = match.group(1)
        at = authority.rfind("@")
        if at > 0 and ":" in authority[:at]:
            yield Span(match.start(1), match.start(1) + at, CREDENTIAL)
    for match in _BARE_USERINFO.finditer(text):
        at = match.group(2).rfind("@")
        if at <= 0 or match.group(1).lower() in _NOT_USERS:
            continue
        host = match.start(2) + at + 1
        if _HOST.match(text, host):
            yield Span(match.start(1), host - 1, CREDENTIAL)
    for match in _PARAM.finditer(text):
        if not _secret_name(match.group(1)):
            continue
        end = match.end(2)
        while end > match.start(2) + 1 and text[end - 1] in ".,;:!?)]":
            end -= 1  # the end of the sentence, not of the value
        yield Span(match.start(2), end, CREDENTIAL)


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

# only the countries of the length table: each candidate then has one length to try
_COUNTRIES = "|".join(checks.IBAN_LENGTHS)
_IBAN = re.compile(rf"(?<![\w])(?i:{_COUNTRIES})\d{{2}}(?:(?:[ -]| {{2}})?[A-Za-z0-9]){{11,30}}+")


def _ibans(text: str) -> Iterator[Span]:
    position = 0
    while (match := _IBAN.search(text, position)) is not None:
        position = match.start() + 1  # the match may have run into the next IBAN
        found = match.group()
        # the end of each possible IBAN length, in characters of the match
        ends = [i + 1 for i, char in enumerate(found) if char.isalnum()]
        length = checks.IBAN_LENGTHS[found[:2].upper()]
        if length <= len(ends):
            end = ends[length - 1]
            if found[end : end + 1].isalnum():
                continue  # would cut a word in two
            if checks.iban_valid(found[:end]):
                yield Span(match.start(), match.start() + end, IBAN)
                position = match.start() + end


# -- digit groups: cards, phones, ids -------------------------------------------------

# A run of digit groups joined by one or two spaces, a dash, a dot or a slash. A
# card may start at the run's first group or at any group after a space ("room 3
# 4111 1111 1111 1111"); from each start at most 19 digits are looked at, so the
# work stays linear.
_DIGIT_RUN = re.compile(r"(?<![\w.,/+-])\d{1,19}+(?:(?: {1,2}|[-./])\d{1,19}+)*+")
_GROUP = re.compile(r"\d+")
_IBAN_HEAD = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?: {1,2}|-)$")


def _ends_cleanly(text: str, end: int) -> bool:
    """No digit or letter follows (a sentence's full stop may)."""
    after = text[end : end + 2]
    return not after[:1].isalnum() and not (after[:1] in ".,/-" and after[1:2].isdigit())


def _card_at(text: str, groups: list[re.Match[str]], first: int) -> tuple[int, int] | None:
    """The longest card starting at ``groups[first]``: (its end, the index of its last group)."""
    head = groups[first]
    if head.group()[0] not in "23456":
        return None  # issuer digits of Visa, Mastercard, Amex, Discover, JCB, UnionPay...
    if len(head.group()) >= 13:  # compact
        if _ends_cleanly(text, head.end()) and checks.luhn_valid(head.group()):
            return head.end(), first
        return None
    if len(head.group()) != 4:
        return None  # grouped cards start with four digits: 4-4-4-4, 4-6-5...
    best = None
    digits = head.group()
    separator = text[head.end() : groups[first + 1].start()] if first + 1 < len(groups) else ""
    for index in range(first + 1, len(groups)):
        group = groups[index]
        if text[groups[index - 1].end() : group.start()] != separator:
            break  # one separator throughout
        digits += group.group()
        if len(digits) > 19:
            break
        if len(digits) >= 13 and _ends_cleanly(text, group.end()) and checks.luhn_valid(digits):
            best = group.end(), index
        if len(group.group()) < 3:
            break  # only the last group is short
    return best


def _cards(text: str) -> Iterator[Span]:
    for match in _DIGIT_RUN.finditer(text):
        if _IBAN_HEAD.search(text, max(0, match.start() - 6), match.start()):
            continue  # the body of an IBAN (one whose check failed, or the IBAN wins)
        groups = list(_GROUP.finditer(text, match.start(), match.end()))
        index = 0
        while index < len(groups):
            # inside a run, a card starts after a short number and a space ("room 3 4111...")
            after_short = index == 0 or (
                text[groups[index].start() - 1] == " " and len(groups[index - 1].group()) <= 3
            )
            card = _card_at(text, groups, index) if after_short else None
            if card is None:
                index += 1
                continue
            yield Span(groups[index].start(), card[0], CARD)
            index = card[1] + 1


# -- phone numbers ---------------------------------------------------------------------

# not the tail of a longer number; after a short number and a space ("press 5"), it may start
_BEFORE = r"(?<![\w+./-])(?<!\d[./-])(?<!\d{3}[ ])"
_EXT = r"(?:(?: ?(?:x|ext\.?|poste) ?| ?#)\d{1,5})?"  # an extension stays in the placeholder
_AFTER = rf"{_EXT}(?![\w]|[.,/-]\d)"
_EXTENSION = re.compile(r"(?:x|ext\.?|poste|#) ?\d{1,5}$")
_PHONES = [
    # international: +CC and 7 to 14 more digits, with spaces, dots, dashes, parentheses
    re.compile(rf"(?<![\w+])\+\d(?:[ .\-()]{{0,3}}\d){{7,14}}{_AFTER}"),
    re.compile(rf"(?<![\w+])\(\+\d{{1,3}}\)(?:[ .\-()]{{0,3}}\d){{6,13}}{_AFTER}"),
    # 00 then the country code (written with separators, or it is an order number)
    re.compile(rf"{_BEFORE}00[ ]?[1-9](?:[ .\-()]{{0,3}}\d){{7,13}}{_AFTER}"),
    # France: 0X XX XX XX XX, one separator throughout
    re.compile(rf"{_BEFORE}0[1-9]( {{1,2}}|[.-]|)\d\d(?:\1\d\d){{3}}{_AFTER}"),
    # United States and Canada: (415) 555-2671, 415-555-2671, 1-800-555-0199
    re.compile(
        rf"{_BEFORE}(?:1[ .-])?(?:\([2-9]\d\d\) ?|[2-9]\d\d[ ./-])[2-9]\d\d[ .-]\d{{4}}{_AFTER}"
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
            value = _EXTENSION.sub("", match.group())
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


def _plain_table() -> dict[int, str]:
    table = {code: " " for code in (0x00A0, 0x202F, 0x2007, 0x2009, 0x200A, 0x2002, 0x3000)}
    table.update({code: "-" for code in (0x2010, 0x2011, 0x2012, 0x2013, 0x2212)})
    for code in range(0xFF01, 0xFF5F):  # full-width ASCII: NFKC gives one character
        table[code] = unicodedata.normalize("NFKC", chr(code))
    return table


_PLAIN = _plain_table()


def plain(text: str) -> str:
    """``text`` with look-alike spaces, dashes and full-width characters made plain.

    The result has the same length, so a span of it is a span of ``text``.
    """
    return text.translate(_PLAIN)


def find_spans(text: str) -> list[Span]:
    """The personal data in ``text``, in order, without overlaps."""
    text = plain(text)
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
