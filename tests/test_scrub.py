"""The bundled scrubber (mongars_plugins.learning) and the fail-closed ``PluginHost.scrub``."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from mongars_core import hookimpl
from mongars_core.errors import HookValidationError, PluginError
from mongars_core.pipeline import Assistant
from mongars_core.plugins import PluginHost, build_plugin_manager
from mongars_core.settings import Settings
from mongars_plugins import learning
from mongars_plugins.learning import checks
from mongars_plugins.learning.scrub import find_spans, scrub

MakeAssistant = Callable[..., Awaitable[Assistant]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Write to jean.dupont+shop@orange.fr.", "Write to <EMAIL>."),
        ("mailto:Bob_Smith42@mail.example.co.uk", "mailto:<EMAIL>"),
        ("Call +33 6 12 34 56 78 tonight", "Call <PHONE> tonight"),
        ("+33 (0)6 12 34 56 78", "<PHONE>"),
        ("+1 (415) 555-2671 or +44 20 7946 0958", "<PHONE> or <PHONE>"),
        ("+49-89-1234567", "<PHONE>"),
        ("06 12 34 56 78, 06.12.34.56.78, 0612345678", "<PHONE>, <PHONE>, <PHONE>"),
        ("(415) 555-2671, 415.555.2671, 1-800-555-0199", "<PHONE>, <PHONE>, <PHONE>"),
        ("020 7946 0958 or 07700 900123", "<PHONE> or <PHONE>"),
        ("030 12345678, 089/1234567, (0221) 9876543", "<PHONE>, <PHONE>, <PHONE>"),
        ("IBAN FR76 3000 6000 0112 3456 7890 189 ok", "IBAN <IBAN> ok"),
        ("GB82WEST12345698765432 then DE89370400440532013000", "<IBAN> then <IBAN>"),
        ("card 4111 1111 1111 1111 exp 12/27", "card <CARD> exp 12/27"),
        ("amex 3782-822463-10005", "amex <CARD>"),
        ("host 192.168.1.10:8080", "host <IP>:8080"),
        ("2001:db8::8a2e:370:7334 and fe80::1.", "<IP> and <IP>."),
        ("::ffff:192.0.2.128", "<IP>"),
        ("https://alice:s3cret@db.example.com/x", "https://<CREDENTIAL>@db.example.com/x"),
        ("https://api.example.com/v1?page=2&api_key=AbC123xyz.", "https://api.example.com/v1?page=2&api_key=<CREDENTIAL>."),
        ("?token=abc&password=hunter2", "?token=<CREDENTIAL>&password=<CREDENTIAL>"),
        ("NIR 2 55 08 14 168 025 38", "NIR <ID>"),
        ("SIN 046 454 286", "SIN <ID>"),
        ("my BSN is 111222333", "my BSN is <ID>"),
        ("DNI 12345678Z, NIE X1234567L", "DNI <ID>, NIE <ID>"),
        ("codice fiscale RSSMRA85T10A562S", "codice fiscale <ID>"),
        ("my SSN is 123-45-6789", "my SSN is <ID>"),
    ],
)  # fmt: skip
def test_each_type_is_replaced_by_its_placeholder(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The meeting moved to 12/03/2024 at 10:30.",
        "Le contrat commence le 01.02.2024 10:30 précises.",
        "Logged at 2024-03-15 14:05:33.",
        "That laptop costs $1,299.99; the rent is 1 250,00 €.",
        "What is 17 * 23 = 391? And 1234 + 5678 = 6912.",
        "Order #48213-77, ticket 7781234, invoice INV-2024-00042.",
        "Upgrade to v2.10.3; pin version 1.2.3.4; build 10.0.19045.3803.",
        "ISBN 978-3-16-148410-0, ZIP 90210-1234, score 10-2.",
        "MAC 00:1A:2B:3C:4D:5E, ratio 16:9, std::vector, 12:30:45.",
        "Serial 0000 1111 2222 on the back; lot 12 34 56 78.",
        "Use icon@2x.png; clone git@github.com:example/repo.git.",
        "https://example.com/files?page=2&sort=asc",
        "Part number 123-45-6789 is out of stock.",  # SSN-shaped, but no SSN keyword
        "Reference 111222333 for the parcel.",  # 11-proof, but no BSN keyword
    ],
)
def test_hard_negatives_are_left_alone(text: str) -> None:
    assert scrub(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # Luhn fails
        "IBAN FR77 3000 6000 0112 3456 7890 189",  # mod 97 fails
        "NIR 2 55 08 14 168 025 39",  # key fails
        "DNI 12345678A",  # letter fails
        "codice fiscale RSSMRA85T10A562T",  # check character fails
        "SIN 046 454 287",  # Luhn fails
        "my BSN is 111222334",  # 11-proof fails
    ],
)
def test_a_number_whose_check_fails_is_kept(text: str) -> None:
    assert scrub(text) == text


def test_the_checks_accept_known_valid_numbers_and_reject_one_digit_off() -> None:
    assert checks.luhn_valid("4111111111111111") and not checks.luhn_valid("4111111111111121")
    assert checks.iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not checks.iban_valid("GB82 WEST 1234 5698 7654 33")
    assert not checks.iban_valid("FR14 2004 1010 0505 0001 3M02 60")  # too short for FR
    assert checks.bsn_valid("111222333") and not checks.bsn_valid("111222332")
    assert checks.dni_valid("X1234567L") and checks.dni_valid("12345678-Z")
    assert checks.codice_fiscale_valid("RSSMRA85T10A562S")
    assert checks.nir_valid("2 55 08 2A 168 025 " + f"{97 - 2550819168025 % 97:02d}")


def test_overlapping_spans_keep_the_longest_and_credentials_win() -> None:
    # the IBAN's digits hold phone- and card-shaped runs: one span, the IBAN
    assert [s.kind for s in find_spans("FR7630006000011234567890189")] == ["IBAN"]
    # "s3cret@db.example.com" looks like an e-mail address, but it is a password
    text = "postgres://admin:s3cret@db.example.com:5432/app"
    assert scrub(text) == "postgres://<CREDENTIAL>@db.example.com:5432/app"
    assert scrub("http://root:pw1234@10.0.0.7/admin") == "http://<CREDENTIAL>@<IP>/admin"


def _seconds(text: str) -> float:
    """The best of three timings of ``scrub(text)``: the least disturbed by other work."""
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        scrub(text)
        timings.append(time.perf_counter() - start)
    return min(timings)


def _grows_linearly(text: str) -> None:
    """Ten times the text takes about ten times as long, not a hundred (backtracking).

    A ratio measured in one run, so a busy machine slows both sides alike; the
    absolute speed is measured by benchmarks/pii.py, not asserted here.
    """
    tenth = text[: len(text) // 10]
    ratio = _seconds(text) / max(_seconds(tenth), 1e-4)
    assert ratio < 30, f"10x the input took {ratio:.0f}x as long"


@pytest.mark.parametrize(
    "adversarial",
    [
        "1" * 100_000,
        "1 " * 50_000,
        "1-" * 50_000,
        "a" * 100_000,
        "a@" * 50_000,
        "a." * 50_000,
        "1." * 50_000,
        ":" * 100_000,
        "a:" * 50_000,
        "+1 " * 33_000,
        "FR76 " * 20_000,
        "https://a:" * 10_000,
        "?token=" * 14_000,
        ("0612345678 " * 9_000)[:100_000],
    ],
)
def test_adversarial_input_is_scrubbed_in_linear_time(adversarial: str) -> None:
    _grows_linearly(adversarial)


# -- leaks found by review: each of these came back unchanged (or half scrubbed) ---------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("room 3 4111 1111 1111 1111", "room 3 <CARD>"),
        ("I have 2 cards: 1 4111111111111111", "I have 2 cards: 1 <CARD>"),
        ("press 5 06 12 34 56 78", "press 5 <PHONE>"),
        ("page 1 2 3 4 5 6 7 8 9 10 4111 1111 1111 1111", "page 1 2 3 4 5 6 7 8 9 10 <CARD>"),
        ("redis://:s3cretpw@cache:6379", "redis://<CREDENTIAL>@cache:6379"),
        ("https://:token123@host", "https://<CREDENTIAL>@host"),
        ("postgres://admin:p@ss@host/db", "postgres://<CREDENTIAL>@host/db"),
        ("admin:hunter2@db.example.com", "<CREDENTIAL>@db.example.com"),
        ("?auth_token=hunter2", "?auth_token=<CREDENTIAL>"),
        ("?X-Amz-Signature=abc123", "?X-Amz-Signature=<CREDENTIAL>"),
        ("?access_key=AK1&private_token=x", "?access_key=<CREDENTIAL>&private_token=<CREDENTIAL>"),
        ("06\u00a012\u00a034\u00a056\u00a078", "<PHONE>"),
        ("+33\u202f6\u202f12\u202f34\u202f56\u202f78", "<PHONE>"),
        ("415\u2013555\u20132671 or 415\u2011555\u20112671", "<PHONE> or <PHONE>"),
        ("06  12  34  56  78 or 4111  1111  1111  1111", "<PHONE> or <CARD>"),
        ("IBAN FR76-3000-6000-0112-3456-7890-189.", "IBAN <IBAN>."),
        ("4111.1111.1111.1111 and 4111/1111/1111/1111", "<CARD> and <CARD>"),
        ("tel ＋３３６１２３４５６７８ ok", "tel <PHONE> ok"),  # full-width
        ("+1-415-555-2671x123, 415-555-2671 ext. 45", "<PHONE>, <PHONE>"),
        ("call 415/555-2671", "call <PHONE>"),
        ('mail "john doe"@example.com or john@例え.jp', "mail <EMAIL> or <EMAIL>"),
    ],
)  # fmt: skip
def test_formats_that_used_to_leak_are_scrubbed(text: str, expected: str) -> None:
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "mailto:bob@example.com",  # a scheme, not a user name
        "The float 0.4111111111111111 is not a card.",
        "https://example.com/list?sort_key=name&page=2&token_type=bearer",
        "Table: 1 250 000 3 450 000 2 100 000.",
        "L'IBAN FR04 3579 2659 5046 3969 0857 772 est refusé.",  # no card inside a bad IBAN
        "IBAN FR77 3000 6000 0112 3456 7890 189",  # nor a phone
    ],
)
def test_new_matching_keeps_these_alone(text: str) -> None:
    expected = "mailto:<EMAIL>" if text.startswith("mailto") else text
    assert scrub(text) == expected


def test_an_iban_shaped_run_of_unknown_countries_is_scrubbed_in_linear_time() -> None:
    _grows_linearly("ZZ00 " * 20_000)


# -- through the plugin host -------------------------------------------------------------


class Masker:
    """A user's scrubber: it replaces a project code name before the bundled one runs."""

    seen: list[str]

    def __init__(self) -> None:
        self.seen = []

    @hookimpl
    def mongars_scrub(self, text: str) -> str | None:
        self.seen.append(text)
        return text.replace("Project Bluebird", "<PROJECT>")


async def test_the_bundled_scrubber_runs_through_an_assistants_host(
    make_assistant: MakeAssistant,
) -> None:
    assistant = await make_assistant("learning")
    assert "learning" in [info.name for info in assistant.plugins.plugin_infos()]
    assert assistant.plugins.scrub("mail bob@example.com") == "mail <EMAIL>"
    assert assistant.plugins.scrub("nothing personal") == "nothing personal"


async def test_a_users_scrubber_runs_before_the_bundled_one(
    make_assistant: MakeAssistant,
) -> None:
    masker = Masker()
    assistant = await make_assistant("learning", ("masker", masker))
    text = "Project Bluebird: call +33 6 12 34 56 78"
    assert assistant.plugins.scrub(text) == "<PROJECT>: call <PHONE>"
    assert masker.seen == [text]  # it saw the raw text: the bundled one had not run yet


class Raising:
    @hookimpl
    def mongars_scrub(self, text: str) -> str | None:
        raise RuntimeError("detector crashed")


class Async:
    @hookimpl
    async def mongars_scrub(self, text: str) -> str | None:
        return text


class WrongType:
    @hookimpl
    def mongars_scrub(self, text: str) -> Any:
        return ["not", "a", "string"]


@pytest.mark.parametrize(
    ("plugin", "error", "words"),
    [
        (Raising(), PluginError, "failed (RuntimeError)"),
        (Async(), HookValidationError, "async"),
        (WrongType(), HookValidationError, "returned list"),
    ],
)
def test_a_failing_scrubber_stops_the_text(
    settings: Settings, plugin: object, error: type[Exception], words: str
) -> None:
    pm = build_plugin_manager(
        settings, load_entrypoints=False, plugins=[("learning", learning), ("bad", plugin)]
    )
    host = PluginHost(pm, settings)
    with pytest.raises(error) as caught:
        host.scrub("mail bob@example.com")
    assert "'bad'" in str(caught.value) and words in str(caught.value)
    assert "bob@example.com" not in str(caught.value)  # never the text it failed on


class QuotesItsInput:
    @hookimpl
    def mongars_scrub(self, text: str) -> str | None:
        text.encode("ascii")  # UnicodeEncodeError's message holds the whole text
        return text


def test_a_scrubber_error_that_quotes_the_text_does_not_carry_it_on(settings: Settings) -> None:
    pm = build_plugin_manager(
        settings, load_entrypoints=False, plugins=[("learning", learning), ("q", QuotesItsInput())]
    )
    with pytest.raises(PluginError) as caught:
        PluginHost(pm, settings).scrub("My card is 4111 1111 1111 1111, café")
    assert "4111" not in str(caught.value) and caught.value.__cause__ is None
    assert "failed (UnicodeEncodeError)" in str(caught.value)
