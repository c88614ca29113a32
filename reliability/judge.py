"""The judge: an LALM's free-text reply to a multiple-choice item -> chosen option, abstention or unparsed.

Rules (version JUDGE_VERSION; bump it whenever a rule below changes, because stored outcomes depend
on it). All matching ignores case, punctuation and markdown emphasis (`**B**` reads as `B`).

Where to look. If the reply has a line that starts with "Answer:" (or "Final answer:"), the last
such line (its rest, else the next non-empty line) is read first, whatever explanation follows it;
otherwise, after a final-answer marker ("The (correct) answer is", "Therefore", "Thus", "Hence",
"In conclusion"), the first non-empty line after the LAST marker. What it names is the stated
answer, even if the reply hedges elsewhere ("I'm not sure ... Answer: B" -> B; "... Answer: I don't
know" -> idk). If that line names nothing, the whole reply is read.

Reading one piece of text, the first rule that fires decides:

1. exact option text: the whole text equals one option ("woman." -> "Woman"; "Emaj/1" -> "E:maj/1":
   spacing and punctuation aside). It comes before the
   letter rule because some options are letters themselves (chord roots "G", "D"; tempo "A".."D"),
   and our prompts ask for the option's text.
   Then negation scopes options out: an option or letter right after "not", "n't", "never",
   "neither/nor", "rather than", "instead of", "rule out" (articles and "option", "sounds like"
   aside), or before "is wrong/incorrect/not correct", is removed from the text before the rules
   below read it: "It's not A." names nothing (unparsed: only rules out ...), "X, not Y" names X.
2. option letter, A up to the number of choices: the text is just a letter ("b", "(B)", "B."); it
   starts with "B.", "B)", "(B)", "[B]", "B:" or "B -"; or it has "(c)", "[c]", "Option B",
   "choice C", or a capital letter standing alone as its first or last word ("B is correct",
   "I'd go with B."). The English words "A" and "I" count only where they cannot be an article or
   a pronoun: followed by punctuation, the end, or "or/and/is/...". "N/A" is no letter. Letters
   that stand alone inside the options ("B Major", "G") are not read from free text. Two different
   letters -> no letter. When the options were shown without letters (predictions made elsewhere,
   unless told otherwise) and the letter contradicts the option that the reply's conclusion names
   (the same piece, else the sentence before the final-answer marker: "... the moo is a cow. The
   answer is C."), the named option is read and the rule says the letter was not; a reply that
   letters the options itself in the given order ("(B) Woman") keeps its letter.
3. option number: "option 2", "choice two", "the second option", "the last choice"; not where the
   number is itself an option's word (counting questions). Two positions -> none.
4. option order: where options list the same items in different orders ("car horn, dog barking" /
   "dog barking, car horn"), the last sentence that names every item is read by the order of the
   items in it ("first a car horn, then a dog barking").
   option phrase: options found as whole-word phrases ("Man" is not found in "woman"); an option
   found only inside a longer found option does not count ("a dog barking" names "Dog barking",
   not "Dog"). Exactly one left -> that option; more than one -> unparsed (the text names several).
5. unique option tokens: words (minus a few function words) that belong to exactly one option; if
   the text holds such words of exactly one option -> that option, else unparsed.
   A bare list of a few short items ("'electricity, festivity'") that shares a single word with an
   option whose other items it lacks names nothing (unparsed).
   When rules 4-5 find nothing, they run again on singular forms ("dogs" -> "dog", "women" ->
   "woman", "bells" -> "bell"); the rule then says "(inflected)".
Words are compared with a time span in prose written as the options write them: "from 1.62 to 3.24
seconds", "between 1.62 and 3.24 s", "1.62s-3.24s" read as "1.62 - 3.24" (times with a decimal
point or a colon only: "2 to 4" stays two numbers).

Abstention: phrases such as "I don't know", "I'm not sure", "I can't tell", "I am unable to
determine", "I cannot answer", "I cannot process audio", "no idea" (these with the model as the
subject, or opening the reply: "the second speaker is unsure" describes the audio), "cannot be
determined (from the audio)", "impossible to say", "no way to know", "hard to say", "IDK",
"insufficient information", "the audio does not provide enough ...", "N/A", "unclear" (opening
the reply or after "it is"), refusals ("I can't help with that", "I refuse to answer") and
capability disclaimers ("I don't have the ability to process audio", "as an AI ... cannot"),
refusals in paraphrase: saying it cannot hear, play or analyse the audio ("I'm unable to hear or
analyze audio files"), that no audio was attached, that it is a text-only model, asking for the
missing input ("Could you please provide the audio or describe it?", "please share the
conversation"), "insufficient data", an apology followed by "I can't"; and
"I don't know" / "I'm not sure" in Chinese, Spanish, French, German, Japanese, Korean, Portuguese
and Russian.
Quoted speech ("the speaker says 'I don't know'") is what someone in the audio said, not the model
abstaining; a reply that is only a quote is the model's own.
A clearly stated answer wins over a hedge: a stated final answer (after a marker), an exact option
or a letter. An option merely mentioned in a hedge (rules 4-5, "I can't tell if a dog is barking")
does not: the reply is idk. Inside a refusal (anything above but "not sure" / "can't be sure"),
an option's words never select it, even after a final-answer marker ("Therefore, I cannot identify
the source of the sound effect" is idk, not "Sound effect"); the rule quotes the phrase that
abstained. When an option is itself an abstention ("Not sure", "Cannot be
determined."), naming it in full is choosing it, while "I don't know" stays idk even beside an
option that merely shares its words ("They don't know Joey and Chandler.").

Outcome: idk for an abstention; correct when the option read is the answer key; otherwise wrong,
with `parsed` False when no option could be read (counted wrong, flagged for human review). An
unanswerable item (key IDK_REPLY, not among the options): idk for an abstention, else wrong.

`mmau_match` reproduces MMAU's official token scorer for comparison; it scores every "I don't know"
as wrong.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import NamedTuple, Sequence

from reliability.errors import ReliabilityError
from reliability.prompts import IDK_REPLY
from reliability.types import Judgement, Outcome

JUDGE_VERSION = "judge-3"

_MARKDOWN = re.compile(r"[*`]+|^[ \t]*#+[ \t]*", re.MULTILINE)  # not "#" elsewhere: "C# Major"

_MARKER = re.compile(
    # plain "answer" must be followed by ":" or "is": "To answer this, I listen ..." is no marker
    r"\b(?:(?:final|correct|right|best|most\s+likely)\s+(?:answer|option|choice)|answer)"
    r"(?:\s*:|\s+[-–—]\s|\s+(?:is|would\s+be|should\s+be|must\s+be|will\s+be)\b:?)"
    r"|\b(?:therefore|thus|hence|in\s+conclusion)\b,?",
    re.IGNORECASE,
)

# "not sure", "can't tell", "don't know" also describe people in the audio ("the second speaker is
# unsure"), so these count only with the model as the subject (I, we) or opening the reply
_SELF = r"(?:^\W*|\b(?:i|we|i'm|we're)\s+(?:am\s+|are\s+)?(?:really\s+|honestly\s+|simply\s+|just\s+|still\s+)?)"
_ADVERB = r"(?:reliably\s+|accurately\s+|confidently\s+|definitively\s+|exactly\s+)?"
_NOT_ABLE = r"(?:cannot|can't|can\s+not|could\s+not|couldn't|unable\s+to|not\s+able\s+to)"
# "I don't know" / "I'm not sure" in Chinese, Spanish, French, German, Japanese, Korean, Portuguese, Russian
_FOREIGN_IDK = (
    r"不知道|不清楚|不确定|无法(?:确定|判断|回答)|無法(?:確定|判斷|回答)"
    r"|\bno\s+(?:lo\s+)?s[eé]\b|\bno\s+estoy\s+segur[oa]\b"
    r"|\bje\s+ne\s+(?:le\s+)?sais\s+pas\b|\bje\s+ne\s+suis\s+pas\s+s[uû]re?\b"
    r"|\bich\s+wei(?:ß|ss)\s+(?:es\s+)?nicht\b|\bich\s+bin\s+(?:mir\s+)?(?:nicht\s+sicher|unsicher)\b|\bkeine\s+ahnung\b"
    r"|わかりません|分かりません|わからない|分からない|知りません"
    r"|모르겠|모릅니다|몰라요|잘\s*모르"
    r"|\bn[ãa]o\s+(?:o\s+)?sei\b|\bn[ãa]o\s+tenho\s+certeza\b"
    r"|\bне\s+знаю\b|\bне\s+уверен[аы]?\b"
)
# what a reply may say it cannot hear, or ask for: the missing input of a text-only model
_INPUT = (
    r"(?:(?:the|this|that|any|an?|your|such)\s+)?(?:provided\s+|attached\s+|actual\s+|uploaded\s+|given\s+|mentioned\s+|audio\s+|sound\s+)?"
    r"(?:audio|sound|clip|recording|file|media|music|track|song|speech|conversation|dialogue|utterance|transcript|voice|attachment|sample)s?\b"
)
# what a model says it cannot hear or needs: the medium, never what it holds ("I can't hear any music" describes the clip)
_MEDIUM = (
    r"(?:(?:the|this|that|any|an?|your|such)\s+)?(?:provided\s+|attached\s+|actual\s+|uploaded\s+|given\s+|mentioned\s+|audio\s+|sound\s+)?"
    r"(?:audio|clip|recording|file|media|attachment)s?\b"
)
_APART = r"(?:\s+(?:or|and|/)\s+\w+(?:\s+to)?)?"  # "hear or analyze", "listen to or process"
# hedges: uncertain, yet a final answer line may still name an option beside them ("Answer: probably B, though I'm not sure")
_UNSURE = re.compile(
    "|".join(
        (
            _SELF + r"(?:not\s+(?:entirely\s+|completely\s+|quite\s+|really\s+)?(?:sure|certain)|unsure|uncertain)\b",
            _SELF + _NOT_ABLE + r"\s+" + _ADVERB + r"be\s+(?:sure|certain)\b",
        )
    ),
    re.IGNORECASE,
)
# refusals: the reply declines, says it cannot perceive the input, or asks for it; an option's words inside one select nothing
_REFUSE = re.compile(
    "|".join(
        (
            _SELF + r"(?:do\s+not|don't|dont)\s+know\b",
            _SELF + r"(?:have\s+)?no\s+idea\b",
            _SELF + _NOT_ABLE + r"\s+" + _ADVERB
            + r"(?:determine|tell|say|know|identify|infer|decide|judge|answer|listen|hear\s+the\s+audio|process|access|analy[sz]e"
            r"|count|verify|confirm|provide\s+(?:a|an|the)\s+(?:specific|definitive|definite|accurate)?\s*answer)\b",
            _SELF + _NOT_ABLE + r"\s+(?:directly\s+|actually\s+)?(?:hear|listen\s+to|play|perceive|open|watch|receive|review|interpret"
            r"|understand|evaluate|assess|examine|transcribe)" + _APART + r"\s+(?:" + _MEDIUM + r"|sounds\b|anything)",
            r"\b" + _NOT_ABLE + r"\s+be\s+" + _ADVERB
            + r"(?:determined|told|said|known|identified|inferred|decided|judged|answered)\b",
            r"\b(?:impossible|not\s+possible|no\s+way|hard|difficult)\s+(?:for\s+me\s+)?to\s+" + _ADVERB
            + r"(?:determine|tell|say|know|identify|infer|decide|judge|answer)\b",
            r"\b(?:impossible|not\s+possible)\s+for\s+me\s+to\s+(?:hear|listen|access|analy[sz]e|process|play)\b",
            r"\b(?:which|that|something)\s+i\s+(?:cannot|can't|can\s+not|am\s+unable\s+to|am\s+not\s+able\s+to)\s+do\b"
            r"|\b(?:isn't|is\s+not)\s+something\s+i\s+(?:can|am\s+able\s+to)\s+do\b",
            r"\bidk\b",
            r"\b(?:insufficient|not\s+enough)\s+(?:information|info|context|evidence|details?|data)\b",
            r"\b(?:audio|clip|recording)\s+(?:does\s+not|doesn't)\s+(?:contain|provide|include|give|offer|have)"
            r"\s+(?:enough|sufficient|any\s+(?:information|clues?|indication|details?))\b",
            # "N/A" is no option A; refusals and capability disclaimers abstain too
            r"(?<![\w/])n\s*/\s*a(?![\w/])|\bnot\s+applicable\b",
            r"\b(?:i|we)\s+(?:must\s+|have\s+to\s+|will\s+have\s+to\s+)?(?:refuse|decline)\b",
            _SELF + _NOT_ABLE + r"\s+(?:help|assist|comply|provide\s+an?\s+answer|fulfil+)\b",
            r"\b(?:i|we)\s+(?:do\s+not|don't|dont)\s+have\s+(?:the\s+)?(?:ability|capability|capacity|access|means)\b",
            r"\b(?:i|we)\s+(?:do\s+not|don't|dont)\s+have\s+(?:any\s+)?(?:audio|hearing|listening|sound)\b",
            r"\b(?:i|we)\s+(?:have\s+no|lack\s+(?:the\s+|any\s+)?)(?:way|means|access|ability|capability|capacity)\b",
            r"\bas\s+an?\s+(?:ai|language\s+model|text-based)\b.{0,80}?\b(?:cannot|can't|unable|not\s+able)\b",
            r"\b(?:i(?:'m|\s+am)|as)\s+(?:only\s+)?an?\s+text[-\s]?(?:based|only)\b",
            r"\b(?:i'm|i\s+am)\s+(?:just\s+|only\s+|merely\s+)?an?\s+(?:ai|language\s+model|text\s+model|chatbot)\b",
            r"\b(?:i|we)\s+(?:can\s+)?only\s+(?:process|read|handle|understand|work\s+with|access)\s+(?:written\s+)?text\b",
            r"(?:^\W*|\bit(?:'s|\s+is|\s+remains)\s+)(?:unclear|not\s+clear|uncertain|unknown|undetermined|indeterminate)\b",
            r"\b(?:cannot|can't|can\s+not|could\s+not|couldn't)\s+be\s+" + _ADVERB + r"(?:inferred|concluded|established|ascertained)\b",
            # the input is missing: "no audio was provided", "the audio file is not attached", "you haven't shared the clip"
            r"\bno\s+(?:audio|sound)\s*(?:files?|clips?|recordings?|attachments?|inputs?)?\s+(?:was\s+|were\s+|is\s+|has\s+been\s+)?"
            r"(?:provided|attached|included|given|shared|uploaded|available|to\s+(?:listen|analy[sz]e|hear|work))\b",
            r"\b(?:audio|clip|recording|file|attachment)\s+(?:(?:is|was|has\s+been)\s+not|isn't|wasn't|hasn't\s+been)"
            r"\s+(?:provided|attached|included|shared|available|accessible|uploaded)\b|\b(?:audio|recording|attachment)\s+is\s+missing\b",
            r"\byou\s+(?:haven't|have\s+not|didn't|did\s+not)\s+(?:yet\s+)?(?:provided|provide|shared|share|attached|attach|uploaded|upload|included|include)\b",
            # asking for it: "Could you please provide the audio?", "Sure, please share the conversation"
            # at a sentence's start or after "sure," / "but": "The speaker asks: could you send the file?" reports speech
            r"(?:^\W*|(?<=[.!?\n])\s*|\b(?:sure|okay|ok|but|so|then|and|however|alternatively),?\s+)(?:please|kindly|could\s+you|can\s+you|would\s+you|if\s+you\s+(?:can|could)|once\s+you|you\s+(?:will\s+|would\s+)?need\s+to)"
            r"\s+(?:please\s+)?(?:provide|share|upload|attach|send|play|describe|give|include|supply|paste|transcribe)\b(?:(?:\s+\S+){0,5}?\s+"
            r"(?:" + _INPUT + r"|(?:more\s+)?(?:details?|description|context|information|transcription)\b)|\s+(?:it|them)\b)",
            r"\bi(?:'d|\s+would|\s+will)?\s+(?:need|require)\s+(?:to\s+(?:hear|listen\s+to|access|analy[sz]e)\s+|access\s+to\s+|more\s+)?"
            r"(?:" + _MEDIUM + r"|information|context|details)",
            r"\b(?:sorry|apologi[sz]e)\b[^.!?\n]{0,40}?\b(?:i|we)(?:'m|\s+am|\s+are)?\s+(?:cannot|can't|can\s+not|could\s+not|couldn't"
            r"|unable|not\s+able|do\s+not|don't)\b",
            _FOREIGN_IDK,
        )
    ),
    re.IGNORECASE,
)
_ABSTAIN = re.compile(_UNSURE.pattern + "|" + _REFUSE.pattern, re.IGNORECASE)
# quoted speech is what someone in the audio said, not the model abstaining ("the speaker says 'I don't know'")
_QUOTED = re.compile(r'"[^"\n]*"|(?<!\w)\'(?:[^\'\n]|(?<=\w)\'(?=\w))*\'(?!\w)')

_LONE_LETTER = re.compile(r"\W*([A-Za-z])\W*")  # fullmatch: the whole text is one letter
_LEAD_LETTER = re.compile(r"\W*?([A-Z])(?:[.):\]](?!\w)|\s+[-–—]\s)")  # match: "B. ...", "(B) ..."
_BRACKET_LETTER = re.compile(r"(?<!\w)[(\[]([A-Za-z])[)\]]")
_KEYWORD_LETTER = re.compile(r"\b(?i:option|choice|letter)\s*(?:[(\[]([A-Za-z])[)\]]|([A-Z])(?![\w'#-]|\.\w))")
# a capital standing alone; "A"/"I" only where no article or pronoun can be meant; not "U.S.", "G#"
_BARE_LETTER = re.compile(
    r"(?<![\w'./-])(?:[B-HJ-Z]|[AI](?=\s*(?:[.,;:!?)\]]|$)|\s+(?:or|and|is|seems|fits|matches|sounds)\b))"
    r"(?![\w'#/-]|\.\w)"
)
_HAS_WORD = re.compile(r"[^\W_]")

_WORD = re.compile(r"[^\W_]+#?")  # keeps "c#" apart from "c"; splits "dog_barking" into two words
# function words, and the pieces that contractions and possessives leave ("it's" -> "it", "s"; "don't" ->
# "don", "t"): "I don't know" shares no word with the option "boots don't match anything"
_FUNCTION_WORDS = frozenset(
    "a an the of in on at to and or is are was it its this that with by for from be as s t d ll re ve m"
    " don doesn didn isn aren wasn weren won can couldn wouldn shouldn haven hasn hadn".split()
)

_STATED_RULES = ("exact text", "letter", "option number")  # these outweigh a hedge in the same text

_MMAU_TOKEN = re.compile(r"\b\w+\b")

# a line that states the answer: "Answer: B", "**Final answer:** B", "My answer: ...", "5. Answer: ..."
_ANSWER_LINE = re.compile(r"^[ \t>-]*(?:\d+[.)]\s*)?(?:(?:my|the)\s+)?(?:final\s+)?answer\s*[:：]", re.IGNORECASE | re.MULTILINE)

# what may stand between a negation and the option it rules out
_NEG_FILLER = (
    r"(?:(?:a|an|the|any|option|choice|answer|letter|just|simply|really|actually|quite|exactly|necessarily|definitely"
    r"|likely|probably|be|been|sound|sounds|seem|seems|look|looks|like|to|of|from)\s+)*"
)
_WRONG_WORD = (
    r"(?:wrong|incorrect|false|unlikely|ruled\s+out|eliminated|excluded"
    r"|not\s+(?:correct|right|it|the\s+(?:correct\s+|right\s+)?(?:answer|option|choice)))\b"
)
_POSITIONS = {
    word: i + 1
    for i, words in enumerate(
        ("one first 1st", "two second 2nd", "three third 3rd", "four fourth 4th", "five fifth 5th", "six sixth 6th",
         "seven seventh 7th", "eight eighth 8th")
    )
    for word in words.split()
}
_ORDINAL = re.compile(
    r"\b(?:option|choice|alternative)\s*(?:#|no\.?\s*|number\s+)?(\d+|one|two|three|four|five|six|seven|eight)\b"
    r"|\b(first|second|third|fourth|fifth|sixth|seventh|eighth|1st|2nd|3rd|4th|5th|6th|7th|8th|last)\s+(?:option|choice|alternative)\b",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_ITEM_SPLIT = re.compile(r"\s*(?:[,;/]|->|→|=>|\bthen\b|\bfollowed\s+by\b|\band\b)\s*", re.IGNORECASE)
_LETTER_TOKEN = re.compile(r"(?<![\w'])\(?[A-Z]\)?(?![\w'])")
# a time span in prose, "from 1.62 to 3.24 seconds", reads as the option "1.62 - 3.24" (times only: "2 to 4" stays)
_TIME = r"(\d+[.:]\d+)\s*(?:s|secs?|seconds?)?"
_SPAN = re.compile(rf"\b(?:from\s+|between\s+)?{_TIME}\s*(?:to|and|until|till|through|-|–|—)\s*{_TIME}(?!\w)", re.IGNORECASE)
_IRREGULAR = {"men": "man", "women": "woman", "children": "child", "people": "person", "mice": "mouse", "geese": "goose", "feet": "foot", "teeth": "tooth"}


class JudgeError(ReliabilityError, ValueError):
    """An answer key that cannot be judged against: not among the choices, or no choices at all."""


class Reading(NamedTuple):
    """What a reply says before any answer key: the option it names or an abstention, and which rule."""

    choice: str | None  # the option text as given in `choices`; None when none was read
    abstained: bool
    rule: str


def judge(text: str, choices: Sequence[str], answer: str | None, lettered: bool = True) -> Judgement:
    """Judge a reply against the answer key by the rules of JUDGE_VERSION.

    text: the model's raw reply. choices: the options as shown to the model, in order (letters
    A, B, ... follow this order). answer: the key, one of `choices`; IDK_REPLY ("I don't know") for
    an unanswerable item, where abstaining is idk (the honest answer) and any option is wrong; None
    for an item without a key, where only an abstention has a defined outcome (idk) and anything else
    is wrong (tables leave keyless items out unless a person judged them). lettered: whether the model
    saw the options with letters (the lab's own prompts letter them; predictions made elsewhere may not).
    Raises JudgeError when `answer` is given but is not one of `choices`.
    """
    unanswerable = answer == IDK_REPLY and answer not in choices
    if answer is not None and not unanswerable:
        if not choices:
            raise JudgeError(f"answer {answer!r} was given but there are no choices to judge it against")
        if answer not in choices:
            raise JudgeError(f"answer {answer!r} is not among the choices {list(choices)}")
    reading = read_choice(text, choices, lettered)
    if reading.abstained:
        return Judgement(choice=None, outcome=Outcome.IDK, parsed=True, rule=reading.rule)
    if reading.choice is None:
        return Judgement(choice=None, outcome=Outcome.WRONG, parsed=False, rule=reading.rule)
    if answer is None:
        return Judgement(choice=reading.choice, outcome=Outcome.WRONG, parsed=True, rule=f"no key; {reading.rule}")
    if unanswerable:
        return Judgement(choice=reading.choice, outcome=Outcome.WRONG, parsed=True, rule=f"unanswerable; {reading.rule}")
    # compared as words, so that a duplicated option ("x" and "x.") is the same answer
    outcome = Outcome.CORRECT if _words(reading.choice) == _words(answer) else Outcome.WRONG
    return Judgement(choice=reading.choice, outcome=outcome, parsed=True, rule=reading.rule)


def read_choice(text: str, choices: Sequence[str], lettered: bool = True) -> Reading:
    """Read which option a reply names, or whether it abstains, without an answer key.

    Returns Reading(choice, abstained, rule); choice is None and abstained False when the reply
    could not be read (rule then says why, starting with "unparsed"). lettered: see judge.
    """
    if not text.strip():
        return Reading(None, False, "unparsed: empty reply")
    clean = _MARKDOWN.sub("", text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"'))
    pieces = []
    final_line, before = _final_line(clean)
    if final_line:
        pieces.append(("final answer, ", final_line))
    pieces.append(("", clean))

    reason = ""
    for prefix, piece in pieces:
        index, rule = _read(piece, choices)
        spoken = _unquoted(piece)
        hedged = _ABSTAIN.search(spoken) is not None
        if index is not None and rule == "letter" and not lettered:
            index, rule = _named_over_letter(index, piece, before if prefix else "", choices)
        if index is not None:
            chosen = choices[index]
            # an option's words echoed inside a refusal ("I cannot identify the sound effect") are no answer
            refused = rule not in _STATED_RULES and _REFUSE.search(spoken) is not None
            stated = (bool(prefix) and not refused) or rule in _STATED_RULES
            # a hedge option named in full is chosen; its words alone ("They don't know Joey") are not
            names_hedge_option = rule == "option phrase" and _ABSTAIN.search(chosen) is not None
            if stated or names_hedge_option or not hedged:
                return Reading(chosen, False, prefix + rule)
        if hedged:
            return Reading(None, True, prefix + _abstention_rule(spoken))
        reason = rule
    return Reading(None, False, reason)


def mmau_match(text: str, choices: Sequence[str], answer: str) -> bool:
    """MMAU's official scorer: True when the reply counts as correct there.

    Mirrors `string_match(answer, prediction, choices)` of MMAU's evaluation.py
    (https://github.com/Sakshi113/MMAU/blob/main/evaluation.py): tokens are lowercase `\\b\\w+\\b`
    words; correct iff the reply has tokens, every answer token is among them, and no token of
    another choice that the answer lacks is.
    """
    prediction = _mmau_tokens(text)
    if not prediction:
        return False
    key = _mmau_tokens(answer)
    wrong = set().union(*(_mmau_tokens(choice) for choice in choices)) - key
    return key <= prediction and prediction.isdisjoint(wrong)


def _read(text: str, choices: Sequence[str]) -> tuple[int | None, str]:
    """Rules 1-5 on one piece of text: (index into choices or None, the rule or why none fired)."""
    options = _distinct_options(choices)
    words = _words(text)
    for index, option_words in options:
        # spacing and punctuation aside: "Emaj/1" is the chord "E:maj/1"
        if words == option_words or "".join(words) == "".join(option_words):
            return index, "exact text"
    text, ruled_out = _rule_out(text, choices, options)
    words = _words(text)
    letter = _read_letter(text, choices)
    if letter is not None:
        return letter, "letter"
    number = _read_ordinal(text, choices)
    if number is not None:
        return number, "option number"
    index, rule = _read_words(text, choices, options)
    if index is None and not rule and ruled_out:
        return None, f"unparsed: only rules out {[choices[i] for i in sorted(ruled_out)]}"
    return index, rule or "unparsed: no option found"


def _read_words(text: str, choices: Sequence[str], options: list[tuple[int, tuple[str, ...]]]) -> tuple[int | None, str]:
    """Rules 4-5 (with the order rule for options that differ only in order): (index or None, the rule, or
    why none fired, or "" when nothing was found)."""
    ordered = _read_order(text, choices)
    if ordered is not None:
        return ordered, "option order"
    for suffix, form in (("", _words), (" (inflected)", _stems)):
        read_words = form(text)
        read_options = [(index, _stem_all(ow)) for index, ow in options] if suffix else options
        found = _phrases(read_words, read_options)
        if len(found) == 1:
            return found[0], "option phrase" + suffix
        if found:
            return None, f"unparsed: names several options {[choices[i] for i in found]}"
        hits = _unique_token_hits(read_words, read_options)
        if len(hits) == 1:
            shared = _uncommitted_word(text, dict(read_options)[hits[0]], form)
            if shared:
                return None, f"unparsed: a list that shares only {shared!r} with {choices[hits[0]]!r}"
            return hits[0], "unique tokens" + suffix
        if hits:
            return None, f"unparsed: has words of several options {[choices[i] for i in hits]}"
    return None, ""


def _read_order(text: str, choices: Sequence[str]) -> int | None:
    """For options that list the same items in different orders ("dog, car, bell" / "car, dog, bell"): the one
    whose order the last sentence naming every item follows; None when no options are such or none is followed."""
    listed = {i: tuple(_words(part) for part in _ITEM_SPLIT.split(c) if _words(part)) for i, c in enumerate(choices)}
    groups: dict[tuple, list[int]] = {}
    for i, items in listed.items():
        if len(items) >= 2 and len(set(items)) == len(items):
            groups.setdefault(tuple(sorted(items)), []).append(i)
    groups = {k: v for k, v in groups.items() if len({listed[i] for i in v}) >= 2}
    if not groups:
        return None
    for sentence in reversed([s for s in _SENTENCE_END.split(text) if _HAS_WORD.search(s)]):
        words = _words(sentence)
        for key, members in groups.items():
            starts = {item: _first_at(words, item) for item in key}
            if None in starts.values():
                continue
            order = tuple(sorted(key, key=lambda item: starts[item]))
            found = [i for i in members if listed[i] == order]
            return found[0] if found else None
    return None


def _first_at(words: tuple[str, ...], phrase: tuple[str, ...]) -> int | None:
    return next((i for i in range(len(words) - len(phrase) + 1) if words[i : i + len(phrase)] == phrase), None)


def _uncommitted_word(text: str, option_words: tuple[str, ...], form) -> str:
    """The one word a bare list ("'electricity, festivity'") shares with an option whose other items it lacks; "" otherwise.

    A list of a few short items is read as naming that option only where every item is the option's."""
    segments = [form(part) for part in _ITEM_SPLIT.split(_QUOTED.sub(lambda m: m.group()[1:-1], text))]
    segments = [seg for seg in segments if seg]
    if len(segments) < 2 or any(len(seg) > 3 for seg in segments):
        return ""
    own = set(option_words) - _FUNCTION_WORDS
    shared = {w for seg in segments for w in seg} & own
    foreign = any(not set(seg) <= set(option_words) | _FUNCTION_WORDS for seg in segments)
    return next(iter(shared)) if len(shared) == 1 and foreign else ""


def _final_line(text: str) -> tuple[str, str]:
    """The stated answer and the text before its marker: the last "Answer:" line (its rest, else the next line),
    else the first line after the last other marker ("The answer is", "Therefore"); ("", "") without one. An
    explanation that follows an "Answer:" line may use markers of its own ("... so the answer is not A"); the
    line still wins."""
    lines = list(_ANSWER_LINE.finditer(text))
    markers = lines or list(_MARKER.finditer(text))
    if not markers:
        return "", ""
    line = next((line for line in text[markers[-1].end():].splitlines() if line.strip()), "")
    return line, text[: markers[-1].start()]


def _unquoted(text: str) -> str:
    """The text without quoted speech, unless the quote is all there is (a reply may quote its own answer)."""
    rest = _QUOTED.sub(" ", text)
    return rest if _HAS_WORD.search(rest) else text


def _abstention_rule(text: str) -> str:
    """The rule of an abstention, naming a refusal or a request for the missing input so that "why?" reads it."""
    found = _ABSTAIN.search(text)
    phrase = " ".join(found.group().split()).strip(" ,.;:") if found else ""
    return f'abstention: "{phrase}"' if _HAS_WORD.search(phrase) else "abstention"


def _named_over_letter(index: int, piece: str, before: str, choices: Sequence[str]) -> tuple[int, str]:
    """With options shown without letters, a letter that contradicts the option the conclusion names gives way to it.

    The conclusion is the piece itself, else the last sentence before its final-answer marker ("... the moo is a
    cow. The answer is C."). A reply that letters the options itself in the given order keeps its letter.
    """
    letter = chr(ord("A") + index)
    if _letters_as_given(piece + "\n" + before, choices):
        return index, "letter"
    sentences = [s for s in _SENTENCE_END.split(before) if _HAS_WORD.search(s)]
    # the marker's own sentence may hold nothing but "The" ("... a cow. The answer is C."): then the one before it
    for text in (piece, *reversed(sentences[-2:])):
        options = _distinct_options(choices)
        named, _ = _read_words(_rule_out(_LETTER_TOKEN.sub(" ", text), choices, options)[0], choices, options)
        if named is not None and named != index:
            return named, f"option phrase; the letter {letter} is not read, as the options were shown without letters"
        if named is not None:
            break
    return index, "letter"


def _letters_as_given(text: str, choices: Sequence[str]) -> bool:
    """Whether the reply pairs a letter with the option at that letter's place ("(C) Child", "B. Woman")."""
    for i, choice in enumerate(choices[:26]):
        words = _words(choice)
        if words and re.search(rf"(?<![\w]){chr(ord('A') + i)}[).:\]]?\s*[-–—]?\s*" + r"[\W_]+".join(map(re.escape, words)), text, re.IGNORECASE):
            return True
    return False


def _rule_out(text: str, choices: Sequence[str], options: list[tuple[int, tuple[str, ...]]]) -> tuple[str, set[int]]:
    """The text without the options it rules out ("not A", "it isn't a dog", "B is wrong"), and their indices.

    "X, not Y" then reads as X. Only an option or letter right after the negation (articles and
    "option", "sounds like" aside) is ruled out: "the style that does not fit is funk" names funk.
    """
    refs = [r"[\W_]+".join(map(re.escape, ow)) + r"(?:s|es)?" for _, ow in sorted(options, key=lambda o: -len(o[1]))]
    if not refs:
        return text, set()
    letters = "".join(chr(ord("A") + i) for i in range(min(len(choices), 26)))
    ref = rf"(?:(?<![\w#])(?:{'|'.join(refs)})(?![\w#])|(?-i:\(?[{letters}]\)?)(?=\s*(?:[.,;:!?)]|$|\s+(?:or|nor|and|is|are|because|since)\b)))"
    # "not A or B", "not a light, a star, or a lantern"; a bare comma ends it: "not a dog, a cat" names the cat
    chain = rf"{ref}(?:(?:\s*,\s*{_NEG_FILLER}{ref})*\s*,?\s*(?:or|nor|and)\s+{_NEG_FILLER}{ref})*"
    pattern = re.compile(
        rf"(?:\bnot|n't|\bnever|\bneither|\brather\s+than|\binstead\s+of)\s+{_NEG_FILLER}{chain}"
        rf"|\b(?:rule|rules|ruled|ruling)\s+out\s+{_NEG_FILLER}{chain}|\beliminat\w*\s+{_NEG_FILLER}{chain}"
        rf"|(?<!\w){chain}[.,]?\s+(?:is|are|was|seems|would\s+be)\s+(?:also\s+|clearly\s+|definitely\s+|probably\s+)?{_WRONG_WORD}",
        re.IGNORECASE,
    )
    ruled_out: set[int] = set()
    for m in pattern.finditer(text):
        ruled_out.update(_named(m.group(), choices, options))
    return pattern.sub(" ; ", text), ruled_out


def _named(span: str, choices: Sequence[str], options: list[tuple[int, tuple[str, ...]]]) -> set[int]:
    """The options a ruled-out span names: by letter or by text."""
    named = {ord(m.group(1)) - ord("A") for m in re.finditer(r"(?<![\w'])\(?([A-Z])\)?(?![\w'])", span)}
    named &= set(range(len(choices)))
    stems = _stems(span)
    named.update(_phrases(stems, [(index, _stem_all(ow)) for index, ow in options]))
    return named


def _read_ordinal(text: str, choices: Sequence[str]) -> int | None:
    """The one option the text names by number or position ("option 2", "the second choice"), or None.

    A number that is itself an option's word ("How many rings? 2") is not a position."""
    option_words = {w for choice in choices for w in _words(choice)}
    found = set()
    for m in _ORDINAL.finditer(text):
        word = (m.group(1) or m.group(2)).lower()
        if word in option_words:
            continue
        position = len(choices) if word == "last" else _POSITIONS.get(word) or (int(word) if word.isdigit() else 0)
        if 1 <= position <= len(choices):
            found.add(position - 1)
    return found.pop() if len(found) == 1 else None


def _read_letter(text: str, choices: Sequence[str]) -> int | None:
    """The one option letter the text states, or None (none, out of range, or several)."""
    stated: set[str] = set()
    lone = _LONE_LETTER.fullmatch(text)
    if lone:
        stated.add(lone.group(1))
    lead = _LEAD_LETTER.match(text)
    if lead:
        stated.add(lead.group(1))
    stated.update(m.group(1) for m in _BRACKET_LETTER.finditer(text))
    stated.update(m.group(1) or m.group(2) for m in _KEYWORD_LETTER.finditer(text))
    # a capital that options use as a word ("B Major", chord "G") is not a letter in free text
    in_options = {m.group() for choice in choices for m in _BARE_LETTER.finditer(choice)}
    mentioned: set[str] = set()
    for m in _BARE_LETTER.finditer(text):
        if m.group() in in_options:
            continue
        at_edge = not _HAS_WORD.search(text, 0, m.start()) or not _HAS_WORD.search(text, m.end())
        # only the first or last word states a letter; one mid-sentence ("from G to D") only
        # makes another letter ambiguous ("either A or B")
        (stated if at_edge else mentioned).add(m.group())
    in_range = set(range(len(choices)))
    indices = {ord(letter.upper()) - ord("A") for letter in stated} & in_range
    others = ({ord(letter) - ord("A") for letter in mentioned} & in_range) - indices
    if len(indices) == 1 and not others:
        return indices.pop()
    return None


def _phrases(words: tuple[str, ...], options: list[tuple[int, tuple[str, ...]]]) -> list[int]:
    """Options found as word phrases, leaving out finds that lie inside a longer found option."""
    spans = {}
    for index, ow in options:
        size = len(ow)
        found = [(start, start + size) for start in range(len(words) - size + 1) if words[start : start + size] == ow]
        if found:
            spans[index] = found

    def inside_longer(index: int, start: int, end: int) -> bool:
        return any(
            other != index and s <= start and end <= e and e - s > end - start
            for other, found in spans.items()
            for s, e in found
        )

    return [index for index, found in spans.items() if any(not inside_longer(index, s, e) for s, e in found)]


def _unique_token_hits(words: tuple[str, ...], options: list[tuple[int, tuple[str, ...]]]) -> list[int]:
    """Options whose own words (shared with no other option) occur in `words`."""
    tokens = {index: set(ow) - _FUNCTION_WORDS for index, ow in options}
    counts = Counter(token for own in tokens.values() for token in own)
    present = set(words)
    return [index for index, own in tokens.items() if any(counts[t] == 1 and t in present for t in own)]


def _distinct_options(choices: Sequence[str]) -> list[tuple[int, tuple[str, ...]]]:
    """(first index, words) per distinct option; MMAU repeats some options verbatim."""
    seen: dict[tuple[str, ...], int] = {}
    for index, choice in enumerate(choices):
        option_words = _words(choice)
        if option_words:
            seen.setdefault(option_words, index)
    return [(index, option_words) for option_words, index in seen.items()]


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(_SPAN.sub(r"\1 - \2", text).lower()))


def _stems(text: str) -> tuple[str, ...]:
    return _stem_all(_words(text))


def _stem_all(words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_stem(w) for w in words)


def _stem(word: str) -> str:
    """A noun's singular: "dogs" -> "dog", "bodies" -> "body", "boxes" -> "box", "women" -> "woman"."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _mmau_tokens(text: str) -> set[str]:
    return set(_MMAU_TOKEN.findall(text.lower()))
