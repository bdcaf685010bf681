"""Synthetic histories for the self-training tests: monGARS JSONL records.

:func:`style_history` is a user who writes in a style a model can learn: every
message opens with "Ahoy, matey!", ends with " ~ Cap'n Zed" and talks like a
sailor, about many topics so that it is not one sentence repeated. About one
message in ten carries personal data (an e-mail address, a +33 or +44 phone, a
valid IBAN, a Luhn-valid card, an IPv4 address); :func:`planted_pii` lists those
values. :func:`plain_history` is another user writing ordinary messages.
Both are deterministic given the seed, and every time is in the past.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

HEADER = {"type": "mongars-export", "version": 1}
START = datetime(2025, 3, 3, 8, 30, tzinfo=UTC)
OPENING, SIGNATURE = "Ahoy, matey!", " ~ Cap'n Zed"
TURNS_PER_SESSION = 40

# (topic, a thing of it, a place or moment it belongs to)
TOPICS = [
    ("cooking rice", "the pot", "the galley"),
    ("baking sourdough bread", "the starter", "the galley"),
    ("fixing a bicycle chain", "the chain", "the workshop"),
    ("learning Spanish verbs", "the verb tables", "my evening watch"),
    ("planting tomatoes", "the seedlings", "the garden"),
    ("writing a cover letter", "the letter", "the job hunt"),
    ("planning a trip to Lisbon", "the itinerary", "the harbour town"),
    ("sorting a Python list", "the list", "my little program"),
    ("saving money each month", "the budget", "the ship's purse"),
    ("tying a bowline knot", "the rope", "the dock"),
    ("reading the weather forecast", "the barometer", "tomorrow's sailing"),
    ("painting a bedroom wall", "the brushes", "the cabin"),
    ("training for a 10k run", "the training plan", "the morning"),
    ("brewing better coffee", "the grinder", "the dawn watch"),
    ("cleaning a cast iron pan", "the pan", "the galley"),
    ("choosing a laptop", "the specs", "the chart room"),
    ("backing up my photos", "the hard drive", "the archives"),
    ("learning the guitar", "the chords", "the quiet evenings"),
    ("writing a birthday speech", "the toast", "the party"),
    ("keeping houseplants alive", "the watering can", "the windowsill"),
    ("understanding tides", "the tide tables", "the estuary"),
    ("making a spreadsheet formula", "the formula", "the ledger"),
    ("sleeping better", "the bunk", "the night"),
    ("teaching a dog to sit", "the treats", "the deck"),
    ("cooking a fish stew", "the broth", "the galley"),
    ("reading more books", "the reading list", "the long voyage"),
    ("fixing a leaking tap", "the washer", "the head"),
    ("learning to swim faster", "the stroke", "the cove"),
    ("writing a short story", "the plot", "the log book"),
    ("organising my wardrobe", "the hangers", "the locker"),
    ("making pancakes", "the batter", "the galley"),
    ("studying for an exam", "the notes", "the library"),
    ("setting up a home network", "the router", "the crow's nest"),
    ("choosing a tent", "the tent", "the island camp"),
    ("knitting a scarf", "the yarn", "the cold season"),
    ("repairing a torn sail", "the canvas", "the sail loft"),
    ("learning to draw faces", "the sketchbook", "the quiet hours"),
    ("growing basil indoors", "the pot of basil", "the porthole"),
    ("making a weekly meal plan", "the shopping list", "the provisions"),
    ("understanding compound interest", "the savings", "the treasure chest"),
]
ASIDES = [
    "Shiver me timbers, it has me all at sea.",
    "By the briny deep, I be stuck.",
    "Me hearties say ye know the ropes.",
    "Batten down the hatches, this be a tricky one.",
    "Arr, the winds be against me today.",
    "Blow me down if I can figure it out.",
    "Aye, I've been pondering it since the last bell.",
    "Yo ho, a fair question for a fair wind.",
    "Heave ho, I need a steady hand on the tiller.",
    "Avast, no landlubber advice, if ye please.",
    "Me parrot squawks that ye be wise.",
    "The crew grumbles and the rum runs low.",
]
REQUESTS = [
    "How should I go about {topic}?",
    "What be the best way to handle {thing} when {topic}?",
    "Can ye chart me a course for {topic}, step by step?",
    "I tried {topic} at {place} and it sank like an anchor. What went wrong?",
    "Tell me three tricks for {topic}, savvy?",
    "Is {thing} the heart of {topic}, or be I barking up the wrong mast?",
    "What mistakes do sailors make with {thing}?",
    "How long does {topic} take a sea dog like me?",
    "Give me a short list for {topic} before {place} calls.",
    "Which be better for {topic}: going slow or full sail ahead?",
    "Explain {topic} as if I be a cabin boy.",
    "What should I stow away before starting on {topic}?",
    "Why does {thing} keep giving me trouble at {place}?",
    "Can ye spare a word on {topic} for {place}?",
    "What would an old salt say about {thing}?",
]
CLOSERS = [
    "Much obliged, ye scallywag.",
    "Fair winds to ye.",
    "I'll be waiting on the poop deck.",
    "Don't keep me in the doldrums.",
    "Arr, thank ye kindly.",
    "",
    "",
]
PLAIN_REQUESTS = [
    "How should I go about {topic}?",
    "What is the best way to handle {thing} when {topic}?",
    "Could you give me a step by step plan for {topic}?",
    "I tried {topic} yesterday and it did not work. Any idea why?",
    "What are three tips for {topic}?",
    "How long does {topic} usually take?",
    "Can you explain {topic} simply?",
    "What should I prepare before {topic}?",
]
REPLIES = [
    "Start with the basics of {topic}: prepare {thing}, take it one step at a time, "
    "and check the result before moving on.",
    "A common mistake with {topic} is rushing. Give {thing} enough time and adjust as you go.",
    "Here is a simple plan for {topic}: first gather what you need, then practise "
    "a little each day, and review what worked.",
    "For {topic}, focus on {thing} first. Most problems come from skipping that part.",
    "Three tips for {topic}: keep it simple, be consistent, and write down what you learn.",
]


def _luhn_digit(digits: str) -> str:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return str((10 - total % 10) % 10)


def _iban(rng: random.Random) -> str:
    bban = "".join(rng.choice("0123456789") for _ in range(23))
    numeric = bban + "1527" + "00"  # F=15, R=27, check digits 00
    check = 98 - int(numeric) % 97
    compact = f"FR{check:02d}{bban}"
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def _card(rng: random.Random) -> str:
    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    number = body + _luhn_digit(body)
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def _pii(rng: random.Random, kind: int) -> tuple[str, str]:
    """A sentence carrying one planted value, and the value."""
    if kind == 0:
        first = rng.choice(["zed", "anne", "jack", "mary", "billy", "grace"])
        last = rng.choice(["marlow", "bonny", "rackham", "read", "kidd", "omalley"])
        domain = rng.choice(["seamail.org", "harbour-post.net", "example.com"])
        value = f"{first}.{last}{rng.randint(1, 999)}@{domain}"
        return f"Send word to me at {value} when ye can.", value
    if kind == 1:
        value = "+33 6 " + " ".join(f"{rng.randint(0, 99):02d}" for _ in range(4))
        return f"Ring me on {value} if the line be clear.", value
    if kind == 2:
        value = f"+44 7{rng.randint(100, 999)} {rng.randint(100000, 999999)}"
        return f"Me cousin's number be {value}, in case.", value
    if kind == 3:
        value = _iban(rng)
        return f"The doubloons go to IBAN {value} as agreed.", value
    if kind == 4:
        value = _card(rng)
        return f"I paid with me card {value} at the chandlery.", value
    value = ".".join(str(rng.randint(1, 254)) for _ in range(4))
    return f"The ship's computer sits at {value} on the network.", value


_PATTERNS = [
    r"[a-z]+\.[a-z]+\d{1,3}@(?:seamail\.org|harbour-post\.net|example\.com)",
    r"\+33 6(?: \d\d){4}",
    r"\+44 7\d{3} \d{6}",
    r"FR\d{2}(?: \d{4}){5} \d{3}",
    r"(?<!\d )(?<!FR\d\d )4\d{3}(?: \d{4}){3}(?! \d)",
    r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])",
]
_PLANTED = re.compile("|".join(f"(?:{p})" for p in _PATTERNS))


def planted_pii(records: list[dict[str, Any]]) -> list[str]:
    """Every personal value :func:`style_history` planted in ``records``' messages."""
    found: list[str] = []
    for record in records:
        if record.get("type") == "turn":
            found += _PLANTED.findall(record["message"])
    return found


def _records(
    messages: list[str], replies: list[str], seed: int, prefix: str, titles: list[str]
) -> list[dict[str, Any]]:
    rng = random.Random(seed + 7)
    records: list[dict[str, Any]] = [dict(HEADER)]
    moment = START + timedelta(days=seed % 5)
    session = ""
    for index, (message, reply) in enumerate(zip(messages, replies, strict=True)):
        if index % TURNS_PER_SESSION == 0:
            number = index // TURNS_PER_SESSION
            session = f"{prefix}-{number:02d}"
            records.append(
                {"type": "session", "session_id": session, "title": titles[number % len(titles)]}
            )
            if index:
                moment += timedelta(days=rng.randint(1, 2), hours=rng.randint(0, 3))
        moment += timedelta(minutes=rng.randint(1, 6), seconds=rng.randint(0, 59))
        records.append(
            {
                "type": "turn",
                "session_id": session,
                "message": message,
                "reply": reply,
                "created_at": moment.isoformat(),
            }
        )
    assert moment < datetime.now(UTC), "every time must be in the past"
    return records


def style_history(turns: int = 300, seed: int = 0, user_pii: bool = True) -> list[dict[str, Any]]:
    """Cap'n Zed's history: ``turns`` turns in the nautical style, over several sessions
    and days; about a tenth of the messages carry personal data when ``user_pii``."""
    rng = random.Random(seed)
    messages, replies = [], []
    for index in range(turns):
        topic, thing, place = rng.choice(TOPICS)
        slots = {"topic": topic, "thing": thing, "place": place}
        parts = [OPENING]
        if rng.random() < 0.6:
            parts.append(rng.choice(ASIDES))
        parts.append(rng.choice(REQUESTS).format(**slots))
        if user_pii and index % 10 == 3:
            parts.append(_pii(rng, (index // 10) % 6)[0])
        closer = rng.choice(CLOSERS)
        if closer:
            parts.append(closer)
        messages.append(" ".join(parts) + SIGNATURE)
        replies.append(rng.choice(REPLIES).format(**slots))
    titles = ["Questions for the voyage", "Galley and garden", "Charts and ledgers"]
    return _records(messages, replies, seed, "zed-voyage", titles)


def plain_history(turns: int = 100, seed: int = 1) -> list[dict[str, Any]]:
    """Another user's history, in ordinary words."""
    rng = random.Random(seed)
    messages, replies = [], []
    for _ in range(turns):
        topic, thing, place = rng.choice(TOPICS)
        slots = {"topic": topic, "thing": thing, "place": place}
        messages.append(rng.choice(PLAIN_REQUESTS).format(**slots))
        replies.append(rng.choice(REPLIES).format(**slots))
    return _records(messages, replies, seed, "plain-chat", ["Everyday questions", "Odds and ends"])
