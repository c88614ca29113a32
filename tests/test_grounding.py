"""The cascade's grounding rule: a name, a colour or a said number supports a choice only where the transcript states it."""
from __future__ import annotations

import pytest

from reliability.backends.cascade.grounding import unattested

NAMES = ("Anna", "Maria", "Laura", "Sofia")
COLOURS = ("blue", "red", "green", "yellow")
KEYS = ("one", "three", "zero", "two")


@pytest.mark.parametrize(
    "question, choices, transcript, expected",
    [
        ("What is the speaker's name?", NAMES, "Welcome to the City Museum. We open at ten o'clock.", True),
        ("What is the speaker's name?", NAMES, "Hello, my name is Laura and I will be your guide.", False),
        ("What colour is the bus?", COLOURS, "The number twelve bus to the station leaves from stop four.", True),
        ("What colour is the bus?", COLOURS, "Take the red bus to the station.", False),
        ("Which key should the caller press?", KEYS, "To speak with an advocate, press 2.", False),  # digits match words
        ("Which key repeats the message?", ("4", "6", "5", "0"), "to repeat this message press five", False),
        ("In which year was this reading recorded?", ("2005", "2008", "2011", "2014"), "From fairest creatures we desire increase", True),
        ("Which make of car does the horn belong to?", ("Ford", "Toyota", "Volkswagen", "Fiat"), "", True),
        # what is heard, not said: counts, measured times, kinds of sound and languages are never held to the transcript
        ("How many people take part in this conversation?", KEYS, "hi how are you", False),
        ("Count the occurrences of the bell.", ("1", "2", "3", "4"), "", False),
        ("During which time frame is the chord played?", ("0.00 - 1.62", "1.62 - 3.24", "3.24 - 4.86", "4.86 - 6.49"), "", False),
        ("In which language is the word spoken?", ("English", "German", "Italian", "French"), "un chameau", False),
        ("Which instrument is played?", ("Piano", "Guitar", "Violin", "Flute"), "", False),
        ("Which flower is named in the recited lines?", ("a lily", "a rose", "a violet", "a tulip"), "", False),
        ("What is the speaker's name?", ("Anna",), "", False),  # one choice: nothing to weigh
    ],
)
def test_a_literal_answer_needs_the_transcript_to_state_one_of_the_choices(question, choices, transcript, expected):
    assert unattested(question, choices, transcript) is expected


def test_words_shared_by_every_choice_or_the_question_attest_nothing():
    # "platform" is in every choice and in the question; only the number tells them apart
    choices = ("Platform Two", "Platform Six", "Platform Nine", "Platform Twelve")
    assert unattested("Which platform is named for the city of the train?", choices, "the train leaves from a platform")
    assert not unattested("Which platform is named for the city of the train?", choices, "from platform nine")
