"""The labelled set of benchmarks/curiosity.py: messages, what the assistant already
knows (memories and history), and the knowledge gaps a careful reader would name.

Written by hand before curiosity was measured on it, and not changed after. A
gap is a specific thing the message names or asks about (a person, place,
organisation, product, coined or technical term) that none of the known texts
mentions. Not gaps: the user and the assistant, pronouns, dates and times,
numbers, quantities and units, greetings, and everyday words used generically
("my car", "dinner", "the weather"). A name the user only mentions in passing is
still a gap (the assistant does not know it); the ``category`` says which kind
of message each is, so the results can be read per kind.

Each case is ``(category, message, known, gaps)``; ``gaps`` lists the topics
(any wording whose words are a run of the gold topic's, or the reverse, matches).
"""

from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    category: str
    message: str
    known: list[str]
    gaps: list[str]


NONE: list[str] = []

CASES: list[Case] = [
    # -- questions about an unknown person, place or thing ----------------------------
    Case("ask_unknown", "Who is Zorblax Quintero?", NONE, ["Zorblax Quintero"]),
    Case("ask_unknown", "who is Mirela Vostok", NONE, ["Mirela Vostok"]),
    Case("ask_unknown", "What is Quorvex?", NONE, ["Quorvex"]),
    Case("ask_unknown", "Tell me about Lake Brindamoor.", NONE, ["Lake Brindamoor"]),
    Case("ask_unknown", "What do you know about Helvetica Ortiz?", NONE, ["Helvetica Ortiz"]),
    Case("ask_unknown", "Where is Port Saldane?", NONE, ["Port Saldane"]),
    Case("ask_unknown", "Have you heard of the Tarrow Institute?", NONE, ["Tarrow Institute"]),
    Case("ask_unknown", "Can you explain what Drelmware does?", NONE, ["Drelmware"]),
    Case("ask_unknown", "What's Kessling Labs working on these days?", NONE, ["Kessling Labs"]),
    Case("ask_unknown", "Who was Admiral Penhallow?", NONE, ["Admiral Penhallow"]),
    Case("ask_unknown", "Is Ostrava Dynamics a good employer?", NONE, ["Ostrava Dynamics"]),
    Case("ask_unknown", "When did Talia Brenner join the team?", NONE, ["Talia Brenner"]),
    Case("ask_unknown", "How old is Bartholomew Quince?", NONE, ["Bartholomew Quince"]),
    Case("ask_unknown", "Do you know where Fenwick Street is?", NONE, ["Fenwick Street"]),
    Case("ask_unknown", "What does Yorvan Systems sell?", NONE, ["Yorvan Systems"]),
    Case("ask_unknown", "Why is Castel Durmont so famous?", NONE, ["Castel Durmont"]),
    Case("ask_unknown", "tell me more about Project Halcyon", NONE, ["Project Halcyon"]),
    Case("ask_unknown", "Who are the Velmont Brothers?", NONE, ["Velmont Brothers"]),
    Case("ask_unknown", "What is the Orrin Protocol used for?", NONE, ["Orrin Protocol"]),
    Case("ask_unknown", "Which city is Granby Hall in?", NONE, ["Granby Hall"]),
    Case("ask_unknown", "What's the population of Veltria?", NONE, ["Veltria"]),
    Case("ask_unknown", "How do I install Pomegrid on my laptop?", NONE, ["Pomegrid"]),
    Case("ask_unknown", "Is Dr. Anselm Coyle still at the clinic?", NONE, ["Anselm Coyle"]),
    Case("ask_unknown", "What did Juniper Okafor say about the budget?", NONE, ["Juniper Okafor"]),
    Case("ask_unknown", "Can you summarise the Marrow Report for me?", NONE, ["Marrow Report"]),
    # -- questions about an unknown term, lower case or quoted ------------------------
    Case("ask_term", "What is a flumpet?", NONE, ["flumpet"]),
    Case("ask_term", "what's a glimmerwick", NONE, ["glimmerwick"]),
    Case("ask_term", 'What does "snorfling" mean?', NONE, ["snorfling"]),
    Case("ask_term", "What is photosynthesis?", NONE, ["photosynthesis"]),
    Case("ask_term", "what are quarks made of?", NONE, ["quarks"]),
    Case("ask_term", "Tell me about the blockchain trilemma.", NONE, ["blockchain trilemma"]),
    Case("ask_term", "What is a monad in functional programming?", NONE, ["monad"]),
    Case("ask_term", "What does 'hygge' mean?", NONE, ["hygge"]),
    Case("ask_term", "What is the capital of Freedonia?", NONE, ["capital of Freedonia"]),
    Case("ask_term", "What is the boiling point of mercury?", NONE, ["boiling point of mercury"]),
    Case("ask_term", "What are tardigrades?", NONE, ["tardigrades"]),
    Case("ask_term", 'Have you ever heard the word "crumbilicious"?', NONE, ["crumbilicious"]),
    Case("ask_term", "What is a zettelkasten?", NONE, ["zettelkasten"]),
    Case("ask_term", "Explain the theory of plate tectonics.", NONE, ["plate tectonics"]),
    Case("ask_term", "what is sourdough starter", NONE, ["sourdough starter"]),
    Case("ask_term", "Who invented the telephone?", NONE, ["telephone"]),
    Case("ask_term", "What is the speed of light?", NONE, ["speed of light"]),
    Case("ask_term", "Tell me about mitochondria", NONE, ["mitochondria"]),
    Case("ask_term", "What does the term 'grokking' mean?", NONE, ["grokking"]),
    # -- unknown names mentioned in passing ---------------------------------------------
    Case("mention_unknown", "I had lunch with Priya Raman today.", NONE, ["Priya Raman"]),
    Case("mention_unknown", "My cousin moved to Tamsworth last year.", NONE, ["Tamsworth"]),
    Case("mention_unknown", "We are flying with Aerolux to the conference.", NONE, ["Aerolux"]),
    Case(
        "mention_unknown",
        "I started reading The Glass Orchard yesterday.",
        NONE,
        ["The Glass Orchard"],
    ),
    Case(
        "mention_unknown",
        "Can you remind me to call Desmond Achebe at five?",
        NONE,
        ["Desmond Achebe"],
    ),
    Case(
        "mention_unknown",
        "I met Quintero at the gym, what should I cook tonight?",
        NONE,
        ["Quintero"],
    ),
    Case(
        "mention_unknown",
        "Our new manager, Hollis Varga, starts on Monday.",
        NONE,
        ["Hollis Varga"],
    ),
    Case(
        "mention_unknown",
        "I'm taking the train from Eastleigh Junction tomorrow.",
        NONE,
        ["Eastleigh Junction"],
    ),
    Case("mention_unknown", "My daughter loves the band Neon Harbour.", NONE, ["Neon Harbour"]),
    Case(
        "mention_unknown", "I bought a Kestrel 9 phone and the battery is bad.", NONE, ["Kestrel 9"]
    ),
    Case("mention_unknown", "Write a short birthday note for Ingrid.", NONE, ["Ingrid"]),
    Case("mention_unknown", "I think Paris is lovely in spring.", NONE, ["Paris"]),
    Case(
        "mention_unknown",
        "Marcus and I went hiking near Brennock Falls.",
        NONE,
        ["Marcus", "Brennock Falls"],
    ),
    Case("mention_unknown", "The meeting with Orbis Capital went well.", NONE, ["Orbis Capital"]),
    Case(
        "mention_unknown",
        "Tomorrow I visit Aunt Lidwina in Grauheim.",
        NONE,
        ["Lidwina", "Grauheim"],
    ),
    Case("mention_unknown", "I need a gift idea for Theo, he likes trains.", NONE, ["Theo"]),
    Case(
        "mention_unknown",
        "Draft an email to Yusuf about the Halvorsen account.",
        NONE,
        ["Yusuf", "Halvorsen"],
    ),
    Case(
        "mention_unknown",
        "I just finished the Duskfall trilogy, any similar books?",
        NONE,
        ["Duskfall"],
    ),
    Case("mention_unknown", "Rosalind says hello.", NONE, ["Rosalind"]),
    Case(
        "mention_unknown", "We adopted a cat from Whisker Haven shelter.", NONE, ["Whisker Haven"]
    ),
    # -- several gaps in one message ------------------------------------------------------
    Case(
        "several",
        "Is Zorblax Quintero related to Mira Voss?",
        NONE,
        ["Zorblax Quintero", "Mira Voss"],
    ),
    Case("several", "Compare Quorvex and Drelmware for me.", NONE, ["Quorvex", "Drelmware"]),
    Case(
        "several",
        "Did Leonardo da Vinci ever visit the Bank of America?",
        NONE,
        ["Leonardo da Vinci", "Bank of America"],
    ),
    Case(
        "several",
        "Who is taller, Anika Brandt or Felix Morrow?",
        NONE,
        ["Anika Brandt", "Felix Morrow"],
    ),
    Case(
        "several",
        "What is the link between Castor Mining and the Pell Foundation?",
        NONE,
        ["Castor Mining", "Pell Foundation"],
    ),
    Case(
        "several",
        "Tell me about Oren Vale and Sasha Lindqvist.",
        NONE,
        ["Oren Vale", "Sasha Lindqvist"],
    ),
    Case(
        "several",
        "I'm choosing between Lumora and Vexa for my thesis software.",
        NONE,
        ["Lumora", "Vexa"],
    ),
    Case("several", "Should I visit Kyoto or Hoi An first?", NONE, ["Kyoto", "Hoi An"]),
    # -- French ---------------------------------------------------------------------------------
    Case("french", "Qui est Marie Curie ?", NONE, ["Marie Curie"]),
    Case("french", "Qu'est-ce que le zorblax ?", NONE, ["zorblax"]),
    Case("french", "C'est quoi un flumpet ?", NONE, ["flumpet"]),
    Case("french", "Parle-moi de la Tour Brandeval.", NONE, ["Tour Brandeval"]),
    Case("french", "Qui était Gaston Lerouge ?", NONE, ["Gaston Lerouge"]),
    Case("french", "J'ai dîné avec Camille Fournier hier soir.", NONE, ["Camille Fournier"]),
    Case("french", "Qu'est-ce que la photosynthèse ?", NONE, ["photosynthèse"]),
    Case("french", "Bonjour, comment ça va ?", NONE, NONE),
    Case("french", "Merci beaucoup pour ton aide !", NONE, NONE),
    Case("french", "Qui est Élodie Brûlé ?", ["Élodie Brûlé joue aux échecs le mardi."], NONE),
    # -- names the memories know ------------------------------------------------------------
    Case(
        "known_memory",
        "Who is Zorblax Quintero?",
        ["Zorblax Quintero is a painter from Lyon."],
        NONE,
    ),
    Case(
        "known_memory", "What is Quorvex?", ["Quorvex is the accounting tool we use at work."], NONE
    ),
    Case(
        "known_memory",
        "When is Priya Raman's birthday?",
        ["Priya Raman is my best friend; her birthday is in May."],
        NONE,
    ),
    Case(
        "known_memory",
        "Tell me about Project Halcyon.",
        ["Project Halcyon is my team's migration to the cloud."],
        NONE,
    ),
    Case("known_memory", "How is Mira Voss doing?", ["Mira Voss is my sister."], NONE),
    Case(
        "known_memory",
        "Where does Hollis Varga live?",
        ["My manager Hollis Varga lives in Tamsworth."],
        NONE,
    ),
    Case(
        "known_memory", "what is a flumpet", ["A flumpet is a brass horn with three valves."], NONE
    ),
    Case(
        "known_memory",
        "Remind me what the Orrin Protocol is.",
        ["The Orrin Protocol is how we hand over on-call duty."],
        NONE,
    ),
    Case(
        "known_memory", "Is Kessling Labs hiring?", ["I applied to Kessling Labs in March."], NONE
    ),
    Case(
        "known_memory",
        "Should I bring flowers for Aunt Lidwina?",
        ["Aunt Lidwina loves tulips."],
        NONE,
    ),
    Case(
        "known_memory",
        "What does Yorvan Systems sell again?",
        ["Yorvan Systems sells solar inverters."],
        NONE,
    ),
    Case(
        "known_memory",
        "Did Theo like the train set?",
        ["I bought Theo a train set for his birthday."],
        NONE,
    ),
    Case(
        "known_memory",
        "How far is Tamsworth from Eastleigh Junction?",
        ["My cousin lives in Tamsworth.", "I commute through Eastleigh Junction."],
        NONE,
    ),
    Case("known_memory", "Who is MIRA VOSS?", ["mira voss is my sister"], NONE),
    Case("known_memory", "Tell me about Zorblax's paintings.", ["Zorblax paints seascapes."], NONE),
    Case(
        "known_memory",
        "Is Zorblax Quintero related to Mira Voss?",
        ["Mira Voss is Alice's sister.", "Zorblax Quintero is a painter."],
        NONE,
    ),
    Case(
        "known_memory",
        "Compare Lumora and Vexa again.",
        ["Lumora is free; Vexa costs 40 euros."],
        NONE,
    ),
    Case(
        "known_memory",
        "What's a glimmerwick?",
        ["A glimmerwick is the candle my grandmother made."],
        NONE,
    ),
    Case("known_memory", "How's Rosalind?", ["Rosalind is my neighbour."], NONE),
    Case("known_memory", "Call Desmond Achebe tomorrow.", ["Desmond Achebe is my dentist."], NONE),
    # -- names the history knows (said earlier in the conversation) ------------------------
    Case(
        "known_history",
        "Who is Talia Brenner?",
        ["Talia Brenner joined my team today.", "Congratulations to her!"],
        NONE,
    ),
    Case(
        "known_history",
        "And where is Port Saldane?",
        ["I am sailing to Port Saldane next week.", "That sounds lovely."],
        NONE,
    ),
    Case(
        "known_history",
        "What did Juniper Okafor decide?",
        ["Juniper Okafor is deciding on the budget.", "Let me know what she decides."],
        NONE,
    ),
    Case(
        "known_history",
        "Is the Marrow Report finished?",
        ["I'm writing the Marrow Report.", "Good luck with it."],
        NONE,
    ),
    Case(
        "known_history",
        "Tell me again about Neon Harbour.",
        ["My daughter loves Neon Harbour.", "Neon Harbour is a band she likes."],
        NONE,
    ),
    Case(
        "known_history",
        "Does Aerolux allow pets?",
        ["We are flying with Aerolux.", "Have a good flight!"],
        NONE,
    ),
    Case(
        "known_history",
        "How long is the Duskfall trilogy?",
        ["I'm reading the Duskfall trilogy.", "Enjoy it!"],
        NONE,
    ),
    Case(
        "known_history",
        "What is the Tarrow Institute?",
        [
            "You asked about the Tarrow Institute.",
            "The Tarrow Institute is a research centre in your notes.",
        ],
        NONE,
    ),
    Case(
        "known_history",
        "Is Whisker Haven open on Sundays?",
        ["We adopted a cat from Whisker Haven.", "How lovely."],
        NONE,
    ),
    Case(
        "known_history",
        "what's quorvex",
        ["Quorvex crashed again.", "Sorry to hear that Quorvex crashed."],
        NONE,
    ),
    # -- small talk, thanks and requests with no topic --------------------------------------
    Case("small_talk", "hello", NONE, NONE),
    Case("small_talk", "Hello, how are you?", NONE, NONE),
    Case("small_talk", "hi there!", NONE, NONE),
    Case("small_talk", "Thanks, that helps a lot.", NONE, NONE),
    Case("small_talk", "OK, see you tomorrow.", NONE, NONE),
    Case("small_talk", "Good morning!", NONE, NONE),
    Case("small_talk", "Can you help me write an email?", NONE, NONE),
    Case("small_talk", "I'm tired today.", NONE, NONE),
    Case("small_talk", "That's funny.", NONE, NONE),
    Case("small_talk", "Please make it shorter.", NONE, NONE),
    Case("small_talk", "Yes, go on.", NONE, NONE),
    Case("small_talk", "No, I meant the other one.", NONE, NONE),
    Case("small_talk", "What should I cook tonight?", NONE, NONE),
    Case("small_talk", "Give me three ideas for a rainy afternoon.", NONE, NONE),
    Case("small_talk", "I think so. It is nice out.", NONE, NONE),
    Case("small_talk", "Sorry, I was away.", NONE, NONE),
    Case("small_talk", "Can you say that again more simply?", NONE, NONE),
    Case("small_talk", "I love you, assistant!", NONE, NONE),
    Case("small_talk", "Why?", NONE, NONE),
    Case("small_talk", "How do I stay focused when I work from home?", NONE, NONE),
    # -- about the assistant or the user ---------------------------------------------------
    Case("self", "What is your name?", NONE, NONE),
    Case("self", "Who are you?", NONE, NONE),
    Case("self", "What are you able to do?", NONE, NONE),
    Case("self", "Who made you?", NONE, NONE),
    Case("self", "What is my sister's name?", ["My sister's name is Amélie."], NONE),
    Case("self", "Where do I work?", ["I work at the bakery on the corner."], NONE),
    Case("self", "What did I tell you about my dog?", ["My dog is called Rex."], NONE),
    Case("self", "Do you remember my favourite colour?", ["My favourite colour is green."], NONE),
    Case("self", "What's my plan for the weekend?", ["This weekend I will paint the fence."], NONE),
    Case("self", "Tell me about yourself.", NONE, NONE),
    # -- arithmetic, conversions, dates and times -----------------------------------------
    Case("numbers", "What is 17 * 23?", NONE, NONE),
    Case("numbers", "what's 2^10", NONE, NONE),
    Case("numbers", "What is 5 km in miles?", NONE, NONE),
    Case("numbers", "How many centimetres is 5 feet?", NONE, NONE),
    Case("numbers", "What time is it?", NONE, NONE),
    Case("numbers", "What day is it today?", NONE, NONE),
    Case("numbers", "What is 15% of 80?", NONE, NONE),
    Case("numbers", "What is the product of 48 and 52?", NONE, NONE),
    Case("numbers", "Convert 30 degrees Celsius to Fahrenheit.", NONE, NONE),
    Case("numbers", "What time is it on Monday in the morning?", NONE, NONE),
    Case("numbers", "How many days until December 25?", NONE, NONE),
    Case("numbers", "What is half of 90?", NONE, NONE),
    Case("numbers", "Is 97 a prime number?", NONE, NONE),
    Case("numbers", "what's 3 + 4 * 2", NONE, NONE),
    Case("numbers", "How long is 90 minutes in hours?", NONE, NONE),
    Case("numbers", "Add 2 hours to 10:30.", NONE, NONE),
    # -- sentence-initial capitals and everyday words -------------------------------------
    Case("everyday", "Dinner was great tonight.", NONE, NONE),
    Case("everyday", "Running makes me happy.", NONE, NONE),
    Case("everyday", "What's the weather like?", NONE, NONE),
    Case("everyday", "My car broke down again.", NONE, NONE),
    Case("everyday", "Coffee or tea in the morning?", NONE, NONE),
    Case("everyday", "Reading before bed helps me sleep.", NONE, NONE),
    Case("everyday", "Should I buy a new laptop?", NONE, NONE),
    Case("everyday", "The kids are at school.", NONE, NONE),
    Case("everyday", "Please remind me to water the plants.", NONE, NONE),
    Case("everyday", "Is it better to walk or cycle to work?", NONE, NONE),
    Case("everyday", "I need to clean the kitchen.", NONE, NONE),
    Case("everyday", "Monday is always busy.", NONE, NONE),
    Case("everyday", "Tomorrow I start my new job.", NONE, NONE),
    Case("everyday", "Gardening is relaxing.", NONE, NONE),
    Case("everyday", "Make a shopping list: eggs, milk, bread.", NONE, NONE),
]


# Written after the fixes the first measurement led to, and measured once, to see
# whether they hold on messages they were not made from. Same labelling rules.
HELD_OUT: list[Case] = [
    Case("ask_unknown", "Who is Ottoline Farrow?", NONE, ["Ottoline Farrow"]),
    Case("ask_unknown", "What's Brackwater Cove like in summer?", NONE, ["Brackwater Cove"]),
    Case("ask_unknown", "Tell me about the Sable Accord.", NONE, ["Sable Accord"]),
    Case("ask_unknown", "How do I configure Trellisync?", NONE, ["Trellisync"]),
    Case("ask_unknown", "Is Mr. Quillon Abara available on Friday?", NONE, ["Quillon Abara"]),
    Case("ask_unknown", "Where is the Vantor Gallery?", NONE, ["Vantor Gallery"]),
    Case("ask_unknown", "Who's Perpetua Lindgren?", NONE, ["Perpetua Lindgren"]),
    Case("ask_unknown", "What does Halberd Metrics do?", NONE, ["Halberd Metrics"]),
    Case("ask_unknown", "Why did Corvin Ashby leave the band?", NONE, ["Corvin Ashby"]),
    Case(
        "ask_unknown", "Can you tell me who founded Ardent Mills Ltd?", NONE, ["Ardent Mills Ltd"]
    ),
    Case("ask_term", "What is a snickelway?", NONE, ["snickelway"]),
    Case("ask_term", 'What does "frabjous" mean?', NONE, ["frabjous"]),
    Case("ask_term", "what are neutrinos", NONE, ["neutrinos"]),
    Case("ask_term", "Tell me about quantum entanglement.", NONE, ["quantum entanglement"]),
    Case(
        "ask_term", "What is the tallest mountain in Africa?", NONE, ["tallest mountain in Africa"]
    ),
    Case("ask_term", "Describe the water cycle.", NONE, ["water cycle"]),
    Case("mention_unknown", "I'm meeting Ezinne for coffee at noon.", NONE, ["Ezinne"]),
    Case("mention_unknown", "Send Kaito the slides from Tuesday.", NONE, ["Kaito"]),
    Case("mention_unknown", "Book a table at Osteria Lupa for four.", NONE, ["Osteria Lupa"]),
    Case("mention_unknown", "My brother works for Calder & Finch now.", NONE, ["Calder", "Finch"]),
    Case(
        "mention_unknown",
        "We watched Midnight at Pellham last night.",
        NONE,
        ["Midnight at Pellham"],
    ),
    Case("mention_unknown", "Email Prof. Ramona Iguchi about the thesis.", NONE, ["Ramona Iguchi"]),
    Case(
        "mention_unknown", "Ask Bertil whether the Volga room is free.", NONE, ["Bertil", "Volga"]
    ),
    Case("mention_unknown", "I'm so proud of Anouk, she passed her exam!", NONE, ["Anouk"]),
    Case("mention_unknown", "Our flight to Reykjavik leaves at six.", NONE, ["Reykjavik"]),
    Case("mention_unknown", "Lorenzo recommended a book.", NONE, ["Lorenzo"]),
    Case("french", "Qui est Ottoline Farrow ?", NONE, ["Ottoline Farrow"]),
    Case("french", "C'est quoi la Cité Velours ?", NONE, ["Cité Velours"]),
    Case("french", "J'ai vu Margaux au marché.", NONE, ["Margaux"]),
    Case("french", "Salut, ça va bien ?", NONE, NONE),
    Case("known_memory", "Who is Ottoline Farrow?", ["Ottoline Farrow is my piano teacher."], NONE),
    Case(
        "known_memory",
        "How do I configure Trellisync?",
        ["Trellisync is configured in settings, sync tab."],
        NONE,
    ),
    Case("known_memory", "Send Kaito the slides.", ["Kaito is my colleague in Osaka."], NONE),
    Case(
        "known_memory",
        "What's Brackwater Cove like?",
        ["We rented a cottage at Brackwater Cove."],
        NONE,
    ),
    Case(
        "known_memory",
        "Is Ezinne still in Lagos?",
        ["Ezinne moved to Lagos.", "Lagos is hot in March."],
        NONE,
    ),
    Case(
        "known_memory",
        "Tell me about the Sable Accord again.",
        ["The Sable Accord is our office's noise agreement."],
        NONE,
    ),
    Case(
        "known_history",
        "Who is Corvin Ashby?",
        ["Corvin Ashby plays bass in my band.", "Nice!"],
        NONE,
    ),
    Case(
        "known_history",
        "What's a snickelway?",
        ["A snickelway is an alley in York.", "Thanks for telling me."],
        NONE,
    ),
    Case("small_talk", "Hey, good evening.", NONE, NONE),
    Case("small_talk", "Thank you so much!", NONE, NONE),
    Case("small_talk", "Can you make that list shorter?", NONE, NONE),
    Case("small_talk", "What should I do this weekend?", NONE, NONE),
    Case("small_talk", "Help me plan a birthday party.", NONE, NONE),
    Case("small_talk", "I'm bored.", NONE, NONE),
    Case("small_talk", "Write it again, but funnier.", NONE, NONE),
    Case("self", "What's your favourite colour?", NONE, NONE),
    Case("self", "Where do I live?", ["I live in a flat by the river."], NONE),
    Case("self", "Who am I?", NONE, NONE),
    Case("numbers", "What is 12 squared?", NONE, NONE),
    Case("numbers", "What's 20 percent more than 150?", NONE, NONE),
    Case("numbers", "How many kilograms is 10 pounds?", NONE, NONE),
    Case("numbers", "What is the sum of 7 and 8?", NONE, NONE),
    Case("numbers", "What time is it in the evening on Saturdays?", NONE, NONE),
    Case("numbers", "Convert 5 miles to kilometres.", NONE, NONE),
    Case("everyday", "Breakfast was late today.", NONE, NONE),
    Case("everyday", "Swimming is hard.", NONE, NONE),
    Case("everyday", "What's the best way to cook rice?", NONE, NONE),
    Case("everyday", "Should I take an umbrella?", NONE, NONE),
    Case("everyday", "Check my shopping list.", NONE, NONE),
    Case("everyday", "Remind me to call the plumber.", NONE, NONE),
]
