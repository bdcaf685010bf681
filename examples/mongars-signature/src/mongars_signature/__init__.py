"""mongars-signature: sign every reply of a monGARS assistant.

One hook, ``mongars_adapt_reply``, appends a signature line to the reply. The
plugin owns a settings section, ``signature``: the signature is "— monGARS"
unless ``MONGARS_SIGNATURE__TEXT`` says otherwise. The section is declared with
``mongars_register_settings``, so monGARS checks it at start-up and its
variable is documented like the bundled ones (``python -m
mongars_core.settings_docs --plugin signature``).
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from mongars_core import hookimpl
from mongars_core.hookspecs import RegisterSection
from mongars_core.settings import Section, Settings
from mongars_core.types import Turn

__all__ = [
    "DEFAULT_SIGNATURE",
    "SIGNATURE",
    "SignatureSettings",
    "mongars_adapt_reply",
    "mongars_register_settings",
    "signature",
]

DEFAULT_SIGNATURE = "— monGARS"


class SignatureSettings(BaseModel):
    """The ``signature`` section: ``MONGARS_SIGNATURE__TEXT``."""

    text: str = Field(
        DEFAULT_SIGNATURE,
        description="The signature line. If it is blank, the default is used.",
    )

    @field_validator("text")
    @classmethod
    def _blank_means_default(cls, value: str) -> str:
        return value.strip() or DEFAULT_SIGNATURE


SIGNATURE = Section("signature", SignatureSettings)


@hookimpl
def mongars_register_settings(register: RegisterSection) -> None:
    register(SIGNATURE)


def signature(settings: Settings | None) -> str:
    """The signature to append: ``MONGARS_SIGNATURE__TEXT`` of ``settings``, else the default."""
    return DEFAULT_SIGNATURE if settings is None else settings.section(SIGNATURE).text


# trylast: the reply is adapted by a chain of plugins; running after the others
# keeps the signature on the last line whatever they add.
@hookimpl(trylast=True)
def mongars_adapt_reply(turn: Turn, text: str) -> str | None:
    """Append the signature on a line of its own; ``None`` leaves the reply as it is."""
    line = signature(turn.services.settings if turn.services is not None else None)
    body = text.rstrip()
    if not body or body.endswith(line):
        # An empty reply stays empty (a signature alone would hide the failure),
        # and a reply is never signed twice.
        return None
    return f"{body}\n\n{line}"
