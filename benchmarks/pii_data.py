"""Build the labelled set of the PII benchmark (benchmarks/data/pii_labelled.jsonl).

Chat sentences in English and French, each with the spans of personal data it
holds (``start``, ``end``, ``type``), and hard negatives that hold none: dates,
times, prices, order numbers, versions, arithmetic, and numbers with a wrong
check digit. Every number with a check digit is computed here, from a seeded
random generator, so the set is the same on every run:

    .venv/bin/python benchmarks/pii_data.py --write   # rewrite the file
    .venv/bin/python benchmarks/pii_data.py           # check the file is up to date
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mongars_plugins.learning import checks

DATA = Path(__file__).parent / "data" / "pii_labelled.jsonl"
SEED = 20260511

FIRST = [
    "alice",
    "bob",
    "claire",
    "david",
    "emma",
    "francois",
    "hugo",
    "ines",
    "jules",
    "karim",
    "léa",
    "marie",
    "nathan",
    "olivia",
    "pierre",
    "sophie",
    "thomas",
    "yasmine",
]
LAST = [
    "martin",
    "bernard",
    "dubois",
    "smith",
    "johnson",
    "lefebvre",
    "moreau",
    "garcia",
    "müller",
    "schmidt",
    "rossi",
    "tremblay",
    "nguyen",
    "oconnor",
]
DOMAINS = [
    "gmail.com",
    "example.org",
    "orange.fr",
    "free.fr",
    "outlook.com",
    "acme.co.uk",
    "mail.example.de",
    "uni-lyon.fr",
    "proton.me",
    "company.io",
]


def digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def group(value: str, sizes: list[int], sep: str) -> str:
    parts, index = [], 0
    for size in sizes:
        parts.append(value[index : index + size])
        index += size
    if index < len(value):
        parts.append(value[index:])
    return sep.join(part for part in parts if part)


def ascii_name(name: str) -> str:
    return name.replace("é", "e").replace("ü", "u").replace("ç", "c")


# -- values ----------------------------------------------------------------------------


def email(rng: random.Random) -> str:
    first, last = ascii_name(rng.choice(FIRST)), ascii_name(rng.choice(LAST))
    shape = rng.randrange(6)
    local = [
        f"{first}.{last}",
        f"{first}_{last}{rng.randrange(10, 99)}",
        f"{first[0]}{last}",
        f"{first}.{last}+{rng.choice(['news', 'shop', 'work'])}",
        f"{first.capitalize()}.{last.capitalize()}",
        f"{last}-{first}",
    ][shape]
    return f"{local}@{rng.choice(DOMAINS)}"


def phone(rng: random.Random) -> tuple[str, str]:
    """A phone number and the name of its format."""
    fr = "6" + digits(rng, 8) if rng.random() < 0.6 else rng.choice("12345") + digits(rng, 8)
    us_area = str(rng.randrange(201, 990))
    us_exchange = str(rng.randrange(200, 999))
    us_line = digits(rng, 4)
    uk_mobile = "7700" + digits(rng, 6)
    de_mobile = "15" + rng.choice("12579") + digits(rng, 8)
    formats: list[tuple[str, Callable[[], str]]] = [
        ("intl-fr", lambda: "+33 " + group(fr, [1, 2, 2, 2, 2], " ")),
        ("intl-fr-dots", lambda: "+33." + group(fr, [1, 2, 2, 2, 2], ".")),
        ("intl-fr-compact", lambda: "+33" + fr),
        ("intl-fr-trunk", lambda: "+33 (0)" + group(fr, [1, 2, 2, 2, 2], " ")),
        ("intl-us", lambda: f"+1 {us_area}-{us_exchange}-{us_line}"),
        ("intl-us-parens", lambda: f"+1 ({us_area}) {us_exchange}-{us_line}"),
        ("intl-uk", lambda: "+44 20 " + group(digits(rng, 8), [4, 4], " ")),
        ("intl-uk-mobile", lambda: "+44 " + group(uk_mobile, [4, 6], " ")),
        ("intl-de", lambda: "+49 30 " + digits(rng, 8)),
        ("intl-de-dashes", lambda: "+49-89-" + digits(rng, 7)),
        ("intl-de-mobile", lambda: "+49 " + group(de_mobile, [3, 8], " ")),
        ("intl-es", lambda: "+34 6" + group(digits(rng, 8), [2, 2, 2, 2], " ")),
        ("intl-it", lambda: "+39 06 " + group(digits(rng, 8), [4, 4], " ")),
        ("intl-jp", lambda: "+81 3-" + group(digits(rng, 8), [4, 4], "-")),
        ("intl-in", lambda: "+91 9" + group(digits(rng, 9), [4, 5], " ")),
        ("intl-00", lambda: "0033 " + group(fr, [1, 2, 2, 2, 2], " ")),
        ("fr-spaces", lambda: "0" + group(fr, [1, 2, 2, 2, 2], " ")),
        ("fr-dots", lambda: "0" + group(fr, [1, 2, 2, 2, 2], ".")),
        ("fr-compact", lambda: "0" + fr),
        ("fr-dashes", lambda: "0" + group(fr, [1, 2, 2, 2, 2], "-")),
        ("us-parens", lambda: f"({us_area}) {us_exchange}-{us_line}"),
        ("us-dashes", lambda: f"{us_area}-{us_exchange}-{us_line}"),
        ("us-dots", lambda: f"{us_area}.{us_exchange}.{us_line}"),
        ("us-tollfree", lambda: f"1-800-{us_exchange}-{us_line}"),
        ("ca", lambda: f"({rng.choice(['604', '514', '416', '613'])}) {us_exchange}-{us_line}"),
        ("uk-london", lambda: "020 " + group(digits(rng, 8), [4, 4], " ")),
        ("uk-mobile", lambda: "0" + group(uk_mobile, [4, 6], " ")),
        ("uk-city", lambda: "0113 " + group(digits(rng, 7), [3, 4], " ")),
        ("uk-area5", lambda: "01632 " + digits(rng, 6)),
        ("de-berlin", lambda: "030 " + digits(rng, 8)),
        ("de-slash", lambda: "089/" + digits(rng, 7)),
        ("de-parens", lambda: "(0221) " + digits(rng, 7)),
        ("de-mobile", lambda: "0" + group(de_mobile, [3, 8], " ")),
        ("de-mobile-dash", lambda: "0" + group(de_mobile, [3, 8], "-")),
    ]
    name, make = rng.choice(formats)
    return make(), name


def with_iban_check(country: str, bban: str) -> str:
    for check in range(100):
        candidate = f"{country}{check:02d}{bban}"
        if checks.iban_valid(candidate):
            return candidate
    raise AssertionError("no check digits")


def iban(rng: random.Random) -> tuple[str, str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    country = rng.choice(["FR", "DE", "GB", "ES", "IT", "NL", "BE", "CH", "LU", "PT"])
    bban = {
        "FR": lambda: digits(rng, 23),
        "DE": lambda: digits(rng, 18),
        "GB": lambda: "".join(rng.choice(letters) for _ in range(4)) + digits(rng, 14),
        "ES": lambda: digits(rng, 20),
        "IT": lambda: rng.choice(letters) + digits(rng, 22),
        "NL": lambda: "".join(rng.choice(letters) for _ in range(4)) + digits(rng, 10),
        "BE": lambda: digits(rng, 12),
        "CH": lambda: digits(rng, 17),
        "LU": lambda: digits(rng, 16),
        "PT": lambda: digits(rng, 21),
    }[country]()
    value = with_iban_check(country, bban)
    if rng.random() < 0.55:
        return group(value, [4] * 8, " "), f"{country}-spaced"
    return value, f"{country}-compact"


def with_luhn(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + digits(rng, length - len(prefix) - 1)
    for last in "0123456789":
        if checks.luhn_valid(body + last):
            return body + last
    raise AssertionError("no Luhn digit")


def card(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(["visa", "mastercard", "mastercard2", "amex", "discover", "visa19"])
    number = {
        "visa": lambda: with_luhn("4", 16, rng),
        "mastercard": lambda: with_luhn(str(rng.randrange(51, 56)), 16, rng),
        "mastercard2": lambda: with_luhn(str(rng.randrange(2221, 2721)), 16, rng),
        "amex": lambda: with_luhn(rng.choice(["34", "37"]), 15, rng),
        "discover": lambda: with_luhn("6011", 16, rng),
        "visa19": lambda: with_luhn("4", 19, rng),
    }[kind]()
    sizes = [4, 6, 5] if kind == "amex" else [4, 4, 4, 4, 3]
    style = rng.choice(["spaces", "dashes", "compact"])
    sep = {"spaces": " ", "dashes": "-", "compact": ""}[style]
    return (group(number, sizes, sep) if sep else number), f"{kind}-{style}"


def ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 8, 34, 51, 81, 145, 203, 255])
    return ".".join(
        str(x) for x in [first, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255)]
    )


def ipv6(rng: random.Random) -> tuple[str, str]:
    hextets = [f"{rng.randrange(65536):x}" for _ in range(8)]
    shape = rng.choice(["full", "compressed", "link-local", "loopback", "mapped", "padded"])
    return {
        "full": ":".join(hextets),
        "padded": "2001:0db8:" + ":".join(f"{int(h, 16):04x}" for h in hextets[2:]),
        "compressed": f"2001:db8::{hextets[5]}:{hextets[6]}:{hextets[7]}",
        "link-local": f"fe80::{hextets[4]}:{hextets[5]}:{hextets[6]}:{hextets[7]}",
        "loopback": "::1",
        "mapped": f"::ffff:{ipv4(rng)}",
    }[shape], f"ipv6-{shape}"


def secret(rng: random.Random, length: int = 16) -> str:
    return "".join(
        rng.choice("abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        for _ in range(length)
    )


def nir(rng: random.Random) -> str:
    body = (
        rng.choice("12")
        + f"{rng.randrange(40, 100):02d}"
        + f"{rng.randrange(1, 13):02d}"
        + f"{rng.randrange(1, 96):02d}"
        + f"{rng.randrange(1, 990):03d}"
        + f"{rng.randrange(1, 999):03d}"
    )
    return body + f"{97 - int(body) % 97:02d}"


def sin(rng: random.Random) -> str:
    return with_luhn(rng.choice("1234567"), 9, rng)


def bsn(rng: random.Random) -> str:
    while True:
        value = rng.choice("123456789") + digits(rng, 8)
        if checks.bsn_valid(value):
            return value


def dni(rng: random.Random) -> str:
    number = rng.randrange(10_000_000, 99_999_999)
    return f"{number}{checks.DNI_LETTERS[number % 23]}"


def nie(rng: random.Random) -> str:
    lead = rng.choice("XYZ")
    number = rng.randrange(1_000_000, 9_999_999)
    return f"{lead}{number}{checks.DNI_LETTERS[int(str('XYZ'.index(lead)) + str(number)) % 23]}"


def codice_fiscale(rng: random.Random) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    head = (
        "".join(rng.choice(letters) for _ in range(6))
        + f"{rng.randrange(100):02d}"
        + rng.choice("ABCDEHLMPRST")
        + f"{rng.randrange(1, 72):02d}"
        + rng.choice(letters)
        + f"{rng.randrange(1000):03d}"
    )
    return head + checks.codice_fiscale_check(head)


def ssn(rng: random.Random) -> str:
    return (
        f"{rng.randrange(1, 900):03d}".replace("666", "667")
        + f"-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"
    )


def gov_id(rng: random.Random) -> tuple[str, str, str]:
    """(value, format, the words that introduce it in a sentence)."""
    kind = rng.choice(
        [
            "nir",
            "nir-spaced",
            "sin",
            "sin-compact",
            "bsn",
            "bsn-dots",
            "dni",
            "dni-dash",
            "nie",
            "cf",
            "ssn",
            "ssn-compact",
        ]
    )
    if kind.startswith("nir"):
        value = nir(rng)
        if kind == "nir-spaced":
            value = group(value, [1, 2, 2, 2, 3, 3, 2], " ")
        return (
            value,
            kind,
            rng.choice(
                [
                    "my social security number (NIR)",
                    "mon numéro de sécu",
                    "mon NIR",
                    "le numéro de sécurité sociale de ma fille",
                ]
            ),
        )
    if kind.startswith("sin"):
        value = sin(rng)
        if kind == "sin":
            value = group(value, [3, 3, 3], rng.choice([" ", "-"]))
        return value, kind, rng.choice(["my SIN", "mon NAS", "my social insurance number"])
    if kind.startswith("bsn"):
        value = bsn(rng)
        if kind == "bsn-dots":
            value = group(value, [4, 2, 3], ".")
        return value, kind, rng.choice(["my BSN", "mijn burgerservicenummer", "BSN"])
    if kind in ("dni", "dni-dash"):
        value = dni(rng)
        if kind == "dni-dash":
            value = value[:8] + "-" + value[8]
        return value, kind, rng.choice(["my DNI", "mi DNI", "mon DNI espagnol"])
    if kind == "nie":
        return nie(rng), kind, rng.choice(["my NIE", "mon NIE", "mi NIE"])
    if kind == "cf":
        return codice_fiscale(rng), kind, rng.choice(["my codice fiscale", "mon codice fiscale"])
    value = ssn(rng)
    if kind == "ssn-compact":
        value = value.replace("-", "")
    return value, kind, rng.choice(["my SSN", "SSN", "my social security number"])


# -- sentences ---------------------------------------------------------------------------

TEMPLATES: dict[str, list[str]] = {
    "EMAIL": [
        "en|You can reach me at {} if the form breaks again.",
        "en|Send the invoice to {}, please.",
        "en|My work address is {} but I rarely check it.",
        "en|Can you draft a reply to {} saying I'll be late?",
        "en|Email: {}",
        "fr|Tu peux m'écrire à {} pour la suite.",
        "fr|Mon adresse mail c'est {}.",
        "fr|Envoie le devis à {} avant vendredi.",
        "fr|J'ai reçu un message de {} hier soir, c'est du phishing ?",
        "fr|Contact : {} (répond vite)",
    ],
    "PHONE": [
        "en|Call me on {} after six.",
        "en|My number is {}, text before calling.",
        "en|The plumber's number is {} if you need it.",
        "en|Can you remind me to ring {} tomorrow?",
        "en|Phone: {}",
        "fr|Appelle-moi au {} ce soir.",
        "fr|Mon portable c'est le {}.",
        "fr|Le numéro du cabinet est {}, ils ouvrent à 9h.",
        "fr|Rappelle le {} pour confirmer le rendez-vous.",
        "fr|Tél. : {}",
    ],
    "IBAN": [
        "en|Please wire the deposit to {} by Friday.",
        "en|My IBAN is {} — is that the right format?",
        "en|The landlord gave me {} for the rent.",
        "en|IBAN: {}",
        "fr|Voici mon IBAN : {}.",
        "fr|Fais le virement sur {} stp.",
        "fr|Le RIB de l'asso c'est {} si tu veux donner.",
        "fr|Est-ce que {} est un IBAN valide ?",
    ],
    "CARD": [
        "en|I paid with my card {} and got charged twice.",
        "en|Card number {}, expiry 09/27.",
        "en|Is {} a Visa or a Mastercard?",
        "en|Why was {} declined at the checkout?",
        "fr|Ma carte {} a été refusée.",
        "fr|Le numéro de carte c'est {}, expire fin 2026.",
        "fr|J'ai fait opposition sur la carte {} hier.",
        "fr|Carte : {}",
    ],
    "IP": [
        "en|The server at {} stopped answering this morning.",
        "en|My home IP is {}, can you whitelist it?",
        "en|ssh into {} and restart nginx.",
        "en|Why does ping {} time out?",
        "fr|Le serveur {} ne répond plus depuis ce matin.",
        "fr|Mon adresse IP publique est {}.",
        "fr|Ajoute {} à la liste blanche du pare-feu.",
        "fr|Connexion refusée depuis {}, c'est normal ?",
    ],
    "ID": [
        "en|For the form, {} is {}.",
        "en|Here is {}: {}",
        "en|Can you fill in {} ({}) on the application?",
        "fr|Pour le dossier, {} est {}.",
        "fr|Voici {} : {}",
        "fr|Tu peux recopier {} {} dans le formulaire ?",
    ],
}

CREDENTIAL_URLS = [
    ("postgres", "db.internal:5432/app"),
    ("https", "git.example.com/team/repo.git"),
    ("ftp", "files.example.org/upload"),
    ("redis", "cache.local:6379/0"),
    ("mongodb+srv", "cluster0.mongodb.net/test"),
    ("amqp", "rabbit.example.com:5672/"),
]
CREDENTIAL_TEXT = [
    "en|My connection string is {}, why does it fail?",
    "en|The deploy uses {} — is that safe?",
    "en|Try {} in the config.",
    "fr|La chaîne de connexion est {} mais ça plante.",
    "fr|J'ai mis {} dans le fichier .env.",
    "fr|Pourquoi {} renvoie une 401 ?",
]

NEGATIVES = [
    "en|The meeting moved to 12/03/2024 at 10:30.",
    "en|It happened on 2024-03-15 around 14:05:33.",
    "fr|Rendez-vous le 03/04/2025 à 14h30.",
    "fr|Le contrat commence le 01.02.2024 10:30 précises.",
    "en|March 3, 2024 was a Sunday.",
    "en|The flight leaves at 06:45 and lands at 09:10.",
    "fr|Il est 23:59:59, bonne année !",
    "en|That laptop costs $1,299.99 plus tax.",
    "fr|Le loyer est de 1 250,00 € par mois.",
    "fr|J'ai payé 2 499 € pour la cuisine.",
    "en|Shipping is €12.50 and the total is €134.90.",
    "en|They raised 1 250 000 dollars in the seed round.",
    "en|What is 17 * 23 = 391 in binary?",
    "en|Check: 1234 + 5678 = 6912.",
    "fr|Combien font 123456 * 789 ?",
    "en|Compute 2024 - 1987 - 12.",
    "en|My order #48213-77 hasn't arrived.",
    "fr|Commande n° 2024-001234 toujours en attente.",
    "en|Ticket 7781234 was closed without a fix.",
    "en|Invoice INV-2024-00042 is overdue.",
    "en|Tracking number 1Z999AA10123456784 shows delivered.",
    "fr|Ma référence client est 00458712.",
    "en|Upgrade to v2.10.3 fixed it.",
    "en|I'm on Python 3.11.4 with pip 24.0.",
    "en|Windows build 10.0.19045.3803 crashes on boot.",
    "en|Pin the package to version 1.2.3.4 for now.",
    "fr|La version 4.18.2 casse la compatibilité.",
    "en|The ISBN is 978-3-16-148410-0.",
    "fr|Le code postal est 75008, bâtiment B.",
    "en|Room 1204, floor 12.",
    "fr|Le vol AF 1234 est retardé.",
    "en|The final score was 10-2.",
    "en|Our ZIP code is 90210-1234.",
    "fr|Coordonnées : 48.8566, 2.3522.",
    "en|The MAC address is 00:1A:2B:3C:4D:5E.",
    "en|Use std::vector instead of a raw array.",
    "en|The screen ratio is 16:9 and the timer shows 12:30:45.",
    "fr|Le lot 12 34 56 78 est épuisé.",
    "en|Population: 67 390 000 people.",
    "en|Follow @mongars_dev on Mastodon.",
    "en|Use icon@2x.png for retina screens.",
    "en|Email me later, I don't have my address handy.",
    "fr|Je n'ai pas de numéro de téléphone fixe.",
    "en|My SSN? I'd rather not share it.",
    "en|The year 1985 and the code 0612 mean nothing.",
    "fr|Le colis pèse 12,5 kg et mesure 120 x 80 cm.",
    "en|Set the timeout to 30000 ms and retries to 5.",
    "en|The build took 1:23:45 on the CI.",
    "fr|Mon score au test : 18/20.",
    "en|Serial 0000 1111 2222 on the back.",
    "en|The hash starts with 5f4dcc3b5aa765d61d8327deb882cf99.",
    "en|Port 8080 is busy, use 8443.",
    "fr|Les chapitres 1.2.3 et 4.5.6 sont à relire.",
    "en|Temperatures ranged from -12 to +35 degrees.",
    "fr|Le match est à 20h45, score final 3-1.",
    "en|Download it from https://example.com/files?page=2&sort=asc.",
    "fr|Le lien https://docs.example.org/guide#install marche.",
    "en|Clone git@github.com:example/repo.git to start.",
    "en|Connect to postgres://db.internal:5432/app without a password.",
    "en|The range 192.168.1 is incomplete.",
    "en|Interest went up by +0.25 points.",
]


def fill(
    template: str, values: list[tuple[str | None, str]]
) -> tuple[str, list[dict[str, object]]]:
    """``template``'s ``{}`` slots filled with ``values`` (type None: not labelled)."""
    pieces = template.split("{}")
    assert len(pieces) == len(values) + 1, template
    text, spans = pieces[0], []
    for (kind, value), after in zip(values, pieces[1:], strict=True):
        if kind is not None:
            spans.append({"start": len(text), "end": len(text) + len(value), "type": kind})
        text += value + after
    return text, spans


def split_lang(template: str) -> tuple[str, str]:
    lang, body = template.split("|", 1)
    return lang, body


def build(rng: random.Random) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []

    def add(template: str, values: list[tuple[str | None, str]], fmt: str) -> None:
        lang, body = split_lang(template)
        text, spans = fill(body, values)
        rows.append({"text": text, "lang": lang, "format": fmt, "spans": spans})

    for _ in range(45):
        add(rng.choice(TEMPLATES["EMAIL"]), [("EMAIL", email(rng))], "email")
    for _ in range(110):
        value, fmt = phone(rng)
        add(rng.choice(TEMPLATES["PHONE"]), [("PHONE", value)], fmt)
    for _ in range(45):
        value, fmt = iban(rng)
        add(rng.choice(TEMPLATES["IBAN"]), [("IBAN", value)], fmt)
    for _ in range(50):
        value, fmt = card(rng)
        add(rng.choice(TEMPLATES["CARD"]), [("CARD", value)], fmt)
    for _ in range(50):
        if rng.random() < 0.5:
            value, fmt = ipv4(rng), "ipv4"
            if rng.random() < 0.3:
                fmt = "ipv4-port"
                add(rng.choice(TEMPLATES["IP"]).replace("{}", "{}:8080"), [("IP", value)], fmt)
                continue
        else:
            value, fmt = ipv6(rng)
        add(rng.choice(TEMPLATES["IP"]), [("IP", value)], fmt)
    for _ in range(45):
        template = rng.choice(CREDENTIAL_TEXT)
        scheme, rest = rng.choice(CREDENTIAL_URLS)
        user = rng.choice(["admin", "deploy", "root", ascii_name(rng.choice(FIRST))])
        if rng.random() < 0.5:
            userinfo = f"{user}:{secret(rng, rng.randrange(8, 20))}"
            prefix = f"{scheme}://"
            lang, body = split_lang(template)
            text, spans = fill(
                body.replace("{}", "{}{}{}"),
                [(None, prefix), ("CREDENTIAL", userinfo), (None, "@" + rest)],
            )
            rows.append({"text": text, "lang": lang, "format": "url-userinfo", "spans": spans})
        else:
            name = rng.choice(["token", "api_key", "password", "access_token", "apikey", "secret"])
            value = secret(rng, rng.randrange(12, 40))
            base = rng.choice(
                ["https://api.example.com/v1/items", "https://hooks.example.org/notify"]
            )
            lang, body = split_lang(template)
            sep = "?" if rng.random() < 0.7 else "?page=2&"
            text, spans = fill(
                body.replace("{}", "{}{}{}"),
                [
                    (None, f"{base}{sep}{name}="),
                    ("CREDENTIAL", value),
                    (None, "&lang=fr" if rng.random() < 0.4 else ""),
                ],
            )
            rows.append({"text": text, "lang": lang, "format": f"query-{name}", "spans": spans})
    for _ in range(85):
        value, fmt, words = gov_id(rng)
        template = rng.choice(TEMPLATES["ID"])
        add(template, [(None, words), ("ID", value)], fmt)

    # two kinds in one message
    for _ in range(30):
        phone_value, _fmt = phone(rng)
        mail = email(rng)
        template = rng.choice(
            [
                "en|Contact: {} or {}.",
                "fr|Tu peux me joindre au {} ou par mail à {}.",
                "en|Reach Claire at {} (work) — her email is {}.",
            ]
        )
        add(template, [("PHONE", phone_value), ("EMAIL", mail)], "phone+email")
    for _ in range(15):
        value, _fmt = iban(rng)
        card_value, _ = card(rng)
        add(
            rng.choice(
                [
                    "en|Refund {} or the card {}, whichever is easier.",
                    "fr|Rembourse sur {} ou sur la carte {}.",
                ]
            ),
            [("IBAN", value), ("CARD", card_value)],
            "iban+card",
        )
    for _ in range(10):
        scheme = rng.choice(["http", "https", "postgres"])
        userinfo = f"{rng.choice(['admin', 'root'])}:{secret(rng, 12)}"
        ip = ipv4(rng)
        add(
            "en|Use {}{}{}{}{} for the staging box.",
            [
                (None, f"{scheme}://"),
                ("CREDENTIAL", userinfo),
                (None, "@"),
                ("IP", ip),
                (None, "/admin"),
            ],
            "credential+ip",
        )

    negatives: list[tuple[str, str]] = [(t, "hard-negative") for t in NEGATIVES]
    for _ in range(20):  # card-shaped numbers that fail the Luhn check
        number = with_luhn("4", 16, rng)
        wrong = number[:-1] + str((int(number[-1]) + rng.randrange(1, 10)) % 10)
        negatives.append(
            (f"en|Is {group(wrong, [4, 4, 4, 4], ' ')} a valid card number?", "bad-luhn")
        )
    for _ in range(20):  # IBANs with wrong check digits
        value, _fmt = iban(rng)
        compact = checks.compact(value)
        check = (int(compact[2:4]) + rng.randrange(1, 90)) % 100
        wrong = compact[:2] + f"{check:02d}" + compact[4:]
        if checks.iban_valid(wrong):
            continue
        negatives.append(
            (f"fr|L'IBAN {group(wrong, [4] * 8, ' ')} est refusé par la banque.", "bad-iban")
        )
    for _ in range(10):  # NIRs with a wrong key
        value = nir(rng)
        wrong = value[:13] + f"{(int(value[13:]) + rng.randrange(1, 96)) % 97 + 1:02d}"
        if not checks.nir_valid(wrong):
            negatives.append((f"fr|Le numéro {wrong} est rejeté par le site.", "bad-nir"))
    for _ in range(10):  # DNIs with a wrong letter
        value = dni(rng)
        letter = checks.DNI_LETTERS[(checks.DNI_LETTERS.index(value[8]) + 1) % 23]
        negatives.append((f"en|The code {value[:8]}{letter} was rejected.", "bad-dni"))
    for _ in range(10):  # nine digits without an id keyword
        negatives.append(
            (
                f"en|Reference {rng.choice('123456789')}{digits(rng, 8)} for the parcel.",
                "nine-digits",
            )
        )
    for _ in range(10):  # SSN-shaped without the keyword
        negatives.append(
            (
                f"en|Part number {rng.randrange(100, 900)}-{rng.randrange(10, 99)}-"
                f"{rng.randrange(1000, 9999)} is out of stock.",
                "ssn-shape",
            )
        )
    for _ in range(10):  # dates and times in many formats
        day, month, year = rng.randrange(1, 29), rng.randrange(1, 13), rng.randrange(1990, 2030)
        hour, minute, second = rng.randrange(24), rng.randrange(60), rng.randrange(60)
        negatives.append(
            (
                rng.choice(
                    [
                        f"en|See you on {month:02d}/{day:02d}/{year} at {hour:02d}:{minute:02d}.",
                        f"fr|Le {day:02d}.{month:02d}.{year} {hour:02d}:{minute:02d}, c'est noté.",
                        f"en|Logged at {year}-{month:02d}-{day:02d} "
                        f"{hour:02d}:{minute:02d}:{second:02d}.",
                    ]
                ),
                "date",
            )
        )
    for template, fmt in negatives:
        lang, body = split_lang(template)
        rows.append({"text": body, "lang": lang, "format": fmt, "spans": []})
    rows.extend(separators_and_leaks(rng))
    return rows


FULL_WIDTH = {code: code + 0xFEE0 for code in range(0x21, 0x7F)}


def separators_and_leaks(rng: random.Random) -> list[dict[str, object]]:
    """Formats a review found leaking: odd separators, numbers after numbers, odd URLs."""
    rows: list[dict[str, object]] = []

    def add(template: str, values: list[tuple[str | None, str]], fmt: str) -> None:
        lang, body = split_lang(template)
        text, spans = fill(body, values)
        rows.append({"text": text, "lang": lang, "format": fmt, "spans": spans})

    def us() -> tuple[str, str, str]:
        return str(rng.randrange(201, 990)), str(rng.randrange(200, 999)), digits(rng, 4)

    def fr() -> str:
        return "6" + digits(rng, 8)

    phones: list[tuple[str, Callable[[], str]]] = [
        ("fr-nbsp", lambda: "0" + group(fr(), [1, 2, 2, 2, 2], "\u00a0")),
        ("intl-fr-nnbsp", lambda: "+33\u202f" + group(fr(), [1, 2, 2, 2, 2], "\u202f")),
        ("fr-double-space", lambda: "0" + group(fr(), [1, 2, 2, 2, 2], "  ")),
        ("us-en-dash", lambda: "\u2013".join(us())),
        ("us-nb-hyphen", lambda: "\u2011".join(us())),
        ("us-slash", lambda: "{}/{}-{}".format(*us())),
        ("intl-us-ext", lambda: "+1-{}-{}-{}".format(*us()) + f"x{rng.randrange(10, 9999)}"),
        ("us-ext", lambda: "{}-{}-{}".format(*us()) + f" ext. {rng.randrange(10, 999)}"),
        ("intl-full-width", lambda: ("+33" + fr()).translate(FULL_WIDTH)),
    ]
    for _ in range(45):
        fmt, make = rng.choice(phones)
        add(rng.choice(TEMPLATES["PHONE"]), [("PHONE", make())], fmt)
    for _ in range(10):  # a French number right after another number
        add(
            rng.choice(["en|Press {} then call {}.", "fr|Tape {} puis appelle le {}."]),
            [(None, str(rng.randrange(1, 10))), ("PHONE", "0" + group(fr(), [1, 2, 2, 2, 2], " "))],
            "phone-after-number",
        )
    for _ in range(40):
        number = with_luhn("4", 16, rng) if rng.random() < 0.5 else with_luhn("51", 16, rng)
        style = rng.choice(["dots", "slashes", "double-space", "nbsp", "after-number"])
        sep = {"dots": ".", "slashes": "/", "double-space": "  ", "nbsp": "\u00a0"}.get(style, " ")
        value = group(number, [4, 4, 4, 4], sep)
        if style == "after-number":
            add(
                rng.choice(
                    [
                        "en|Room {} — my card is {}.",
                        "en|I have 2 cards: {} {}",
                        "fr|Page {} : la carte {} a été débitée.",
                    ]
                ),
                [(None, str(rng.randrange(1, 20))), ("CARD", value)],
                "card-after-number",
            )
        else:
            add(rng.choice(TEMPLATES["CARD"]), [("CARD", value)], f"card-{style}")
    for _ in range(15):
        value, _fmt = iban(rng)
        dashed = group(checks.compact(value), [4] * 8, rng.choice(["-", "\u00a0"]))
        add(rng.choice(TEMPLATES["IBAN"]), [("IBAN", dashed)], "iban-dashes-or-nbsp")
    for _ in range(15):
        first, last = ascii_name(rng.choice(FIRST)), ascii_name(rng.choice(LAST))
        value = rng.choice(
            [f'"{first} {last}"@example.com', f"{first}@例え.jp", f"{first}.{last}@münchen.de"]
        )
        add(rng.choice(TEMPLATES["EMAIL"]), [("EMAIL", value)], "email-quoted-or-idn")
    for _ in range(30):
        template = rng.choice(CREDENTIAL_TEXT)
        lang, body = split_lang(template)
        shape = rng.choice(["empty-user", "at-in-password", "no-scheme", "prefixed-param"])
        password = secret(rng, rng.randrange(8, 16))
        if shape == "empty-user":
            values = [(None, "redis://"), ("CREDENTIAL", f":{password}"), (None, "@cache:6379")]
        elif shape == "at-in-password":
            values = [
                (None, "postgres://"),
                ("CREDENTIAL", f"admin:{password[:4]}@{password[4:]}"),
                (None, "@db.internal/app"),
            ]
        elif shape == "no-scheme":
            values = [(None, ""), ("CREDENTIAL", f"deploy:{password}"), (None, "@db.example.com")]
        else:
            name = rng.choice(["auth_token", "X-Amz-Signature", "access_key", "private_token"])
            values = [
                (None, f"https://files.example.com/a.zip?{name}="),
                ("CREDENTIAL", password),
                (None, ""),
            ]
        text, spans = fill(body.replace("{}", "{}{}{}"), values)
        rows.append({"text": text, "lang": lang, "format": f"credential-{shape}", "spans": spans})
    for text in [
        "en|The float 0.4111111111111111 is not a card.",
        "en|Open https://example.com/list?sort_key=name&page=2&token_type=bearer to see it.",
        "fr|Tableau : 1 250 000 3 450 000 2 100 000 habitants.",
        "fr|Le prix est de 1\u202f250,00\u00a0€ et le rendez-vous le 12\u201303\u20132024.",
        "en|Pages 10\u201312 and 3 4 5 6 are missing.",
        "en|Write to me by mail: I have no address.",
    ]:
        lang, body = split_lang(text)
        rows.append({"text": body, "lang": lang, "format": "hard-negative-separators", "spans": []})
    return rows


def render(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--write", action="store_true", help="rewrite the labelled set")
    args = parser.parse_args()
    content = render(build(random.Random(SEED)))
    if args.write:
        DATA.parent.mkdir(exist_ok=True)
        DATA.write_text(content)
        print(f"wrote {len(content.splitlines())} lines to {DATA}")
        return 0
    if not DATA.exists() or DATA.read_text() != content:
        print(f"{DATA} is out of date: run with --write", file=sys.stderr)
        return 1
    print(f"{DATA} is up to date ({len(content.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
