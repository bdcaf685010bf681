"""Which passwords an account may have: at least 8 characters, and not a trivial one.

Refused: whitespace only, control characters, one short unit repeated
(``abcabcabc``, ``11111111a``), a run such as ``abcdefgh`` or ``87654321``, a
password that contains the username or is contained in it (either way round),
and the 5,000 most common passwords of 8 or more characters
(``data/common-passwords.txt``), a few words people reach for (seasons, months,
``mongars``...) and any of these with digits or symbols added at the end or
letters written as digits (``Passw0rd!``, ``Summer2024``, ``mongars1``).
Registration, the password change and the ``mongars users`` commands all
check through :func:`password_problem`; the change also refuses the current
password.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from importlib import resources

MIN_LENGTH = 8
MAX_UNIT = 4
"""The longest unit whose repetition (``abcabc...``) is refused."""

_LEET = {"0": "o", "3": "e", "4": "a", "5": "s", "@": "a", "$": "s"}
_LEET_FORMS = (str.maketrans({**_LEET, "1": "l"}), str.maketrans({**_LEET, "1": "i"}))
_TRAILING = re.compile(r"[\W\d_]+$")
_EXTRA_WORDS = frozenset(
    (
        *("mongars", "assistant", "password", "passwort", "motdepasse", "admin"),
        *("administrator", "welcome", "letmein", "qwerty", "azerty", "secret", "login"),
        *("spring", "summer", "autumn", "fall", "winter"),
        *("january", "february", "march", "april", "may", "june", "july", "august"),
        *("september", "october", "november", "december"),
        *("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    )
)


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` is refused for ``username``, or ``None`` when it is fine."""
    if len(password) < MIN_LENGTH:
        return f"the password needs at least {MIN_LENGTH} characters"
    if any(unicodedata.category(char) == "Cc" for char in password):
        return "the password contains a control character"
    if not password.strip():
        return "the password is only whitespace"
    folded = password.casefold()
    if len(set(folded)) == 1:
        return "the password is one character repeated"
    if _is_repetition(folded):
        return "the password is a short pattern repeated"
    if _is_run(folded):
        return "the password is a run of consecutive characters"
    name = username.casefold()
    if len(name) >= 3:
        stripped = folded.strip()
        if any(form in folded for form in (name, name[::-1])) or stripped in name:
            return "the password contains the username (or is part of it)"
    if folded.strip() in _common_passwords():
        return "the password is one of the most common passwords"
    if _is_common(folded):
        return "the password is a common password or word with digits, symbols or leetspeak"
    return None


def _is_repetition(text: str) -> bool:
    """``abcabcabc``, ``abababx``: a unit of at most :data:`MAX_UNIT` characters
    repeated, give or take one extra character at the end."""
    for body in (text, text[:-1]):
        for size in range(1, MAX_UNIT + 1):
            whole, rest = divmod(len(body), size)
            if whole >= 2 and body == body[:size] * whole + body[:rest]:
                return True
    return False


def _is_common(folded: str) -> bool:
    """A common password, or a common one or word dressed up: leetspeak undone,
    trailing digits and symbols stripped, leading ones too."""
    common = _common_passwords()
    text = folded.strip()
    # Trailing digits are stripped before the translation too, or leetspeak would
    # turn them into letters ("summer2024" -> "summer2o2a").
    stripped = _TRAILING.sub("", text)
    candidates = {text, stripped}
    candidates |= {form.translate(leet) for form in (text, stripped) for leet in _LEET_FORMS}
    for candidate in list(candidates):
        bare = _TRAILING.sub("", candidate)
        candidates |= {bare, _TRAILING.sub("", bare[::-1])[::-1]}
    return any(c and (c in common or c in _EXTRA_WORDS) for c in candidates)


def _is_run(text: str) -> bool:
    """``abcdefgh``, ``12345678``, ``zyxwvuts``: every step the same +1 or -1."""
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(text)}
    return steps in ({1}, {-1})


@functools.cache
def _common_passwords() -> frozenset[str]:
    """Read once, on the first check (not at import)."""
    text = resources.files("mongars_server").joinpath("data/common-passwords.txt").read_text()
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
