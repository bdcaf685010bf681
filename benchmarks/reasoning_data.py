"""The labelled set of benchmarks/reasoning.py, written before the benchmark first ran.

Each item is a message and its expected answer: a number (compared to the
hint's first number to 0.1%, as the six significant digits of a conversion
allow) or a time of day "HH:MM". Expected values are worked out here by hand
from the definitions (1 ft = 30.48 cm exactly, °F = °C × 9/5 + 32...), not
taken from monGARS. Ages are relative to TODAY. ``NEGATIVE`` messages are
ordinary chat with numbers in it: no hint should come of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

TODAY = date(2026, 12, 1)


@dataclass(frozen=True)
class Item:
    category: str
    """``direct``, ``phrasing`` or ``word_problem``."""
    group: str
    """What the phrasing exercises (``words``, ``units``, ``time``, ``age``...)."""
    message: str
    expected: str


def _items(category: str, group: str, pairs: list[tuple[str, float | str]]) -> list[Item]:
    return [Item(category, group, message, str(expected)) for message, expected in pairs]


DIRECT = _items(
    "direct",
    "notation",
    [
        ("What is 17 * 23?", 391),
        ("23 + 19", 42),
        ("what's 1000 - 1", 999),
        ("Calculate 144 / 12", 12),
        ("(4 + 6) * 3", 30),
        ("2^8", 256),
        ("3 ** 4", 81),
        ("What is 12.5 * 8?", 100),
        ("1,250 - 375", 875),
        ("sqrt(49)", 7),
        ("√225", 15),
        ("what is 7 x 8", 56),
        ("9 × 12", 108),
        ("100 ÷ 4", 25),
        ("What is 0.1 + 0.7?", 0.8),
        ("-5 + 12", 7),
        ("What is 45 - 60?", -15),
        ("2 * (3 + 4) - 5", 9),
        ("compute 81 / 9 + 2", 11),
        ("99 * 99", 9801),
        ("What is 12% of 250?", 30),
        ("what is 40 percent of 90", 36),
        ("6 times 7", 42),
        ("What is 56 divided by 8?", 7),
        ("15 plus 27", 42),
        ("100 minus 37", 63),
        ("9 multiplied by 6", 54),
        ("what is 13 squared", 169),
        ("4 cubed", 64),
        ("2 to the power of 12", 4096),
        ("17 mod 4", 1),
        ("What is 3.5 + 2.25?", 5.75),
        ("1/8", 0.125),
        ("What's 22 / 7?", 3.14286),
        ("evaluate (10 - 2) / (3 + 1)", 2),
        ("5 * 5 * 5", 125),
        ("What is 250 + 750?", 1000),
        ("what is 11 * 11 * 11", 1331),
        ("1000000 / 1000", 1000),
        ("What is 2.5 * 2.5?", 6.25),
        ("7 - 10", -3),
        ("what is 3 + 4 * 5", 23),
        ("(3 + 4) * 5", 35),
        ("What is 18 / 4?", 4.5),
        ("square root of 169", 13),
        ("What is 60 * 24?", 1440),
        ("365 * 24", 8760),
        ("what is 1.5 * 60", 90),
        ("What is 2^0?", 1),
        ("10 / 4 * 2", 5),
        ("What is 48 + 52?", 100),
        ("calculate 3 * 3 + 4 * 4", 25),
        ("What is 1234 + 5678?", 6912),
        ("75% of 40", 30),
        ("8 + 8 + 8 + 8", 32),
        ("What is 9 - 3 - 2?", 4),
        ("what is 64 / 8 / 2", 4),
        ("work out 19 * 21", 399),
        ("What is 0.5 * 0.5?", 0.25),
        ("What is 1,000 * 12?", 12000),
        ("12 * 12 =", 144),
        ("What is 333 + 667?", 1000),
    ],
)

PHRASING = (
    _items(
        "phrasing",
        "operations",
        [
            ("What is the product of 48 and 52?", 2496),
            ("the sum of 17, 25 and 8", 50),
            ("What's the difference between 120 and 45?", 75),
            ("what is half of 86", 43),
            ("What is a third of 72?", 24),
            ("what is a quarter of 200", 50),
            ("What is two thirds of 90?", 60),
            ("what is three quarters of 48", 36),
            ("What is twice 37?", 74),
            ("double 125?", 250),
            ("What's the average of 3, 5 and 10?", 6),
            ("the mean of 4, 8, 15 and 21", 12),
            ("What is 20 percent more than 150?", 180),
            ("what is 10% less than 80", 72),
            ("What is 15% of 80?", 12),
            ("divide 84 by 7", 12),
            ("What is the square root of 196?", 14),
            ("multiply 13 by 14", 182),
            ("subtract 18 from 100", 82),
            ("add 45 and 55", 100),
            ("Add 19 to 23", 42),
            ("what is 7 more than 28", 35),
            ("What is 12 less than 50?", 38),
            ("what is the sum of 1.5 and 2.75", 4.25),
            ("What is the quotient of 144 and 12?", 12),
            ("What is the remainder when 29 is divided by 6?", 5),
            ("increase 80 by 25%", 100),
            ("reduce 250 by 40%", 150),
            ("What percent of 50 is 12?", 24),
            ("18 is what percentage of 72?", 25),
            ("what is the cube root of 125", 5),
            ("What is the square of 15?", 225),
            ("what is 2 to the 5th power", 32),
            ("How many times does 9 go into 108?", 12),
            ("what is the product of 2, 3 and 7", 42),
            ("Take 15 away from 40", 25),
            ("what is 30% off 60", 42),
            ("What is the total of 120, 80 and 50?", 250),
            ("what is a fifth of 35", 7),
            ("What is the percentage change from 40 to 50?", 25),
        ],
    )
    + _items(
        "phrasing",
        "words",
        [
            ("what is forty-eight times fifty-two", 2496),
            ("What is two hundred and five plus ninety-five?", 300),
            ("three point five times four", 14),
            ("What is twelve divided by four?", 3),
            ("what is the product of six and seven", 42),
            ("What's half of one hundred?", 50),
            ("what is the sum of ten, twenty and thirty", 60),
            ("one thousand minus one", 999),
            ("What is seventy-five percent of two hundred?", 150),
            ("what is the square root of eighty-one", 9),
            ("nineteen plus twenty-three", 42),
            ("What is the average of two, four and nine?", 5),
            ("quarante-huit fois deux", 96),
            ("combien font vingt et un plus vingt et un", 42),
            ("what is a dozen times three", 36),
        ],
    )
    + _items(
        "phrasing",
        "units",
        [
            ("How many centimetres is 5 feet?", 152.4),
            ("5 feet in centimetres", 152.4),
            ("What is 30 degrees Celsius in Fahrenheit?", 86),
            ("convert 3 miles to km", 4.828032),
            ("How many inches are in 2 metres?", 78.7402),
            ("how many grams is 2.5 kilograms", 2500),
            ("10 kg in pounds", 22.0462),
            ("What's 98.6 °F in Celsius?", 37),
            ("how many metres are there in 3.5 km", 3500),
            ("convert 2 gallons into litres", 7.570823568),
            ("How many minutes are in 3.5 hours?", 210),
            ("100 km/h in mph", 62.1371),
            ("how many feet is 100 metres", 328.084),
            ("What is 0 degrees Fahrenheit in Celsius?", -17.7778),
            ("How many ounces in 3 pounds?", 48),
            ("convert twenty miles to kilometres", 32.18688),
            ("how many seconds are there in an hour", 3600),
            ("What is 250 ml in cups?", 1.05669),
            ("6 feet equals how many centimeters?", 182.88),
            ("how many kilometres is a marathon of 26.2 miles", 42.16481),
        ],
    )
    + _items(
        "phrasing",
        "time",
        [
            ("What time is it 45 minutes after 10:30?", "11:15"),
            ("what time is 2 hours and 15 minutes after 9pm", "23:15"),
            ("What time will it be 3 hours after 11am?", "14:00"),
            ("what is 10:45 plus 30 minutes", "11:15"),
            ("What time was it 90 minutes before 8:00?", "06:30"),
            ("It's 9:15 now. What time will it be in 2 hours?", "11:15"),
            ("what time is 20 minutes before noon", "11:40"),
            ("What time is 1 hour 30 minutes after 23:00?", "00:30"),
            (
                "If the film starts at 7:40 pm and lasts 2 hours, when does it end? 2 "
                "hours after 7:40 pm",
                "21:40",
            ),
            ("what time is half an hour after 6:45", "07:15"),
        ],
    )
    + _items(
        "phrasing",
        "age",
        [
            ("How old is someone born in 1990?", 36),
            ("I was born on 12 March 1985, how old am I?", 41),
            ("how old is a person born on 2000-01-15", 26),
            ("My daughter was born in 2015. How old is she?", 11),
            ("how old will I be in 2030 if I was born in 1990", 40),
            ("If I was born on 25 December 1999, how old am I?", 26),
            ("How old is someone born on 1 December 1976?", 50),
            ("what is the age of someone born in 1950", 76),
        ],
    )
)

WORD_PROBLEMS = _items(
    "word_problem",
    "word_problem",
    [
        ("I buy 3 boxes of 12 eggs and break 5. How many eggs do I have left?", 31),
        ("A pencil costs 2 dollars. How much do 9 pencils cost?", 18),
        ("There are 24 students and each table seats 4. How many tables do we need?", 6),
        ("Anna has 15 apples and gives away 6. How many apples does she have now?", 9),
        ("A train travels 60 km every hour. How far does it go in 3 hours?", 180),
        ("I had 50 euros and spent 18 on lunch. How much money is left?", 32),
        ("A garden is 8 metres long and 5 metres wide. What is its area?", 40),
        ("Tom reads 12 pages a day. How many pages does he read in 7 days?", 84),
        ("A pack has 6 bottles. How many bottles are in 5 packs?", 30),
        ("We share 36 cookies equally among 9 children. How many does each child get?", 4),
        ("Lisa is 8 years old and her brother is 3 years older. How old is her brother?", 11),
        (
            "A shop sells 45 shirts on Monday and 38 on Tuesday. How many shirts "
            "did it sell in total?",
            83,
        ),
        ("A bus has 40 seats and 27 are taken. How many seats are free?", 13),
        ("Each ticket costs 7 pounds. How much do 6 tickets cost?", 42),
        ("There are 5 rows of 11 chairs. How many chairs are there?", 55),
        ("A car uses 6 litres of fuel per 100 km. How many litres does it use for 300 km?", 18),
        ("I save 20 dollars a week. How much will I have saved after 10 weeks?", 200),
        ("A rope 30 metres long is cut into 6 equal pieces. How long is each piece?", 5),
        ("Sam has 4 bags with 25 marbles in each. How many marbles does he have?", 100),
        ("A baker makes 120 rolls and sells 85. How many rolls are left?", 35),
        ("My rent is 900 a month. How much do I pay in 12 months?", 10800),
        ("A farmer has 17 cows and buys 8 more. How many cows does he have now?", 25),
        ("There were 64 people at the party and 19 went home. How many people stayed?", 45),
        ("A box holds 24 cans. How many cans are in 3 boxes?", 72),
        (
            "I ran 5 km on Monday, 7 km on Wednesday and 6 km on Friday. How far "
            "did I run this week?",
            18,
        ),
        ("A pizza is cut into 8 slices and 3 are eaten. How many slices remain?", 5),
        ("Four friends split a bill of 96 dollars equally. How much does each pay?", 24),
        ("A cyclist rides at 15 km per hour for 4 hours. How far does she ride?", 60),
        ("A class has 14 girls and 13 boys. How many children are in the class?", 27),
        ("A water tank holds 500 litres and 120 litres are used. How much water is left?", 380),
        ("I have 3 packs of 8 batteries and use 10. How many batteries are left?", 14),
        ("A phone costs 300 and is discounted by 50. What is the new price?", 250),
        ("A recipe needs 3 eggs per cake. How many eggs do I need for 7 cakes?", 21),
        (
            "There are 52 cards in a deck and I deal 13 to each of 4 players. How "
            "many cards are dealt?",
            52,
        ),
        (
            "A school bought 15 boxes of pens with 10 pens in each box. How many pens did it buy?",
            150,
        ),
        (
            "A movie is 135 minutes long and I have watched 50 minutes. How many minutes are left?",
            85,
        ),
        ("A hotel room costs 80 per night. How much do 5 nights cost?", 400),
        ("Mia had 42 stickers and got 17 more from a friend. How many stickers does she have?", 59),
        ("A plane has 180 seats in 30 rows. How many seats are in each row?", 6),
        ("I earn 15 an hour and work 8 hours. How much do I earn?", 120),
        (
            "A jar has 100 sweets and 4 children each take 12. How many sweets are "
            "left in the jar?",
            52,
        ),
        (
            "Tickets are 12 for adults and 5 for children. What is the cost for 2 "
            "adults and 3 children?",
            39,
        ),
        ("A field has 9 rows of 14 trees. How many trees are in the field?", 126),
        (
            "Ben scored 23 points in the first game and 31 in the second. How many "
            "points did he score altogether?",
            54,
        ),
        ("A shelf holds 28 books and there are 4 shelves. How many books fit?", 112),
        ("I bought 2 shirts at 15 each and a hat for 9. How much did I spend?", 39),
        ("A runner does 400 metres per lap. How many metres are 6 laps?", 2400),
        ("There are 7 days in a week. How many days are in 9 weeks?", 63),
        ("A bag of rice weighs 5 kg. How much do 8 bags weigh?", 40),
        ("Out of 60 emails, 45 are spam. How many emails are not spam?", 15),
        ("A printer prints 20 pages a minute. How many pages does it print in 6 minutes?", 120),
        ("Jack has 3 times as many cards as Jill, who has 14. How many cards does Jack have?", 42),
        (
            "A bottle holds 750 ml and I pour out 2 glasses of 200 ml. How much is "
            "left in the bottle?",
            350,
        ),
        ("A concert hall has 1200 seats and 950 tickets were sold. How many seats are empty?", 250),
        ("Eggs come in cartons of 6. How many cartons do 48 eggs fill?", 8),
        ("A snail climbs 3 metres a day. How far does it climb in 12 days?", 36),
        ("My phone battery is at 80 and drops by 15 each hour. What is it after 2 hours?", 50),
        ("A team of 11 players each needs 2 shirts. How many shirts are needed?", 22),
        (
            "A gardener plants 6 rows with 9 tulips in each row and 4 extra "
            "tulips. How many tulips did she plant?",
            58,
        ),
        ("A sweater costs 40 and I pay with a 100 note. How much change do I get?", 60),
    ],
)

NEGATIVE = [
    "I have 2 cats and 3 dogs",
    "I have 2 cats and 3 dogs, they are lovely",
    "My flat is on the 3rd floor of a 10-storey building.",
    "I was born in 1990 and grew up in Lyon.",
    "We met at 10:30 and talked for 2 hours.",
    "Half of my friends live in Paris.",
    "I ran 5 km this morning in 30 minutes.",
    "The meeting moved from 3pm to 4pm.",
    "My son is 7 and my daughter is 10.",
    "Twice a week I go swimming.",
    "I read 3 books last month, all 300 pages or more.",
    "She scored 9 out of 10 on her test!",
    "Our team won 3-2 yesterday.",
    "My phone number ends in 4567.",
    "I bought 12 eggs and 2 loaves of bread.",
    "There were about 200 people at the concert.",
    "Version 2.1 of the app came out in 2024.",
    "I sleep 8 hours a night, sometimes less.",
    "Can you recommend a book for a 12 year old?",
    "What should I cook for 4 people tonight?",
    "I'll call you 10 minutes after 9pm.",
    "My grandmother turned 90 in March.",
    "We drove 300 km to see the lake, it was beautiful.",
    "I have two brothers and three sisters.",
    "Tell me a story about 3 little pigs.",
    "I paid 15 euros for the tickets, more than I expected.",
    "The recipe says 200 g of flour and 2 eggs.",
    "Who won the world cup in 1998?",
    "I work 9-5 on weekdays.",
    "I'd like a table for 2 at 8pm.",
]

ITEMS = DIRECT + PHRASING + WORD_PROBLEMS
