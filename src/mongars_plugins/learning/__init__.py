"""Self-training (the bundled ``learning`` plugin): for now, the default scrubber.

Its ``mongars_scrub`` is ``trylast``, so a user's own scrubbers run first and
this one sees their output. docs/learning.md says what it replaces.
"""

from __future__ import annotations

from mongars_core import hookimpl
from mongars_plugins.learning.scrub import Span, find_spans, scrub

__all__ = ["Span", "find_spans", "scrub"]


@hookimpl(trylast=True)
def mongars_scrub(text: str) -> str | None:
    """Replace e-mail addresses, phones, IBANs, cards, IPs, credentials and ids."""
    scrubbed = scrub(text)
    return scrubbed if scrubbed != text else None
