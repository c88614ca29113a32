"""Whether the evidence states any of a question's literal answers (a name, a colour, a number), for the cascade's abstention rule.

A name, a colour or a stated number cannot be heard unless someone says it: asked a speaker's
name over an announcement that names nobody, the 1.5B text model still found 1.9 nats of lift for
"Anna" in the evidence, and asked the colour of a bus that a clip only mentions, "blue" at 96 %.
Lift is the model's reading, and it can be wrong; whether the evidence contains the words is not.
So where every choice is such a literal value and not one of them occurs in the transcript, the
evidence supports none of them and the abstention rule abstains. Only the transcript counts: a sound
tag names kinds of sound ("White noise" is no colour), never a name or a number that was said. The rule reads the
question, the choices and the evidence only, never the method or the key.
"""
from __future__ import annotations

import re

NUMBER_WORDS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "noon": 12,
}
COLOURS = {
    "red", "blue", "green", "yellow", "orange", "purple", "violet", "pink", "brown", "black", "white", "grey", "gray",
    "silver", "gold", "golden", "beige", "turquoise",
}
# Questions whose Title Case choices are names of people, things or places (not kinds of sound): the
# answer is a name that must be said. "Which language" or "which instrument" are heard, not said.
ASKS_FOR_NAME = re.compile(
    r"\b(name|named|called|surname|who|whom|whose|brand|make\s+of|manufacturer|company|city|country|town)\b", re.I
)
ASKS_FOR_COLOUR = re.compile(r"\bcolou?rs?\b", re.I)
COUNTING = re.compile(r"\bhow\s+many\b|\bcount\b|\bnumber\s+of\b|\boccurrences\b", re.I)  # a count is heard (voices, barks), not said
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
STOP = {"a", "an", "the", "of", "and", "at", "in", "on", "o'clock", "it", "is", "to", "by", "for", "de", "la", "le"}


def unattested(question: str, choices: tuple[str, ...] | list[str], transcript: str) -> bool:
    """True when every choice is a literal value the clip would have to state (see the module) and none is in the transcript."""
    if len(choices) < 2 or not question or not _asks_literal(question, choices):
        return False
    heard = _words(transcript)
    heard |= {str(NUMBER_WORDS[w]) for w in heard if w in NUMBER_WORDS}
    return not any(_distinct(c, choices, question) & heard for c in choices)


def _asks_literal(question: str, choices) -> bool:
    if ASKS_FOR_COLOUR.search(question) and all(_words(c) & COLOURS for c in choices):
        return True
    if not COUNTING.search(question) and all(_numeric(c) for c in choices):
        return True
    return bool(ASKS_FOR_NAME.search(question)) and all(_title_case(c) for c in choices)


def _numeric(choice: str) -> bool:
    """A whole number, said (a key, a year, a price): measured values ("2.18 seconds", "3/4", "0:08") are heard, not said."""
    if re.search(r"[./:]\d", choice):
        return False
    words = _words(choice) - STOP - {"dollars", "euros", "pounds", "minutes", "hours", "seconds", "years", "am", "pm"}
    return bool(words) and all(w.isdigit() or w in NUMBER_WORDS for w in words)


def _title_case(choice: str) -> bool:
    words = [w for w in re.findall(r"[^\s,.-]+", choice) if w.lower() not in STOP]
    return bool(words) and all(w[0].isupper() for w in words)


def _distinct(choice: str, choices, question: str) -> set[str]:
    """A choice's own words: not shared by every choice, not in the question, not filler; numbers also as digits."""
    shared = set.intersection(*(_words(c) for c in choices))
    own = _words(choice) - shared - _words(question) - STOP
    return own | {str(NUMBER_WORDS[w]) for w in own if w in NUMBER_WORDS}


def _words(text: str) -> set[str]:
    # digit groups split ("555-0134" -> 555, 0134) so that a number read out digit by digit still matches
    return set(WORD.findall(text.lower().replace("\u2019", "'")))
