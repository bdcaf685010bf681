"""Synthetic multi-session dialogue with annotated evidence, for benchmarks/evidence_recall.py.

Each generated user talks with the assistant over months: dated sessions of
user and assistant turns. A few user turns state facts (people, pets, places,
work, preferences, plans), later ones change some of them ("we moved from Lyon
to Nantes"), others tell what the user did that day; most are chit-chat,
requests to the assistant and hard distractors (other people's pets and
moves, hypotheticals). Every question knows the turns that answer it (its
evidence), by kind:

* ``single_hop``: one fact, asked with the statement's own key words;
* ``paraphrase``: one fact, asked in other words (at most one content word
  shared with the evidence, checked at generation);
* ``multi_hop``: the answer needs turns of two sessions (a friend named in
  one, news of that friend in another; both pets);
* ``knowledge_update``: the latest of several statements ("where do I live now");
* ``temporal``: a relative time ("what did I do three weeks ago"), with only
  one dated event in a generous window around it, or *when* something happened.

Two template banks, ``dev`` and ``heldout``, share no sentence template and no
name, place, pet, job or activity: tune on ``dev``, report ``heldout`` as it
comes. Dates are counted back from ``now`` (the run's time, because
``Assistant.retrieve`` reads "last week" from the clock): the same seed gives
the same dialogue at the same offsets from ``now``.

    .venv/bin/python benchmarks/dialogue_data.py --split dev --users 1   # print a sample
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

Role = Literal["user", "assistant"]
Kind = Literal["single_hop", "paraphrase", "multi_hop", "knowledge_update", "temporal"]
KINDS: tuple[Kind, ...] = ("single_hop", "paraphrase", "multi_hop", "knowledge_update", "temporal")
SPLITS = ("dev", "heldout")


@dataclass(frozen=True)
class DialogueTurn:
    id: str
    session_id: str
    position: int
    role: Role
    text: str
    created_at: datetime
    template: str
    """Which bank template made it (``dev:fact:sibling:0``); assistant turns too."""


@dataclass(frozen=True)
class Session:
    id: str
    started_at: datetime
    turns: tuple[DialogueTurn, ...]


@dataclass(frozen=True)
class Question:
    id: str
    kind: Kind
    text: str
    evidence: tuple[str, ...]
    """Ids of the user turns that answer it."""
    answer: str
    template: str


@dataclass(frozen=True)
class UserDialogue:
    user_id: str
    sessions: tuple[Session, ...]
    questions: tuple[Question, ...]

    def turns(self, role: Role | None = None) -> list[DialogueTurn]:
        return [t for s in self.sessions for t in s.turns if role is None or t.role == role]


@dataclass(frozen=True)
class Dataset:
    split: str
    seed: int
    now: datetime
    users: tuple[UserDialogue, ...]

    @property
    def questions(self) -> list[tuple[UserDialogue, Question]]:
        return [(user, q) for user in self.users for q in user.questions]


# -- template banks ----------------------------------------------------------------------


@dataclass(frozen=True)
class TimePhrase:
    """A relative time said in a question: the days back its event lies at
    (``target``), and the days no other event may fall in (``window``)."""

    phrase: str
    target: tuple[int, int]
    window: tuple[int, int]


@dataclass(frozen=True)
class Event:
    key: str
    say: tuple[str, ...]
    when: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class FriendNews:
    say: str
    ask: str
    answer: str


def _split(values: str) -> list[str]:
    """A bank's list of values, written ``"a|b|c"`` to keep the banks short."""
    return values.split("|")


@dataclass
class Bank:
    """Everything one split says with: values, statements, questions, small talk."""

    female: list[str]
    male: list[str]
    pets: list[str]
    species: list[str]
    cities: list[str]
    places: list[str]
    jobs: list[str]
    allergens: list[str]
    cuisines: list[str]
    instruments: list[str]
    months: list[str]
    reasons: list[str]
    friend_rels: list[str]
    facts: dict[str, list[str]]
    questions: dict[str, dict[str, list[str]]]
    friend_news: list[FriendNews]
    events: list[Event]
    time_phrases: list[TimePhrase]
    temporal_asks: list[str]
    chitchat: list[str]
    fillers: dict[str, list[str]]
    replies: dict[str, list[str]]
    extra: dict[str, list[str]] = field(default_factory=dict)


DEV = Bank(
    female=_split("Amélie|Claire|Sofia|Nadia|Emma|Julie|Laura|Inès|Chloé|Marta"),
    male=["Paul", "Karim", "Lucas", "Hugo", "Tom", "Mathis", "Omar", "Victor", "Louis", "Diego"],
    pets=_split("Miso|Rex|Pixel|Biscuit|Luna|Pepper|Noodle|Oscar|Figaro|Ziggy"),
    species=["cat", "dog", "rabbit", "parrot", "hamster"],
    cities=["Lyon", "Nantes", "Lille", "Grenoble", "Rennes", "Bordeaux", "Dijon", "Toulouse"],
    places=["Lisbon", "Kyoto", "Reykjavik", "Seville", "Crete", "Montreal", "Edinburgh", "Vienna"],
    jobs=_split(
        "nurse|accountant|high school teacher|software developer|pharmacist|"
        "electrician|graphic designer|lawyer"
    ),
    allergens=["peanuts", "shellfish", "penicillin", "cat hair", "kiwi", "bee stings"],
    cuisines=["Thai", "Lebanese", "Mexican", "Japanese", "Ethiopian", "Greek"],
    instruments=["guitar", "piano", "violin", "drums", "saxophone", "ukulele"],
    months=["June", "July", "August", "September", "October"],
    reasons=["our anniversary", "my fortieth birthday", "a friend's wedding", "a work conference"],
    friend_rels=["best friend", "oldest friend"],
    facts={
        "sibling": [
            "My {sib_rel} {sib_name} is coming to stay with us for a few days",
            "I had a long call with my {sib_rel} {sib_name} last night, {sib_pron} is doing fine",
            "My {sib_rel}'s name is {sib_name}, {sib_pron} is two years younger than me",
        ],
        "partner": [
            "My {partner_rel} {partner} cooked dinner tonight, it was amazing",
            "{partner} and I have been together for six years now, "
            "{partner_pron} is my {partner_rel}",
        ],
        "pet1": [
            "We adopted a {pet1_species} last weekend, we named it {pet1}",
            "My {pet1_species} {pet1} chewed through the charger cable again",
        ],
        "pet2": [
            "We also got a {pet2_species} called {pet2}, the two animals get along well",
            "Our new {pet2_species} {pet2} arrived today, so now the house is a zoo",
        ],
        "home_old": [
            "I live in {city_old}, in a flat near the river",
            "Life in {city_old} is nice but the rent is high",
        ],
        "home_new": [
            "Big news: I moved from {city_old} to {city_new}, the boxes are everywhere",
            "We finally left {city_old}, our new place in {city_new} has a garden",
        ],
        "job_old": [
            "I work as a {job_old}, the hours are long",
            "Being a {job_old} is tiring but I like my colleagues",
        ],
        "job_new": [
            "I quit my job as a {job_old}, I start as a {job_new} on Monday",
            "Career change done: no more {job_old} work, I'm a {job_new} now",
        ],
        "allergy": [
            "I'm allergic to {allergen}, so I always have to be careful",
            "Had a reaction to {allergen} again, my allergy is getting worse",
        ],
        "cuisine": [
            "My favourite food is {cuisine}, I could eat it every day",
            "Nothing beats {cuisine} food for me, it's my favourite",
        ],
        "inst_old": [
            "I started taking {inst_old} lessons, my teacher is patient",
            "Practised the {inst_old} for an hour, my fingers hurt",
        ],
        "inst_new": [
            "I gave up the {inst_old} and switched to the {inst_new}",
            "No more {inst_old} for me, I'm learning the {inst_new} instead",
        ],
        "trip": [
            "We're flying to {trip_place} in {trip_month} for {trip_reason}",
            "I booked the trip to {trip_place} for {trip_month}, it's for {trip_reason}",
        ],
        "friend": [
            "My {friend_rel} {friend} works as a firefighter",
            "I've known {friend} since primary school, {friend_pron} is my {friend_rel}",
        ],
        "sib_city": [
            "{sib_name} just moved to {sib_city} for work",
            "I visited {sib_name} in {sib_city}, {sib_pos} apartment there is tiny",
        ],
    },
    questions={
        "sibling": {
            "single_hop": ["What's my {sib_rel}'s name?", "What is my {sib_rel} called?"],
            "paraphrase": ["Who is my sibling?", "Do I have any siblings, and who?"],
        },
        "partner": {
            "single_hop": ["What is my {partner_rel}'s name?"],
            "paraphrase": ["Who am I in a relationship with?", "Who do I share my life with?"],
        },
        "pet1": {
            "single_hop": [
                "What's my {pet1_species} called?",
                "What's the name of my {pet1_species}?",
            ],
            "paraphrase": ["What did we call our newest furry companion?"],
        },
        "allergy": {
            "single_hop": ["What am I allergic to?"],
            "paraphrase": ["Which substance gives me a bad physical reaction?"],
        },
        "cuisine": {
            "single_hop": ["What is my favourite food?"],
            "paraphrase": [
                "Which type of cooking do I enjoy most?",
                "What sort of dishes do I love?",
            ],
        },
        "trip": {
            "single_hop": ["Where are we flying in {trip_month}?"],
            "paraphrase": ["What destination is my upcoming holiday?"],
        },
        "home": {"knowledge_update": ["Where do I live now?", "Which city am I living in?"]},
        "job": {
            "knowledge_update": ["What is my job now?", "What do I do for work at the moment?"]
        },
        "inst": {"knowledge_update": ["Which instrument am I learning now?"]},
        "pets": {"multi_hop": ["What pets do we have?", "Which animals live with us?"]},
        "sib_city": {"multi_hop": ["Which city does my {sib_rel} live in?"]},
    },
    friend_news=[
        FriendNews(
            "{friend} just bought a sailboat, {friend_pron} wants to sail to Corsica",
            "What did my {friend_rel} just buy?",
            "a sailboat",
        ),
        FriendNews(
            "{friend} is getting married in the spring, I'm the witness",
            "What big event is coming up for my {friend_rel}?",
            "a wedding",
        ),
        FriendNews(
            "{friend} broke {friend_pos} leg skiing, poor thing",
            "What happened to my {friend_rel}'s leg?",
            "broke it skiing",
        ),
        FriendNews(
            "{friend} opened a small bakery downtown",
            "What business did my {friend_rel} start?",
            "a bakery",
        ),
    ],
    events=[
        Event(
            "dentist",
            (
                "Just got back from the dentist, two fillings, ugh",
                "Dentist appointment this morning, my jaw still hurts",
            ),
            ("When did I go to the dentist?",),
            "dentist",
        ),
        Event(
            "half_marathon",
            ("Ran the half marathon today, finished in under two hours!",),
            ("When did I run the half marathon?",),
            "half marathon",
        ),
        Event(
            "concert",
            ("Went to a jazz concert tonight, the trumpet player was incredible",),
            ("When did I go to the jazz concert?",),
            "jazz concert",
        ),
        Event(
            "hiking",
            ("Spent the day hiking in the mountains with {friend}",),
            ("When did I go hiking in the mountains?",),
            "hiking",
        ),
        Event(
            "painting",
            ("Painted the bedroom blue today, took forever",),
            ("When did I paint the bedroom?",),
            "painted the bedroom",
        ),
        Event(
            "museum",
            ("Visited the natural history museum with my nephew this afternoon",),
            ("When did I visit the natural history museum?",),
            "museum",
        ),
        Event(
            "interview",
            ("Had a job interview at a bank this morning, I think it went well",),
            ("When was my interview at the bank?",),
            "job interview",
        ),
        Event(
            "bbq",
            ("We had a barbecue in the garden with the neighbours today",),
            ("When did we have the barbecue?",),
            "barbecue",
        ),
        Event(
            "vet",
            ("Took the {pet1_species} to the vet for vaccines this morning",),
            ("When did I take my pet to the vet?",),
            "vet visit",
        ),
        Event(
            "cooking_class",
            ("Did a pasta cooking class tonight, made ravioli from scratch",),
            ("When did I take the pasta cooking class?",),
            "cooking class",
        ),
        Event(
            "flat_tyre",
            ("Got a flat tyre on the motorway today, waited an hour for help",),
            ("When did I get a flat tyre?",),
            "flat tyre",
        ),
        Event(
            "escape_room",
            ("Did an escape room with my colleagues tonight, we got out just in time",),
            ("When did I do the escape room?",),
            "escape room",
        ),
    ],
    time_phrases=[
        TimePhrase("yesterday", (1, 1), (0, 2)),
        TimePhrase("three days ago", (3, 3), (2, 4)),
        TimePhrase("four days ago", (4, 4), (3, 5)),
        TimePhrase("last week", (5, 7), (1, 13)),
        TimePhrase("two weeks ago", (13, 15), (10, 18)),
        TimePhrase("three weeks ago", (20, 22), (17, 25)),
        TimePhrase("about a month ago", (29, 31), (25, 36)),
    ],
    temporal_asks=["What did I do {when}?", "What was I up to {when}?"],
    chitchat=[
        "{lead}can you suggest a quick recipe with {food} for tonight?",
        "{lead}how do I {tech}?",
        "What's a good {genre} novel to read on the train?",
        "The weather is {weather} again today, {mood}",
        "Just finished watching {show}, what an ending",
        "Traffic was terrible this morning, {number} minutes to get to work",
        "I'm so tired today, I barely slept, {mood}",
        "haha that's funny",
        "ok thanks, that helps",
        "Good morning! Busy {day} ahead",
        "{lead}can you explain {concept} in simple terms?",
        "How many grams are in a cup of {food}?",
        "Any tips to stay focused while working from home on a {day}?",
        "Remind me what the capital of {country} is?",
        "Write me a short poem about {topic}",
        "I think I'll make {food} soup this {day}",
        "What should I watch tonight, something {genre}?",
        "Is it normal for {tech_thing} to get this hot?",
        "{lead}what's the difference between {concept} and {concept2}?",
        "Set a reminder to call the bank at {hour}",
        "How long should I boil {food} for?",
        "My {tech_thing} froze again, {mood}",
        "Translate 'see you on {day}' into Spanish",
        "Give me a {number}-minute stretching routine",
        "{lead}is {food} healthy?",
        "Tell me a fun fact about {country}",
        "The meeting at {hour} got cancelled, {mood}",
        "Who wrote the best {genre} books of the last decade?",
    ],
    fillers={
        "food": _split(
            "lentils|rice|spinach|chickpeas|mushrooms|courgettes|leeks|potatoes|"
            "broccoli|oats|salmon|eggs"
        ),
        "tech": _split(
            "reset my router|free up space on my phone|change my wifi password|"
            "back up my photos|update my laptop|block spam calls|print double-sided|"
            "share my screen in a video call"
        ),
        "tech_thing": ["my laptop", "the phone charger", "the router", "my tablet", "the printer"],
        "genre": ["science fiction", "crime", "historical", "fantasy", "comedy", "mystery"],
        "weather": ["grey", "rainy", "freezing", "so humid", "windy", "gloomy"],
        "show": _split(
            "that detective series|the cooking competition|the space documentary|"
            "the new sitcom|a nature programme|the football match"
        ),
        "concept": _split(
            "inflation|black holes|compound interest|photosynthesis|"
            "machine learning|interest rates|vaccines"
        ),
        "concept2": ["deflation", "neutron stars", "simple interest", "respiration", "statistics"],
        "country": ["Australia", "Canada", "Peru", "Norway", "Kenya", "Chile", "Poland"],
        "topic": ["autumn", "the sea", "Mondays", "coffee", "the moon", "old friends"],
        "lead": ["", "So ", "Quick one: ", "Hmm, ", "Hey, "],
        "mood": ["what a day", "sigh", "not great", "oh well", "typical"],
        "day": ["Monday", "Tuesday", "Thursday", "weekend", "Friday"],
        "hour": ["9am", "11:30", "2pm", "4pm", "6pm"],
        "number": ["five", "ten", "fifteen", "twenty", "forty"],
    },
    replies={
        "fact": [
            "Thanks for telling me, I'll remember that.",
            "That's good to know!",
            "Oh nice, tell me more whenever you like.",
        ],
        "event": ["That sounds like quite a day!", "Glad you told me, how do you feel now?"],
        "chat": [
            "Sure, here's an idea.",
            "Happy to help with that.",
            "Here's what I'd suggest.",
            "Ha, I hear you.",
            "Good question, let me explain.",
        ],
    },
    extra={
        "hard": [
            "My colleague has a {species} called {pet_other}, he shows us photos every day",
            "My neighbour is moving to {city_other} next month",
            "My cousin works as a {job_other} and hates it",
            "A friend of mine is allergic to {allergen_other}",
            "What's a good name for a {species}?",
            "If I ever moved I think I'd pick {city_other}",
            "My colleague is learning the {inst_other}, it sounds awful through the wall",
            "Is {place_other} worth visiting in winter?",
            "My boss went hiking last weekend and won't stop talking about it",
            "Someone at work ran a marathon, I could never do that",
        ],
    },
)

HELDOUT = Bank(
    female=_split("Brigitte|Yasmine|Océane|Greta|Priya|Camille|Noor|Beatriz|Hélène|Ingrid"),
    male=_split("Gaspard|Rafael|Yann|Samuel|Anton|Malik|Florent|Kenji|Bastien|Emil"),
    pets=_split("Caramel|Bruno|Mochi|Tornado|Pistache|Gizmo|Olive|Sherlock|Plume|Waffles"),
    species=["kitten", "puppy", "tortoise", "ferret", "budgie"],
    cities=_split("Marseille|Strasbourg|Montpellier|Brest|Annecy|Rouen|Metz|Clermont-Ferrand"),
    places=_split("Oaxaca|Hanoi|Marrakech|Tallinn|Sicily|Patagonia|Cape Town|Bergen"),
    jobs=_split(
        "veterinarian|architect|bus driver|physiotherapist|data analyst|baker|"
        "journalist|firefighter"
    ),
    allergens=["walnuts", "latex", "dust mites", "sesame", "wasp venom", "strawberries"],
    cuisines=["Korean", "Peruvian", "Vietnamese", "Moroccan", "Indian", "Georgian"],
    instruments=["cello", "trumpet", "accordion", "harp", "bass guitar", "flute"],
    months=["March", "April", "May", "November", "December"],
    reasons=_split("my parents' retirement|a honeymoon|a marathon abroad|my cousin's graduation"),
    friend_rels=["closest mate", "childhood friend"],
    facts={
        "sibling": [
            "Spent Sunday helping my {sib_rel} {sib_name} paint {sib_pos} kitchen",
            "{sib_name}, my {sib_rel}, keeps borrowing my car without asking",
            "Family dinner tonight, my {sib_rel} {sib_name} brought dessert",
        ],
        "partner": [
            "{partner} surprised me with flowers, best {partner_rel} ever",
            "Me and {partner} celebrated three years as a couple, "
            "{partner_pron} is my {partner_rel}",
        ],
        "pet1": [
            "Meet {pet1}, the {pet1_species} we brought home from the shelter",
            "{pet1} the {pet1_species} slept on my keyboard during a meeting, so cute",
        ],
        "pet2": [
            "There's a second animal in the family now: a {pet2_species} named {pet2}",
            "Brought home {pet2}, a little {pet2_species}, to keep {pet1} company",
        ],
        "home_old": [
            "Our apartment in {city_old} is on the fifth floor with no lift",
            "Been based in {city_old} for years, I know every bakery here",
        ],
        "home_new": [
            "The removal van came: goodbye {city_old}, hello {city_new}",
            "Settling into {city_new} after leaving {city_old}, the neighbours seem friendly",
        ],
        "job_old": [
            "Another double shift as a {job_old}, I'm exhausted",
            "People always ask me for advice because I'm a {job_old}",
        ],
        "job_new": [
            "Handed in my notice, after years as a {job_old} I'm retraining to be a {job_new}",
            "First week in my new role as a {job_new}, so different from being a {job_old}",
        ],
        "allergy": [
            "Doctor confirmed it: {allergen} make me break out in hives",
            "Had to use my EpiPen once because of {allergen}, scary stuff",
        ],
        "cuisine": [
            "Ordered {cuisine} takeaway for the third time this week, I never get bored of it",
            "If I had to pick one kitchen for the rest of my life it'd be {cuisine}",
        ],
        "inst_old": [
            "Signed up for {inst_old} classes at the music school",
            "My {inst_old} teacher says I'm improving",
        ],
        "inst_new": [
            "Sold my {inst_old} and bought a {inst_new}, it suits me better",
            "The {inst_old} wasn't for me, these days I practise the {inst_new}",
        ],
        "trip": [
            "Tickets bought: {trip_place} in {trip_month}, for {trip_reason}",
            "Counting the days until {trip_place}, we leave in {trip_month} for {trip_reason}",
        ],
        "friend": [
            "Grabbed coffee with {friend}, my {friend_rel}, {friend_pron} teaches yoga",
            "{friend} has been my {friend_rel} since we were six",
        ],
        "sib_city": [
            "{sib_name} got a job offer and relocated to {sib_city}",
            "Took the train to see {sib_name}, who lives in {sib_city} now",
        ],
    },
    questions={
        "sibling": {
            "single_hop": ["Remind me of my {sib_rel}'s name", "How is my {sib_rel} named?"],
            "paraphrase": ["Tell me who my sibling is", "Who grew up in the same household as me?"],
        },
        "partner": {
            "single_hop": ["Who is my {partner_rel}?"],
            "paraphrase": [
                "What's the name of the person I'm dating?",
                "Who is my significant other?",
            ],
        },
        "pet1": {
            "single_hop": ["What do I call my {pet1_species}?"],
            "paraphrase": ["What name does our adopted animal answer to?"],
        },
        "allergy": {
            "single_hop": ["Which thing am I allergic to?"],
            "paraphrase": ["What should people avoid giving me for health reasons?"],
        },
        "cuisine": {
            "single_hop": ["Which cuisine do I never get bored of?"],
            "paraphrase": ["If you booked a restaurant for me, what style would I enjoy?"],
        },
        "trip": {
            "single_hop": ["Where am I travelling in {trip_month}?"],
            "paraphrase": ["What's the place of my next getaway?"],
        },
        "home": {
            "knowledge_update": [
                "What town am I based in these days?",
                "Where is home for me currently?",
            ]
        },
        "job": {
            "knowledge_update": [
                "What's my current line of work?",
                "What profession am I in nowadays?",
            ]
        },
        "inst": {"knowledge_update": ["What instrument do I play these days?"]},
        "pets": {
            "multi_hop": [
                "List all the animals in my family",
                "How many pets do I have and what are they?",
            ]
        },
        "sib_city": {"multi_hop": ["Where is my {sib_rel} living?"]},
    },
    friend_news=[
        FriendNews(
            "{friend} adopted twins, {friend_pron} is overwhelmed but happy",
            "What news did my {friend_rel} have about kids?",
            "adopted twins",
        ),
        FriendNews(
            "{friend} won a regional chess tournament",
            "Which competition did my {friend_rel} win?",
            "a chess tournament",
        ),
        FriendNews(
            "{friend} is cycling across Spain for charity this summer",
            "What charity challenge is my {friend_rel} doing?",
            "cycling across Spain",
        ),
        FriendNews(
            "{friend} bought an old farmhouse to renovate",
            "What property did my {friend_rel} buy?",
            "a farmhouse",
        ),
    ],
    events=[
        Event(
            "eye_test",
            ("Eye test today, turns out I need reading glasses",),
            ("How long ago did I have my eyes checked?",),
            "eye test",
        ),
        Event(
            "pottery",
            ("First pottery workshop done, my bowl is wonky but I love it",),
            ("On what date did I try pottery?",),
            "pottery workshop",
        ),
        Event(
            "wedding",
            ("Danced all night at my colleague's wedding, my feet are killing me",),
            ("How long ago was the wedding where I danced all night?",),
            "colleague's wedding",
        ),
        Event(
            "kayak",
            ("Went kayaking on the lake this morning, saw a heron",),
            ("On which day did I go kayaking?",),
            "kayaking",
        ),
        Event(
            "blood_donation",
            ("Gave blood at the donation centre, they gave me biscuits after",),
            ("How long ago did I donate blood?",),
            "blood donation",
        ),
        Event(
            "theatre",
            ("Watched a Molière play at the theatre tonight, the actors were brilliant",),
            ("On what date did I see the play?",),
            "theatre",
        ),
        Event(
            "moving_help",
            ("Helped a neighbour carry a sofa up four floors today, my back is done",),
            ("How long ago did I help carry the sofa?",),
            "carried a sofa",
        ),
        Event(
            "volunteering",
            ("Volunteered at the food bank this afternoon, sorted tins for hours",),
            ("On which day did I volunteer at the food bank?",),
            "food bank",
        ),
        Event(
            "car_crash",
            ("Someone reversed into my car in the supermarket car park today",),
            ("How long ago did someone damage my car?",),
            "car damaged",
        ),
        Event(
            "climbing",
            ("Tried indoor bouldering with {friend}, my forearms are on fire",),
            ("On what day did I go bouldering?",),
            "bouldering",
        ),
        Event(
            "exam",
            ("Passed my driving theory exam this morning!",),
            ("How long ago did I pass the theory exam?",),
            "theory exam",
        ),
        Event(
            "picnic",
            ("Had a picnic by the canal with {partner}, perfect sunshine",),
            ("On which day was the canal picnic?",),
            "picnic",
        ),
    ],
    time_phrases=[
        TimePhrase("the day before yesterday", (2, 2), (1, 3)),
        TimePhrase("a few days ago", (3, 4), (2, 6)),
        TimePhrase("over the past week", (4, 6), (1, 9)),
        TimePhrase("a couple of weeks ago", (13, 15), (9, 19)),
        TimePhrase("a fortnight ago", (14, 14), (11, 17)),
        TimePhrase("roughly three weeks back", (20, 22), (17, 25)),
        TimePhrase("five weeks ago", (35, 35), (31, 39)),
    ],
    temporal_asks=["How did I spend my time {when}?", "Which activity did I mention {when}?"],
    chitchat=[
        "{opener}give me three ideas for a {food} salad",
        "Why does my {tech_thing} keep disconnecting?",
        "Recommend a {genre} podcast for my commute",
        "Ugh, {weather} weather all week, {sigh}",
        "Binge-watched {show} until 2am, regret nothing",
        "The bus was late again, {count} minutes in the cold",
        "{weekday} mood: need more coffee",
        "lol fair enough",
        "perfect, cheers",
        "Hey there, quick question about {subject}",
        "{opener}what exactly is {subject}?",
        "Convert {count} Fahrenheit to Celsius for my oven please",
        "How do people manage to wake up at 5am?",
        "What language do they speak in {nation}?",
        "Compose a haiku about {theme}",
        "Thinking of baking {food} bread later",
        "Suggest a {genre} film for a rainy evening",
        "Should I replace the {tech_thing} or try fixing it?",
        "{opener}pros and cons of {subject}?",
        "Ping me at {clock} to water the plants",
        "What goes well with roasted {food}?",
        "The {tech_thing} is making a weird noise, {sigh}",
        "How do you say 'happy {weekday}' in Italian?",
        "Plan me a {count}-minute workout without equipment",
        "{opener}any good {genre} series lately?",
        "Summarise the history of {nation} in a few lines",
        "My {clock} call ran over, {sigh}",
        "Is {food} in season right now?",
    ],
    fillers={
        "food": _split(
            "quinoa|beetroot|aubergine|pumpkin|barley|tofu|fennel|cauliflower|"
            "carrots|couscous|mackerel|peppers"
        ),
        "tech_thing": _split(
            "bluetooth headset|smart TV|printer|old tablet|dishwasher|kettle|e-reader"
        ),
        "genre": ["true crime", "horror", "documentary", "romantic", "thriller", "animated"],
        "weather": ["foggy", "stormy", "scorching", "drizzly", "icy", "muggy"],
        "show": _split(
            "the baking contest|a Korean drama|the wildlife series|the quiz show|"
            "the rugby final|an old western"
        ),
        "subject": _split(
            "blockchain|quantum entanglement|a mortgage|herd immunity|electric cars|"
            "solar panels|index funds"
        ),
        "nation": ["Brazil", "Belgium", "Iceland", "Switzerland", "Morocco", "Vietnam", "Ireland"],
        "theme": ["rain on windows", "trains", "first snow", "tea", "lighthouses", "bicycles"],
        "opener": ["Okay, ", "Random thought: ", "Right, ", "Question: "],
        "sigh": ["seriously", "great, just great", "whatever", "can't win", "classic"],
        "weekday": ["Wednesday", "Sunday", "Saturday"],
        "clock": ["8:15", "10am", "noon", "3pm", "5:30"],
        "count": ["twelve", "thirty", "twenty-five", "350", "sixty"],
    },
    replies={
        "fact": [
            "Got it, noted.",
            "Lovely, thanks for sharing that with me.",
            "I'll keep that in mind for later.",
        ],
        "event": ["Wow, what a day you had.", "That must have been something, how was it?"],
        "chat": [
            "Absolutely, here you go.",
            "Let me walk you through it.",
            "Here are a few options.",
            "Totally understandable.",
            "Great question.",
        ],
    },
    extra={
        "hard": [
            "My flatmate's {species} {pet_other} escaped again this morning",
            "A coworker just got transferred to {city_other}",
            "My uncle retired after thirty years as a {job_other}",
            "My nephew can't eat {allergen_other}, birthday parties are tricky",
            "Which breeds of {species} are easiest to look after?",
            "Imagine living in {city_other}, that would be a dream",
            "My neighbour's kid practises the {inst_other} every evening",
            "Is {place_other} expensive for tourists?",
            "My cousin went kayaking last week and fell in the water",
            "A friend from work did pottery once and hated it",
        ],
    },
)

BANKS = {"dev": DEV, "heldout": HELDOUT}

_PRONOUNS = {"f": ("she", "her"), "m": ("he", "his")}
_WORD = re.compile(r"[a-zà-ÿ]+")
_STOP = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "they",
        "this",
        "to",
        "us",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "any",
        "about",
        "all",
        "am",
        "just",
        "now",
        "new",
        "one",
        "these",
        "those",
        "some",
        "tell",
        "remind",
        "after",
    ]
)


def content_words(text: str) -> set[str]:
    """The words of ``text`` that carry meaning, cut to five letters ("sisters" ~ "sister")."""
    return {w[:5] for w in _WORD.findall(text.casefold()) if w not in _STOP and len(w) > 2}


# -- generation ------------------------------------------------------------------------


def _fill(template: str, values: dict[str, str], rng: random.Random, bank: Bank) -> str:
    slots = dict(values)
    for name, choices in bank.fillers.items():
        slots.setdefault(name, rng.choice(choices))
    return template.format(**slots)


def _profile(bank: Bank, rng: random.Random) -> dict[str, str]:
    def person(gender: str | None = None) -> tuple[str, str]:
        gender = gender or rng.choice("fm")
        return rng.choice(bank.female if gender == "f" else bank.male), gender

    sib_name, sib_gender = person()
    partner, partner_gender = person()
    friend, friend_gender = person()
    while friend in (sib_name, partner):
        friend, friend_gender = person()
    while partner == sib_name:
        partner, partner_gender = person()
    pet1, pet2 = rng.sample(bank.pets, 2)
    species1, species2 = rng.sample(bank.species, 2)
    city_old, city_new, sib_city, city_other = rng.sample(bank.cities, 4)
    job_old, job_new, job_other = rng.sample(bank.jobs, 3)
    inst_old, inst_new, inst_other = rng.sample(bank.instruments, 3)
    allergen, allergen_other = rng.sample(bank.allergens, 2)
    trip_place, place_other = rng.sample(bank.places, 2)
    partner_rel = {
        "f": rng.choice(["wife", "girlfriend", "partner"]),
        "m": rng.choice(["husband", "boyfriend", "partner"]),
    }[partner_gender]
    return {
        "sib_rel": "sister" if sib_gender == "f" else "brother",
        "sib_name": sib_name,
        "sib_pron": _PRONOUNS[sib_gender][0],
        "sib_pos": _PRONOUNS[sib_gender][1],
        "partner": partner,
        "partner_rel": partner_rel,
        "partner_pron": _PRONOUNS[partner_gender][0],
        "friend": friend,
        "friend_rel": rng.choice(bank.friend_rels),
        "friend_pron": _PRONOUNS[friend_gender][0],
        "friend_pos": _PRONOUNS[friend_gender][1],
        "pet1": pet1,
        "pet1_species": species1,
        "pet2": pet2,
        "pet2_species": species2,
        "pet_other": rng.choice([p for p in bank.pets if p not in (pet1, pet2)]),
        "city_old": city_old,
        "city_new": city_new,
        "sib_city": sib_city,
        "city_other": city_other,
        "job_old": job_old,
        "job_new": job_new,
        "job_other": job_other,
        "inst_old": inst_old,
        "inst_new": inst_new,
        "inst_other": inst_other,
        "allergen": allergen,
        "allergen_other": allergen_other,
        "cuisine": rng.choice(bank.cuisines),
        "trip_place": trip_place,
        "place_other": place_other,
        "trip_month": rng.choice(bank.months),
        "trip_reason": rng.choice(bank.reasons),
        "species": rng.choice(bank.species),
    }


def _others(bank: Bank, rng: random.Random, values: dict[str, str]) -> dict[str, str]:
    """Values of the bank that are not the user's, fresh for each distractor."""
    own = set(values.values())

    def pick(choices: list[str]) -> str:
        return rng.choice([c for c in choices if c not in own])

    return {
        "pet_other": pick(bank.pets),
        "city_other": pick(bank.cities),
        "job_other": pick(bank.jobs),
        "inst_other": pick(bank.instruments),
        "allergen_other": pick(bank.allergens),
        "place_other": pick(bank.places),
        "species": rng.choice(bank.species),
    }


@dataclass
class _Planned:
    """A user turn placed on the timeline before sessions are written out."""

    key: str
    day: int
    text: str
    template: str
    reply: str


def _recent_events(bank: Bank, rng: random.Random, count: int) -> list[tuple[TimePhrase, int]]:
    """``count`` time phrases whose windows do not overlap, each with the day back of its event."""
    for _ in range(200):
        chosen = rng.sample(bank.time_phrases, count)
        days = [rng.randint(*p.target) for p in chosen]
        if all(
            not (p.window[0] <= days[j] <= p.window[1])
            for i, p in enumerate(chosen)
            for j in range(count)
            if j != i
        ):
            return list(zip(chosen, days, strict=True))
    raise RuntimeError("no compatible time phrases in the bank")


def generate_user(
    split: str, seed: int, index: int, now: datetime, *, sessions: int = 50, span_days: int = 240
) -> UserDialogue:
    """One user's dated sessions and questions; the same for the same arguments."""
    bank = BANKS[split]
    rng = random.Random(f"{split}:{seed}:{index}")
    user_id = f"{split}-user-{index:02d}"
    values = _profile(bank, rng)
    planned: list[_Planned] = []

    def plan(key: str, slot: str, day: int, kind: str = "fact") -> _Planned:
        choice = rng.randrange(len(bank.facts[slot])) if slot in bank.facts else 0
        template = bank.facts[slot][choice]
        item = _Planned(
            key,
            day,
            _fill(template, values, rng, bank),
            f"{split}:fact:{slot}:{choice}",
            rng.choice(bank.replies[kind]),
        )
        planned.append(item)
        return item

    # Facts are said more than 40 days back, so that they never sit in a temporal
    # question's window; a change is said after what it changes.
    for slot in ("sibling", "partner", "pet1", "allergy", "cuisine", "trip", "friend"):
        plan(slot, slot, rng.randint(50, span_days))
    for slot in ("home", "job", "inst"):
        plan(f"{slot}_old", f"{slot}_old", rng.randint(120, span_days))
        plan(f"{slot}_new", f"{slot}_new", rng.randint(41, 119))
    first = {p.key: p.day for p in planned}
    plan("pet2", "pet2", rng.randint(41, first["pet1"] - 1))
    plan("sib_city", "sib_city", rng.randint(41, first["sibling"] - 1))
    news_index = rng.randrange(len(bank.friend_news))
    news = bank.friend_news[news_index]
    news_day = rng.randint(41, first["friend"] - 1)
    planned.append(
        _Planned(
            "friend_news",
            news_day,
            _fill(news.say, values, rng, bank),
            f"{split}:news:{news_index}",
            rng.choice(bank.replies["fact"]),
        )
    )

    # Dated events: three recent ones for relative-time questions, five older ones.
    event_order = rng.sample(range(len(bank.events)), 8)
    recent = _recent_events(bank, rng, 3)
    old_days = sorted(rng.sample(range(45, span_days), 5))
    event_days = [day for _, day in recent] + old_days
    events: list[tuple[int, _Planned]] = []
    for number, (event_index, day) in enumerate(zip(event_order, event_days, strict=True)):
        event = bank.events[event_index]
        choice = rng.randrange(len(event.say))
        item = _Planned(
            f"event{number}",
            day,
            _fill(event.say[choice], values, rng, bank),
            f"{split}:event:{event.key}:{choice}",
            rng.choice(bank.replies["event"]),
        )
        planned.append(item)
        events.append((event_index, item))

    # Sessions: one on each day that has something to say, the rest chit-chat only.
    busy_days = sorted({p.day for p in planned}, reverse=True)
    free = [d for d in range(1, span_days + 1) if d not in busy_days]
    days = sorted(
        set(busy_days) | set(rng.sample(free, max(0, sessions - len(busy_days)))), reverse=True
    )
    by_day: dict[int, list[_Planned]] = {}
    for item in planned:
        by_day.setdefault(item.day, []).append(item)
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    written: list[Session] = []
    turn_of: dict[str, str] = {}
    for number, day in enumerate(days):
        session_id = f"{user_id}-s{number:02d}"
        started = (
            today
            - timedelta(days=day)
            + timedelta(hours=rng.randint(8, 21), minutes=rng.randint(0, 59))
        )
        said: list[tuple[str, str, str, str | None]] = []  # text, template, reply, planned key
        for item in by_day.get(day, []):
            said.append((item.text, item.template, item.reply, item.key))
        fill = rng.randint(3, 6)
        seen = {text for text, *_ in said}
        while fill > 0:
            if rng.random() < 0.3:
                choice = rng.randrange(len(bank.extra["hard"]))
                template, name = bank.extra["hard"][choice], f"{split}:hard:{choice}"
            else:
                choice = rng.randrange(len(bank.chitchat))
                template, name = bank.chitchat[choice], f"{split}:chat:{choice}"
            text = _fill(template, {**values, **_others(bank, rng, values)}, rng, bank)
            if text in seen:
                continue
            seen.add(text)
            said.insert(
                rng.randint(0, len(said)), (text, name, rng.choice(bank.replies["chat"]), None)
            )
            fill -= 1
        turns: list[DialogueTurn] = []
        for text, template, reply, key in said:
            exchange: tuple[tuple[Role, str, str], ...] = (
                ("user", text, template),
                ("assistant", reply, f"{split}:reply"),
            )
            for role, content, name in exchange:
                position = len(turns)
                turn = DialogueTurn(
                    id=f"{session_id}-t{position:02d}",
                    session_id=session_id,
                    position=position,
                    role=role,
                    text=content,
                    created_at=started + timedelta(minutes=position),
                    template=name,
                )
                turns.append(turn)
                if role == "user" and key is not None:
                    turn_of[key] = turn.id
        written.append(Session(session_id, started, tuple(turns)))

    questions = _questions(
        split, bank, rng, values, turn_of, user_id, news, news_index, recent, events
    )
    return UserDialogue(user_id, tuple(written), tuple(questions))


def _questions(
    split: str,
    bank: Bank,
    rng: random.Random,
    values: dict[str, str],
    turn_of: dict[str, str],
    user_id: str,
    news: FriendNews,
    news_index: int,
    recent: list[tuple[TimePhrase, int]],
    events: list[tuple[int, _Planned]],
) -> list[Question]:
    questions: list[Question] = []

    def ask(
        kind: Kind,
        group: str,
        evidence: list[str],
        answer: str,
        *,
        text: str | None = None,
        template: str | None = None,
    ) -> None:
        if text is None:
            choices = bank.questions[group][kind]
            choice = rng.randrange(len(choices))
            text, template = choices[choice].format(**values), f"{split}:q:{group}:{kind}:{choice}"
        assert template is not None
        questions.append(
            Question(
                f"{user_id}-q{len(questions):02d}",
                kind,
                text,
                tuple(turn_of[key] for key in evidence),
                answer,
                template,
            )
        )

    answers = {
        "sibling": values["sib_name"],
        "partner": values["partner"],
        "pet1": values["pet1"],
        "allergy": values["allergen"],
        "cuisine": values["cuisine"],
        "trip": values["trip_place"],
    }
    for group, answer in answers.items():
        ask("single_hop", group, [group], answer)
        ask("paraphrase", group, [group], answer)
    ask("knowledge_update", "home", ["home_new"], values["city_new"])
    ask("knowledge_update", "job", ["job_new"], values["job_new"])
    ask("knowledge_update", "inst", ["inst_new"], values["inst_new"])
    ask("multi_hop", "pets", ["pet1", "pet2"], f"{values['pet1']} and {values['pet2']}")
    ask("multi_hop", "sib_city", ["sibling", "sib_city"], values["sib_city"])
    ask(
        "multi_hop",
        "friend",
        ["friend", "friend_news"],
        news.answer,
        text=news.ask.format(**values),
        template=f"{split}:news-q:{news_index}",
    )
    for number, (phrase, _day) in enumerate(recent):
        choice = rng.randrange(len(bank.temporal_asks))
        event_index, item = events[number]
        ask(
            "temporal",
            "time",
            [item.key],
            bank.events[event_index].answer,
            text=bank.temporal_asks[choice].format(when=phrase.phrase),
            template=f"{split}:q:time:{choice}",
        )
    for event_index, item in rng.sample(events, 2):
        event = bank.events[event_index]
        choice = rng.randrange(len(event.when))
        ask(
            "temporal",
            "when",
            [item.key],
            f"{item.day} days ago",
            text=event.when[choice].format(**values),
            template=f"{split}:q:when:{event.key}:{choice}",
        )
    return questions


def generate(
    split: str,
    *,
    seed: int = 12,
    users: int = 10,
    sessions: int = 50,
    now: datetime | None = None,
) -> Dataset:
    """``users`` users of the ``split`` bank (``dev`` or ``heldout``), dated back from ``now``."""
    if split not in BANKS:
        raise ValueError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    moment = now or datetime.now(UTC)
    return Dataset(
        split,
        seed,
        moment,
        tuple(generate_user(split, seed, i, moment, sessions=sessions) for i in range(users)),
    )


def bank_templates(split: str) -> set[str]:
    """Every sentence template of a bank (statements, questions, small talk), as written."""
    bank = BANKS[split]
    found = {t for ts in bank.facts.values() for t in ts}
    found |= {t for kinds in bank.questions.values() for ts in kinds.values() for t in ts}
    found |= {n.say for n in bank.friend_news} | {n.ask for n in bank.friend_news}
    found |= {t for e in bank.events for t in (*e.say, *e.when)}
    found |= set(bank.temporal_asks) | set(bank.chitchat) | set(bank.extra["hard"])
    found |= {t for ts in bank.replies.values() for t in ts}
    return found


def bank_values(split: str) -> set[str]:
    """The names, places, pets, jobs and other values a bank fills its templates with."""
    bank = BANKS[split]
    lists = [
        bank.female,
        bank.male,
        bank.pets,
        bank.species,
        bank.cities,
        bank.places,
        bank.jobs,
        bank.allergens,
        bank.cuisines,
        bank.instruments,
        bank.months,
        bank.reasons,
        bank.friend_rels,
        *bank.fillers.values(),
    ]
    found = {value for values in lists for value in values if value}
    return found | {p.phrase for p in bank.time_phrases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--split", choices=SPLITS, default="dev")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    data = generate(args.split, seed=args.seed, users=args.users)
    for user in data.users:
        for session in user.sessions:
            print(f"## {session.id} {session.started_at:%Y-%m-%d}")
            for turn in session.turns:
                print(f"  {turn.role:9} {turn.text}")
        for question in user.questions:
            print(f"Q [{question.kind}] {question.text} -> {question.answer} {question.evidence}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
