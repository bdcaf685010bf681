"""Check digits of the numbers the scrubber looks for.

Each function takes the number as written (separators allowed) and says
whether its check digit is right. A number that fails its check is not
personal data the scrubber is sure of, and is left as it is.
"""

from __future__ import annotations

import re

_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]")

IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
    "DO": 28, "EE": 20, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22,
    "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23,
    "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31,
    "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
    "RO": 24, "RS": 22, "SA": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24,
    "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip
"""Length of the IBAN of each country (SWIFT's IBAN registry)."""


def compact(number: str) -> str:
    """``number`` without its spaces, dashes, dots and slashes, upper-cased."""
    return _NOT_ALNUM.sub("", number).upper()


def luhn_valid(number: str) -> bool:
    """The Luhn (mod 10) check of card numbers and Canadian SINs."""
    digits = compact(number)
    if not digits.isdigit() or not digits:
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(number: str) -> bool:
    """ISO 13616: the country's length, and the number mod 97 is 1."""
    iban = compact(number)
    if len(iban) < 15 or len(iban) > 34 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is not None and len(iban) != expected:
        return False
    if not iban.isalnum() or not iban.isascii():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def nir_valid(number: str) -> bool:
    """French social security number (NIR): 13 characters, then a key of 97 - (n mod 97).

    Corsican departments 2A and 2B count as 19 and 18.
    """
    nir = compact(number)
    if len(nir) != 15 or nir[0] not in "12":
        return False
    body = nir[:13].replace("2A", "19", 1) if nir[5:7] == "2A" else nir[:13]
    body = body.replace("2B", "18", 1) if nir[5:7] == "2B" else body
    if not body.isdigit() or not nir[13:].isdigit():
        return False
    return 97 - int(body) % 97 == int(nir[13:])


def bsn_valid(number: str) -> bool:
    """Dutch citizen service number (BSN): the 11-proof (weights 9..2 and -1)."""
    digits = compact(number)
    if len(digits) != 9 or not digits.isdigit() or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_valid(number: str) -> bool:
    """Spanish DNI (8 digits and a letter) or NIE (X, Y or Z, 7 digits and a letter)."""
    value = compact(number)
    if len(value) != 9:
        return False
    head, letter = value[:8], value[8]
    if head[0] in "XYZ":
        head = str("XYZ".index(head[0])) + head[1:]
    if not head.isdigit():
        return False
    return DNI_LETTERS[int(head) % 23] == letter


_CF_ODD = {
    **dict(zip("0123456789", (1, 0, 5, 7, 9, 13, 15, 17, 19, 21), strict=True)),
    **dict(
        zip(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
            (1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10,
             22, 25, 24, 23),
            strict=True,
        )
    ),
}  # fmt: skip


def codice_fiscale_check(first15: str) -> str:
    """The check letter of an Italian codice fiscale, from its first 15 characters."""
    total = 0
    for index, char in enumerate(first15.upper()):
        if index % 2 == 0:  # odd positions, counting from 1
            total += _CF_ODD[char]
        else:
            total += int(char) if char.isdigit() else ord(char) - ord("A")
    return chr(ord("A") + total % 26)


def codice_fiscale_valid(code: str) -> bool:
    value = compact(code)
    if len(value) != 16 or not value.isalnum() or not value.isascii():
        return False
    return codice_fiscale_check(value[:15]) == value[15]


def ssn_plausible(number: str) -> bool:
    """A US SSN has no check digit; only the numbers never issued are ruled out."""
    digits = compact(number)
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"
