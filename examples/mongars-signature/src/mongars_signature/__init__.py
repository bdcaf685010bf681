"""mongars-signature: sign every reply of a monGARS assistant.

One hook, ``mongars_adapt_reply``, appends a signature line to the reply. The
signature is "— monGARS" unless the environment variable
``MONGARS_SIGNATURE_TEXT`` says otherwise; it is read on every call, never at
import, so a running assistant picks up a change and tests can set it freely.
"""

from __future__ import annotations

import os

from mongars_core import hookimpl
from mongars_core.types import Turn

__all__ = ["DEFAULT_SIGNATURE", "SIGNATURE_ENV", "mongars_adapt_reply", "signature"]

DEFAULT_SIGNATURE = "— monGARS"
SIGNATURE_ENV = "MONGARS_SIGNATURE_TEXT"


def signature() -> str:
    """The signature to append: ``MONGARS_SIGNATURE_TEXT`` when it is set and not blank."""
    return os.environ.get(SIGNATURE_ENV, "").strip() or DEFAULT_SIGNATURE


# trylast: the reply is adapted by a chain of plugins; running after the others
# keeps the signature on the last line whatever they add.
@hookimpl(trylast=True)
def mongars_adapt_reply(turn: Turn, text: str) -> str | None:
    """Append the signature on a line of its own; ``None`` leaves the reply as it is."""
    line = signature()
    body = text.rstrip()
    if not body or body.endswith(line):
        # An empty reply stays empty (a signature alone would hide the failure),
        # and a reply is never signed twice.
        return None
    return f"{body}\n\n{line}"
