"""Which passwords an account may have: at least 8 characters, and not a trivial one.

Refused: whitespace only, one character repeated, a run such as ``abcdefgh``
or ``87654321``, a password that contains the username, and the 5,000 most
common passwords of 8 or more characters (``data/common-passwords.txt``).
Registration, the password change and the ``mongars users`` commands all
check through :func:`password_problem`.
"""

from __future__ import annotations

import functools
import itertools
from importlib import resources

MIN_LENGTH = 8


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` is refused for ``username``, or ``None`` when it is fine."""
    if len(password) < MIN_LENGTH:
        return f"the password needs at least {MIN_LENGTH} characters"
    if not password.strip():
        return "the password is only whitespace"
    folded = password.casefold()
    if len(set(folded)) == 1:
        return "the password is one character repeated"
    if _is_run(folded):
        return "the password is a run of consecutive characters"
    name = username.casefold()
    if len(name) >= 3 and name in folded:
        return "the password contains the username"
    if folded.strip() in _common_passwords():
        return "the password is one of the most common passwords"
    return None


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
