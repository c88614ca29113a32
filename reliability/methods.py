"""Reliability methods (baseline, IDK prompting, MCoT, Task Agent, LoRA), written against the Backend interface only.

A method turns a batch of items and their clips into final replies; `ask` then judges them. Each
method makes one batched backend call per step, so batching helps every backend equally. A new
training-free method is one class decorated with `register_method`: the CLI, the app and its API list it by name.
"""
from __future__ import annotations

import abc
import dataclasses
import math
import re
import time
from collections.abc import Sequence

import numpy as np

from reliability import prompts
from reliability.audio import MODEL_MAX_SECONDS, Clip, for_model
from reliability.backends.base import Backend
from reliability.errors import ItemError, UnknownNameError
from reliability.judge import judge, read_choice
from reliability.types import Answer, Decoding, Item, Judgement, MethodOutput, Outcome, Request, Step

MAX_QUESTION_CHARS = 4000  # a longer "question" is almost surely a pasted file, not a question
LORA_PREFIX = "lora:"
LORA_PATTERN = f"{LORA_PREFIX}<adapter>"  # how the LoRA methods are named in help texts and errors

METHODS: dict[str, type[Method]] = {}  # training-free methods by name, in registration order; fill with register_method


class Method(abc.ABC):
    """One way of asking. `name` is stored with every answer."""

    name: str = "method"
    title: str | None = None  # the app's display name; the name itself when None
    max_new_tokens: int = 64  # answer budget; chain-of-thought needs more
    adapter: str | None = None  # LoRA adapter to activate while this method runs

    @abc.abstractmethod
    def run(self, backend: Backend, items: Sequence[Item], clips: Sequence[Clip | None], decoding: Decoding) -> list[MethodOutput]:
        """Final replies (with every intermediate step) for a batch of items."""

    def describe(self, backend: Backend | None = None) -> dict:
        """The identity stored with a run; a LoRA adapter is named with the version of its weights on `backend`
        ("default@3f2a..."), where the backend knows it (Backend.adapter_versions)."""
        version = backend.adapter_versions.get(self.adapter) if backend is not None and self.adapter else None
        return {"method": self.name, "prompt_version": prompts.PROMPT_VERSION, "adapter": f"{self.adapter}@{version}" if version else self.adapter}


class SinglePrompt(Method):
    """A method that is one prompt per item: the question plus optional instructions."""

    before: list[tuple[str, str]] = []  # (user, assistant) few-shot turns before the question
    suffix: str = ""  # instruction appended after the question

    def messages(self, item: Item) -> list[dict[str, str]]:
        turns = []
        for user, assistant in self.before:
            turns += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        text = prompts.question_block(item) + (f"\n{self.suffix}" if self.suffix else "")
        return turns + [{"role": "user", "content": text}]

    def run(self, backend, items, clips, decoding):
        decoding = _budget(decoding, self.max_new_tokens)
        msgs = [self.messages(item) for item in items]
        gens = backend.generate([_request(m, clip, decoding, item.choices, question=item.question) for m, clip, item in zip(msgs, clips, items)])
        return [
            MethodOutput(gen.text, [Step("answer", m, gen.text, clip is not None, gen.meta)], gen.option_logprobs)
            for m, clip, gen in zip(msgs, clips, gens)
        ]


def register_method(cls: type[Method]) -> type[Method]:
    """Offer a training-free method class under its `name` everywhere (CLI, app, API); usable as a class decorator."""
    if cls.name in METHODS or cls.name.startswith(LORA_PREFIX):
        taken = f"the {LORA_PATTERN} methods" if cls.name.startswith(LORA_PREFIX) else METHODS[cls.name].__qualname__
        raise ValueError(f"method name {cls.name!r} is taken by {taken}; registered: {', '.join(METHODS)}")
    METHODS[cls.name] = cls
    return cls


def method_names() -> list[str]:
    """Names of the registered training-free methods, in registration order (the LoRA ones depend on saved adapters)."""
    return list(METHODS)


@register_method
class Baseline(SinglePrompt):
    name = "baseline"
    title = "Baseline"


@register_method
class IdkPrompting(SinglePrompt):
    name = "idk"
    title = "IDK prompting"
    suffix = prompts.IDK_INSTRUCTION


@register_method
class MCoT(SinglePrompt):
    name = "mcot"
    title = "MCoT"
    max_new_tokens = 256
    before = prompts.MCOT_EXAMPLES
    suffix = prompts.MCOT_INSTRUCTION


@register_method
class TaskAgent(Method):
    """Three calls to the same backend: classify the audio, run the matching tool, answer with its text.

    The helper steps go through `Backend.agent_step`, so a backend answers them with the model
    itself (as in the paper) or with its own listeners (the cascade).
    """

    name = "agent"
    title = "Task Agent"
    tool_tokens = 160  # a transcript or caption needs more room than an answer

    def run(self, backend, items, clips, decoding):
        answer_decoding = _budget(decoding, self.max_new_tokens)
        # the helper steps are greedy whatever the answer's decoding: they gather evidence, not samples
        helper = Decoding(max_new_tokens=8)
        classify = [{"role": "user", "content": prompts.AGENT_CLASSIFY}]
        kinds_raw = backend.agent_step("classify", [_request(classify, clip, helper, listen_for=item.choices) for item, clip in zip(items, clips)])
        kinds = [_audio_kind(gen.text) for gen in kinds_raw]
        tool_msgs = [[{"role": "user", "content": prompts.AGENT_TOOLS[k][1]}] for k in kinds]
        tool_decoding = dataclasses.replace(helper, max_new_tokens=self.tool_tokens)
        tools_raw: list = [None] * len(items)
        for kind in dict.fromkeys(kinds):  # one batched call per tool
            rows = [i for i, k in enumerate(kinds) if k == kind]
            gens = backend.agent_step(
                prompts.AGENT_TOOLS[kind][0], [_request(tool_msgs[i], clips[i], tool_decoding, listen_for=items[i].choices) for i in rows]
            )
            for i, gen in zip(rows, gens):
                tools_raw[i] = gen
        final_msgs = []
        for item, kind, gen in zip(items, kinds, tools_raw):
            tool = prompts.AGENT_TOOLS[kind][0]
            context = prompts.AGENT_CONTEXT.format(tool=tool, evidence=gen.text.strip() or "(empty)")
            text = f"{context}\n\n{prompts.question_block(item)}\n{prompts.IDK_INSTRUCTION}"
            final_msgs.append([{"role": "user", "content": text}])
        finals = backend.generate(
            [_request(m, clip, answer_decoding, item.choices, question=item.question) for m, clip, item in zip(final_msgs, clips, items)]
        )
        outputs = []
        for i, clip in enumerate(clips):
            steps = [
                Step("classify", classify, kinds_raw[i].text, clip is not None, {**kinds_raw[i].meta, "audio_type": kinds[i]}),
                Step(prompts.AGENT_TOOLS[kinds[i]][0], tool_msgs[i], tools_raw[i].text, clip is not None, tools_raw[i].meta),
                Step("answer", final_msgs[i], finals[i].text, clip is not None, finals[i].meta),
            ]
            outputs.append(MethodOutput(finals[i].text, steps, finals[i].option_logprobs))
        return outputs


class LoraMethod(Baseline):
    """The baseline prompt answered with a trained LoRA adapter active on the same base model."""

    def __init__(self, adapter: str):
        self.adapter = adapter
        self.name = f"{LORA_PREFIX}{adapter}"

    def run(self, backend, items, clips, decoding):
        previous = backend.adapter
        backend.set_adapter(self.adapter)
        try:
            return super().run(backend, items, clips, decoding)
        finally:
            backend.set_adapter(previous)


def get_method(name: str) -> Method:
    """A method by name; "lora:<adapter>" gives the baseline answered with that adapter."""
    if name.startswith(LORA_PREFIX) and len(name) > len(LORA_PREFIX):
        return LoraMethod(name[len(LORA_PREFIX) :])
    if name not in METHODS:
        raise UnknownNameError("method", name, [*METHODS, LORA_PATTERN])
    return METHODS[name]()


def validate_item(item: Item) -> None:
    """Refuse an item no method can ask, with the offending value."""
    if not item.question or not item.question.strip():
        raise ItemError(f"item {item.id!r}: the question is empty")
    if len(item.question) > MAX_QUESTION_CHARS:
        raise ItemError(f"item {item.id!r}: the question is {len(item.question)} characters (limit {MAX_QUESTION_CHARS})")
    if any(not c.strip() for c in item.choices):
        raise ItemError(f"item {item.id!r}: a choice is empty: {list(item.choices)}")
    # "I don't know" as the key marks an unanswerable item: abstaining is its honest answer
    if item.answer not in (None, prompts.IDK_REPLY) and item.answer not in item.choices:
        if not item.choices:
            raise ItemError(f"item {item.id!r}: an answer key {item.answer!r} was given but there are no choices")
        raise ItemError(f"item {item.id!r}: answer {item.answer!r} is not among the choices {list(item.choices)}")


def ask(method: Method, backend: Backend, items: Sequence[Item], clips: Sequence[Clip | None], decoding: Decoding = Decoding()) -> list[Answer]:
    """Run a method on a batch and judge each reply; the batch's wall time is shared out as latency."""
    if len(items) != len(clips):
        raise ValueError(f"{len(items)} items but {len(clips)} clips")
    for item in items:
        validate_item(item)
    start = time.perf_counter()
    outputs = method.run(backend, list(items), list(clips), decoding)
    latency = (time.perf_counter() - start) / max(len(items), 1)
    answers = []
    for item, clip, out in zip(items, clips, outputs):
        if clip is not None and for_model(clip)[1]:
            # the backend only ever sees the cut samples, so the answer records how much of the clip it heard
            for step in out.steps:
                step.meta.update(audio_cut=True, heard_s=MODEL_MAX_SECONDS, clip_s=round(clip.duration_s, 2))
        verdict = _judge(out.text, item)
        answers.append(
            Answer(item.id, method.name, out.text, verdict, out.steps, decoding, confidence(out.option_logprobs, item, verdict), latency)
        )
    return answers


def confidence(option_logprobs: list[float] | None, item: Item, verdict: Judgement) -> float | None:
    """Probability the backend gives the chosen option among all options (softmax of option log-probs)."""
    if not option_logprobs or verdict.choice is None or verdict.choice not in item.choices:
        return None
    logits = np.asarray(option_logprobs, dtype=np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    value = float(probs[item.choices.index(verdict.choice)])
    return value if math.isfinite(value) else None


def _judge(text: str, item: Item) -> Judgement:
    if item.answer is not None:
        return judge(text, item.choices, item.answer)
    # no answer key: read the reply, but only an abstention has a defined outcome
    choice, abstained, rule = read_choice(text, item.choices)
    outcome = Outcome.IDK if abstained else Outcome.WRONG
    return Judgement(choice=choice, outcome=outcome, parsed=abstained or choice is not None, rule=f"no key; {rule}")


def _request(
    messages, clip: Clip | None, decoding: Decoding, choices: tuple[str, ...] = (), listen_for: tuple[str, ...] = (), question: str = ""
) -> Request:
    audio = None if clip is None else for_model(clip)[0]
    return Request(messages, audio, decoding, choices, None if clip is None else clip.hash, listen_for or choices, question)


def _budget(decoding: Decoding, tokens: int) -> Decoding:
    """A method's own answer budget, unless the caller asked for more."""
    return dataclasses.replace(decoding, max_new_tokens=max(decoding.max_new_tokens, tokens))


_KIND_WORDS = {kind: re.compile(rf"\b{kind}\b", re.I) for kind in prompts.AGENT_TOOLS}


def _audio_kind(text: str) -> str:
    """The first audio type named in the classifier's reply, else "sound".

    The item's modality label is deliberately not used as a fallback: it would leak the dataset's
    annotation into a step that must rely on the model alone.
    """
    found = [(m.start(), kind) for kind, rx in _KIND_WORDS.items() if (m := rx.search(text))]
    return min(found)[1] if found else "sound"
