"""Records that flow through the lab: items, generation requests, generations, answers.

A leaf module: annotations/ imports it too, so it imports nothing of the project (tests/test_architecture.py).
"""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


class Outcome(str, enum.Enum):
    """How one answer to a multiple-choice item is judged (docs/METRICS.md section 1)."""

    CORRECT = "correct"
    WRONG = "wrong"
    IDK = "idk"

    def __str__(self) -> str:
        return self.value


MODALITIES = ("sound", "music", "speech")


@dataclass(frozen=True)
class Item:
    """One benchmark question about one clip."""

    id: str  # unique within its dataset
    question: str
    choices: tuple[str, ...]  # empty for an open question
    answer: str | None  # one of `choices`; None when there is no key
    modality: str = "unknown"  # sound / music / speech / unknown
    audio_path: str | None = None  # None: no audio is attached
    dataset: str = "adhoc"


@dataclass(frozen=True)
class Decoding:
    """Decoding settings of one generation call; stored with every answer."""

    do_sample: bool = False  # False: greedy
    temperature: float = 1.0  # used only when sampling
    top_p: float = 1.0  # used only when sampling
    max_new_tokens: int = 64
    num_samples: int = 1  # returned sequences per request, sharing one prefill
    seed: int | None = None  # seeds sampling for reproducible K@N datasets

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Request:
    """One prompt for a backend: chat messages plus the clip (or none).

    `messages` are text-only chat turns ({"role", "content"}). A backend places the audio
    itself at the start of the first user turn; `audio is None` means no audio slot at all.
    """

    messages: list[dict[str, str]]
    audio: np.ndarray | None = None  # float32 mono at 16 kHz, shape (samples,)
    decoding: Decoding = field(default_factory=Decoding)
    choices: tuple[str, ...] = ()  # when set, backends that can score options return option_logprobs
    audio_hash: str | None = None  # content hash of `audio`, for caches
    listen_for: tuple[str, ...] = ()  # words the question is about (its choices); a backend may bias its listening to them
    question: str = ""  # the item's question alone, where a backend weighs its wording (the cascade's grounding rule)


@dataclass
class Generation:
    """What a backend returned for one request."""

    texts: list[str]  # num_samples texts, in order
    option_logprobs: list[float] | None = None  # one per request.choices, where the backend can score
    meta: dict[str, Any] = field(default_factory=dict)  # backend extras (e.g. cascade evidence), JSON-safe

    @property
    def text(self) -> str:
        return self.texts[0]


@dataclass
class Step:
    """One backend call a method made, kept so any answer can be reproduced."""

    name: str  # e.g. "answer", "classify", "describe"
    messages: list[dict[str, str]]
    text: str
    with_audio: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodOutput:
    """A method's final reply to one item, before judging."""

    text: str
    steps: list[Step]
    option_logprobs: list[float] | None = None


@dataclass
class Judgement:
    """The judge's reading of a free-text reply."""

    choice: str | None  # the chosen option text, None when none was read or the reply abstains
    outcome: Outcome
    parsed: bool  # False: no option or abstention could be read (counted wrong, flagged for review)
    rule: str = ""  # which rule decided, for the record


@dataclass
class Answer:
    """A judged answer of one method to one item."""

    item_id: str
    method: str
    text: str
    judgement: Judgement
    steps: list[Step]
    decoding: Decoding
    confidence: float | None = None  # probability of the chosen option, where the backend scores options
    latency_s: float = 0.0

    @property
    def outcome(self) -> Outcome:
        return self.judgement.outcome
