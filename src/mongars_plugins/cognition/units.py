"""Unit conversions found in free text: length, mass, volume, speed, time, temperature.

:func:`find_conversions` reads "5 km to miles", "convert 100 °F into C",
"how many feet in 3 meters" and "how many centimetres is 5 feet". Conversion
factors are exact fractions (the mile is 1609.344 m by definition), so only
the final rounding to six significant digits loses precision.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from mongars_core.types import ReasoningHint

MAX_AMOUNT_DIGITS = 15
SIGNIFICANT_DIGITS = 6


@dataclass(frozen=True)
class Unit:
    """A unit: ``base = value * factor + offset`` in its dimension's base unit."""

    dimension: str
    singular: str
    plural: str
    factor: Fraction
    offset: Fraction = Fraction(0)


_F = Fraction
_METRE_PER_MILE = _F("1609.344")
_KG_PER_POUND = _F("0.45359237")
_LITRE_PER_GALLON = _F("3.785411784")
_CELSIUS_OFFSET = _F("273.15")

# Each entry: a unit and the spellings a user may write, matched case-insensitively.
_UNITS: list[tuple[Unit, str]] = [
    (Unit("length", "km", "km", _F(1000)), "km|kms|kilometer|kilometers|kilometre|kilometres"),
    (Unit("length", "m", "m", _F(1)), "m|meter|meters|metre|metres"),
    (Unit("length", "cm", "cm", _F(1, 100)), "cm|centimeter|centimeters|centimetre|centimetres"),
    (Unit("length", "mm", "mm", _F(1, 1000)), "mm|millimeter|millimeters|millimetre|millimetres"),
    (Unit("length", "mile", "miles", _METRE_PER_MILE), "mi|mile|miles"),
    (Unit("length", "yard", "yards", _F("0.9144")), "yd|yds|yard|yards"),
    (Unit("length", "foot", "feet", _F("0.3048")), "ft|foot|feet"),
    (Unit("length", "inch", "inches", _F("0.0254")), "in|inch|inches"),
    (Unit("mass", "tonne", "tonnes", _F(1000)), "tonne|tonnes|metric ton|metric tons"),
    (Unit("mass", "kg", "kg", _F(1)), "kg|kgs|kilo|kilos|kilogram|kilograms"),
    (Unit("mass", "g", "g", _F(1, 1000)), "g|gram|grams|gramme|grammes"),
    (Unit("mass", "mg", "mg", _F(1, 1_000_000)), "mg|milligram|milligrams"),
    (Unit("mass", "pound", "pounds", _KG_PER_POUND), "lb|lbs|pound|pounds"),
    (Unit("mass", "ounce", "ounces", _KG_PER_POUND / 16), "oz|ounce|ounces"),
    (Unit("volume", "L", "L", _F(1)), "l|liter|liters|litre|litres"),
    (Unit("volume", "mL", "mL", _F(1, 1000)), "ml|milliliter|milliliters|millilitre|millilitres"),
    (Unit("volume", "gallon", "gallons", _LITRE_PER_GALLON), "gal|gallon|gallons"),
    (Unit("volume", "quart", "quarts", _LITRE_PER_GALLON / 4), "qt|quart|quarts"),
    (Unit("volume", "pint", "pints", _LITRE_PER_GALLON / 8), "pt|pint|pints"),
    (Unit("volume", "cup", "cups", _LITRE_PER_GALLON / 16), "cup|cups"),
    (
        Unit("volume", "fluid ounce", "fluid ounces", _LITRE_PER_GALLON / 128),
        "fl oz|fluid ounce|fluid ounces",
    ),
    (
        Unit("volume", "tablespoon", "tablespoons", _LITRE_PER_GALLON / 256),
        "tbsp|tablespoon|tablespoons",
    ),
    (Unit("volume", "teaspoon", "teaspoons", _LITRE_PER_GALLON / 768), "tsp|teaspoon|teaspoons"),
    (
        Unit("speed", "km/h", "km/h", _F(1000, 3600)),
        "km/h|kmh|kph|kilometers per hour|kilometres per hour",
    ),
    (Unit("speed", "mph", "mph", _METRE_PER_MILE / 3600), "mph|miles per hour|mile per hour"),
    (Unit("speed", "m/s", "m/s", _F(1)), "m/s|meters per second|metres per second"),
    (Unit("speed", "knot", "knots", _F(1852, 3600)), "knot|knots|kn|kt"),
    (Unit("time", "second", "seconds", _F(1)), "s|sec|secs|second|seconds"),
    (Unit("time", "minute", "minutes", _F(60)), "min|mins|minute|minutes"),
    (Unit("time", "hour", "hours", _F(3600)), "h|hr|hrs|hour|hours"),
    (Unit("time", "day", "days", _F(86400)), "day|days"),
    (Unit("time", "week", "weeks", _F(604800)), "wk|wks|week|weeks"),
    (Unit("temperature", "°C", "°C", _F(1), _CELSIUS_OFFSET), "c|celsius|centigrade"),
    (Unit("temperature", "°F", "°F", _F(5, 9), _CELSIUS_OFFSET - _F(160, 9)), "f|fahrenheit"),
    (Unit("temperature", "K", "K", _F(1)), "k|kelvin|kelvins"),
]

_BY_ALIAS: dict[str, Unit] = {
    alias: unit for unit, aliases in _UNITS for alias in aliases.split("|")
}

_DEGREE = r"(?:°|º|degrees?\s+|deg\s+)"
_ALIASES = "|".join(
    re.escape(alias).replace(r"\ ", r"\s+") for alias in sorted(_BY_ALIAS, key=len, reverse=True)
)
# "/" in the look-ahead keeps "km" from matching the start of "km/h".
_UNIT = rf"(?:{_DEGREE}\s*)?(?:{_ALIASES})(?![\w/])"
_AMOUNT = r"[-−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|[-−]?\.\d+"

_CONVERSIONS = [
    # "5 km to miles", "convert 100 °F into C", "3 hours = ? minutes"
    re.compile(
        rf"(?<![\w.,])(?P<amount>{_AMOUNT})\s*(?P<src>{_UNIT})\s+"
        rf"(?:to|in|into|as|=|is\s+how\s+many|are\s+how\s+many|equals?\s+how\s+many"
        rf"|is\s+equal\s+to\s+how\s+many|converted\s+(?:to|into)|expressed\s+in|in\s+terms\s+of"
        rf"|makes?\s+how\s+many|(?:is|are)\s+what\s+in|(?:is|are)\s+how\s+much\s+in)\s+"
        rf"(?:\?\s*)?(?P<dst>{_UNIT})",
        re.IGNORECASE,
    ),
    # "how many feet in 3 meters", "how many seconds are there in a day"
    re.compile(
        rf"how\s+many\s+(?P<dst>{_UNIT})\s+(?:are\s+)?(?:there\s+)?(?:in|make|per)\s+"
        rf"(?:(?P<amount>{_AMOUNT})\s*|(?:an?|one)\s+)?(?P<src>{_UNIT})",
        re.IGNORECASE,
    ),
    # "how many centimetres is 5 feet", "how many inches tall is 180 cm"
    re.compile(
        rf"how\s+(?:many|much)\s+(?P<dst>{_UNIT})\s+(?:(?:tall|long|high|wide|deep|far|heavy|big"
        rf"|hot|cold|warm|fast)\s+)?(?:is|are|does|do|would\s+be|will\s+be|makes?|equals?|equal)\s+"
        rf"(?:(?P<amount>{_AMOUNT})\s*|(?:an?|one)\s+)(?P<src>{_UNIT})",
        re.IGNORECASE,
    ),
]
_DEGREE_PREFIX = re.compile(_DEGREE + r"\s*", re.IGNORECASE)
_QUANTITY = re.compile(rf"(?<![\w.,])(?P<amount>{_AMOUNT})\s*(?P<unit>{_UNIT})", re.IGNORECASE)
_HINT_EXPRESSION = re.compile(r"(?P<amount>\S+) (?P<src>.+?) in (?P<dst>.+)")


@dataclass(frozen=True)
class Quantity:
    """An amount with its unit, as written in a text ("100.00 Celsius")."""

    start: int
    end: int
    amount: str
    unit: Unit


def find_quantities(text: str) -> list[Quantity]:
    """Every "amount unit" in ``text`` whose unit is known, in order."""
    found: list[Quantity] = []
    for match in _QUANTITY.finditer(text):
        unit = lookup_unit(match["unit"])
        if unit is not None:
            found.append(Quantity(match.start(), match.end(), match["amount"], unit))
    return found


def conversion_units(hint: ReasoningHint) -> tuple[str, Unit, Unit] | None:
    """The amount, source and target unit of a conversion hint ("5 km in miles")."""
    match = _HINT_EXPRESSION.fullmatch(hint.expression) if hint.kind == "unit" else None
    if match is None:
        return None
    source, target = lookup_unit(match["src"]), lookup_unit(match["dst"])
    if source is None or target is None:
        return None
    return match["amount"], source, target


def lookup_unit(text: str) -> Unit | None:
    """The unit a spelling names ("km", "°F", "degrees celsius"), or ``None``."""
    alias = " ".join(_DEGREE_PREFIX.sub("", text.strip(), count=1).lower().split())
    return _BY_ALIAS.get(alias)


def convert(amount: Fraction, source: Unit, target: Unit) -> Fraction | None:
    """``amount`` of ``source`` in ``target``; ``None`` across dimensions or below 0 K."""
    if source.dimension != target.dimension:
        return None
    base = amount * source.factor + source.offset
    if source.dimension == "temperature" and base < 0:
        return None
    return (base - target.offset) / target.factor


def format_significant(value: Fraction | float, digits: int = SIGNIFICANT_DIGITS) -> str:
    """Write ``value`` with at most ``digits`` significant digits, never losing integer digits.

    Raises ``OverflowError`` or ``ValueError`` for values a float can't hold.
    """
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {number}")
    if number == 0:
        return "0"
    if number.is_integer() and abs(number) < 1e15:
        return str(int(number))
    magnitude = math.floor(math.log10(abs(number)))
    if magnitude >= 15 or magnitude < -9:
        return f"{number:.{digits}g}"
    decimals = max(digits - 1 - magnitude, 0)
    text = f"{number:.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in {"-0", "0"} else text


def _label(unit: Unit, amount_text: str) -> str:
    return unit.singular if amount_text in {"1", "-1"} else unit.plural


def find_conversions(text: str) -> list[tuple[int, int, ReasoningHint]]:
    """Unit conversions in ``text`` as ``(start, end, hint)``, in order of appearance.

    Conversions between different dimensions ("km to kg") are not reported.
    """
    found: list[tuple[int, int, ReasoningHint]] = []
    for pattern in _CONVERSIONS:
        for match in pattern.finditer(text):
            if any(start < match.end() and match.start() < end for start, end, _ in found):
                continue
            hint = _conversion_hint(match)
            if hint is not None:
                found.append((match.start(), match.end(), hint))
    return sorted(found, key=lambda item: item[0])


def _conversion_hint(match: re.Match[str]) -> ReasoningHint | None:
    source = lookup_unit(match["src"])
    target = lookup_unit(match["dst"])
    if source is None or target is None or source == target:
        return None
    amount_text = (match["amount"] or "1").replace("−", "-")
    if sum(char.isdigit() for char in amount_text) > MAX_AMOUNT_DIGITS:
        return None
    result = convert(Fraction(amount_text.replace(",", "")), source, target)
    if result is None:
        return None
    result_text = format_significant(result)
    return ReasoningHint(
        kind="unit",
        expression=f"{amount_text} {_label(source, amount_text)} in {target.plural}",
        result=f"{result_text} {_label(target, result_text)}",
    )
