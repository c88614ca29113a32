"""The Compare service: ask one clip with several methods, store the item and its answers, serve repeats from the store."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from annotations import store
from reliability.audio import Clip, load_audio
from reliability.backends.base import Backend
from reliability.errors import AudioError, BackendError, ItemError, ReliabilityError
from reliability.evaluate import FULL
from reliability.judge import JUDGE_VERSION
from reliability.methods import ask, get_method, validate_item
from reliability.prompts import IDK_REPLY
from reliability.services.jsonable import json_safe
from reliability.services.modality import AUTO, CHOICES, UNKNOWN, ModalityService
from reliability.services.pool import Pool, store_errors
from reliability.training.adapters import ensure_loaded
from reliability.types import Item

log = logging.getLogger(__name__)

LAB_DATASET = "lab"  # the dataset that items asked in the Compare tab are stored under
LAB_SOURCE = "lab"  # runs.source of answers made by the app
UNKNOWN_MODALITY = UNKNOWN
MODALITY_CHOICES = CHOICES
# extensions an upload may keep when it is copied into the app's upload folder
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm"})
_LETTER = re.compile(r"\(?([A-Za-z])\)?\.?")
WAIT_POLL_S = 0.5  # how often a Compare request waiting for the model reports where it stands
MAX_OPTIONS = 26  # one per letter A-Z, the letters a key may name; 1000 options took 30 s to refuse nothing
MAX_OPTION_CHARS = 500
MAX_QUESTION_CHARS = 4000


@dataclass(frozen=True)
class Waiting:
    """A Compare request's method waiting for the model: how many requests use or wait for it besides this one."""

    method: str
    ahead: int


@dataclass
class MethodResult:
    """One method's answer to a Compare request, or why there is none."""

    method: str
    error: str | None = None  # one line; set when the method could not answer
    cached: bool = False  # served from the store without asking the model
    answer_id: str | None = None
    run_id: str | None = None
    item_id: str | None = None
    text: str = ""  # the raw final reply
    choice: str | None = None  # the option the parser read; None for idk or unparsed
    key: str | None = None  # the item's answer key; None: the outcome is not judged
    outcome: str | None = None  # correct / wrong / idk (a human verdict overrides the parser)
    outcome_source: str = store.PARSER
    parsed: bool = True  # False: the parser could read neither an option nor an abstention
    rule: str = ""  # the parser rule that decided
    confidence: float | None = None  # probability of the chosen option, where the backend scores options
    latency_s: float | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)  # every backend call: name, messages, text, meta

    @property
    def judged(self) -> bool:
        return self.key is not None

    @property
    def audio_type(self) -> str | None:
        """The Task Agent's detected audio type (speech / sound / music)."""
        return next((s["meta"].get("audio_type") for s in self.steps if s["name"] == "classify"), None)

    @property
    def tool_output(self) -> tuple[str, str] | None:
        """The Task Agent's tool step: (tool name, its transcript or caption)."""
        names = {"classify", "answer"}
        return next(((s["name"], s["text"]) for s in self.steps if s["name"] not in names), None)

    @property
    def no_confidence(self) -> str | None:
        """Why the answer has no confidence, where its backend said (e.g. a server that gives no log-probabilities)."""
        return next((s["meta"]["no_confidence"] for s in reversed(self.steps) if s.get("meta", {}).get("no_confidence")), None)

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data.update(judged=self.judged, audio_type=self.audio_type)
        tool = self.tool_output
        data["tool"] = None if tool is None else {"name": tool[0], "text": tool[1]}
        return json_safe(data)


@dataclass
class CompareService:
    """Compare requests: checked, kept in the upload folder, stored as items of LAB_DATASET and answered per method."""

    pool: Pool
    modalities: ModalityService | None = None  # detects a clip's modality; one of its own when None

    def __post_init__(self):
        if self.modalities is None:
            self.modalities = ModalityService(self.pool)

    def examples(self) -> list[dict[str, Any]]:
        """Example items for the Compare tab (audio path made absolute); [] when there is no examples file."""
        path = self.pool.settings.examples_path
        if not path or not os.path.isfile(path):
            return []
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
        base = os.path.dirname(os.path.abspath(path))
        return [
            {
                "id": r["id"], "audio": os.path.join(base, r["audio"]), "question": r["question"],
                "choices": list(r.get("choices") or []), "answer": r.get("answer"), "modality": r.get("modality", UNKNOWN_MODALITY),
            }
            for r in records
        ]

    @store_errors
    def prepare(
        self, audio_path: str | None, question: str, choices: Sequence[str], answer: str | None, modality: str = AUTO,
        backend: str | None = None,
    ) -> tuple[Item, Clip]:
        """Check a Compare request, keep its clip in the upload folder and store it as an item of LAB_DATASET.

        The item id is a hash of the question, choices, key and the decoded audio, so asking the same thing
        again finds the answers already stored. The modality is detected from the clip where it is AUTO or empty
        (by `backend`'s listener, see ModalityService). Raises AudioError or ItemError with the reason.
        """
        if not audio_path:
            raise AudioError("no audio: upload or record a clip, or pick an example")
        question = (question or "").strip()
        if not question:
            raise ItemError("no question: type the question to ask about the clip")
        check_sizes(question, choices)
        choices = tuple(dict.fromkeys(c.strip() for c in choices if c and c.strip()))
        key = resolve_key(answer, choices)
        clip = load_audio(audio_path, max_seconds=self.pool.settings.max_seconds)
        modality = self.modalities.resolve(modality, clip, backend).value
        item = Item(
            id="lab-" + store.content_id(question, choices, key, clip.hash)[:12],
            question=question, choices=choices, answer=key, modality=modality,
            audio_path=self._keep_upload(audio_path, clip), dataset=LAB_DATASET,
        )
        validate_item(item)
        store.upsert_dataset(
            self.pool.db(), LAB_DATASET, [store.StoredItem(item, meta={"upload": os.path.basename(audio_path)})],
            source="the app's Compare tab", format=LAB_SOURCE,
        )
        return item, clip

    @store_errors
    def compare(
        self,
        audio_path: str | None,
        question: str,
        choices: Sequence[str],
        answer: str | None,
        methods: Sequence[str],
        backend: str | None = None,
        modality: str = AUTO,
        report_waits: bool = False,
    ) -> Iterator[MethodResult | Waiting]:
        """Ask one clip with several methods: checks the request now, then returns an iterator that yields each
        method's result as soon as it is ready (and, with `report_waits`, a Waiting every WAIT_POLL_S while
        other requests hold the model).

        Answers already stored come first, at once; the others are asked in the order given and stored as
        they finish. A method that fails (an adapter that does not load, a backend error) yields a result
        with `error` set and the others still run. Bad input raises here, before anything is asked.
        """
        methods = list(dict.fromkeys(m for m in methods if m))
        if not methods:
            raise ItemError("no method selected: pick at least one")
        name = backend or self.pool.settings.backend
        check_backend(self.pool, name)
        item, clip = self.prepare(audio_path, question, choices, answer, modality, name)
        return self._answers(name, self.pool.get_backend(name), methods, item, clip, report_waits)

    @store_errors
    def _answers(
        self, name: str, engine: Backend, methods: list[str], item: Item, clip: Clip, report_waits: bool
    ) -> Iterator[MethodResult | Waiting]:
        pending = []
        for method in methods:
            result = self._cached(engine, method, item)
            if result is None:
                pending.append(method)
            else:
                yield result
        gate = self.pool.model_lock(name)
        for method in pending:
            gate.join(1)
            try:
                timeout = 0 if report_waits else -1
                while not gate.acquire(timeout):
                    # never yield while holding the lock: a closed browser tab abandons this generator there
                    yield Waiting(method, max(gate.queued - 1, 1))
                    timeout = WAIT_POLL_S
                try:
                    result = self._ask(name, engine, method, item, clip)
                finally:
                    gate.release()
            finally:
                gate.join(-1)
            yield result

    def _run(self, engine: Backend, method_name: str) -> store.Run:
        method = get_method(method_name)
        # a LoRA method names its own adapter; the shared backend's current adapter must not leak into other runs
        identity = {**engine.describe(), "adapter": None}
        return store.get_or_create_run(
            self.pool.db(), LAB_DATASET, identity, method.describe(engine), self.pool.settings.decoding, FULL, JUDGE_VERSION, source=LAB_SOURCE
        )

    def _cached(self, engine: Backend, method_name: str, item: Item) -> MethodResult | None:
        try:
            run = self._run(engine, method_name)
        except ReliabilityError as exc:
            return MethodResult(method_name, error=str(exc))
        if item.id not in store.answered(self.pool.db(), run.id):
            return None
        return self._stored(method_name, run.id, item.id, cached=True)

    def _ask(self, name: str, engine: Backend, method_name: str, item: Item, clip: Clip) -> MethodResult:
        adapters_dir = self.pool.settings.adapters_dir
        try:
            method = get_method(method_name)
            run = self._run(engine, method_name)
            # the caller holds the backend's model lock
            if method.adapter is not None:
                # without an adapters folder, the shipped adapters are still there
                ensure_loaded(engine, [method.adapter], adapters_dir, user=bool(adapters_dir))
            answers = ask(method, engine, [item], [clip], self.pool.settings.decoding)
            self.pool.mark_warm(name)
            store.save_answers(self.pool.db(), run.id, answers, [clip.hash], JUDGE_VERSION)
        except ReliabilityError as exc:
            return MethodResult(method_name, error=str(exc))
        except Exception as exc:  # a model's own failure must not take down the other methods or users
            log.exception("method %s failed on backend %s", method_name, name)
            return MethodResult(method_name, error=f"{type(exc).__name__}: {_first_line(exc)}")
        return self._stored(method_name, run.id, item.id, cached=False)

    def _stored(self, method_name: str, run_id: str, item_id: str, cached: bool) -> MethodResult:
        row = next(r for r in store.answer_rows(self.pool.db(), [run_id]) if r["item_id"] == item_id)
        return MethodResult(
            method=method_name, cached=cached, answer_id=row["answer_id"], run_id=run_id, item_id=item_id,
            text=row["text"], choice=row["choice"], key=row["key"], outcome=row["outcome"], outcome_source=row["source"],
            parsed=row["parsed"], rule=row["rule"], confidence=row["confidence"], latency_s=row["latency_s"],
            steps=row["steps"],
        )

    def _keep_upload(self, path: str, clip: Clip) -> str:
        """Copy an upload into the app's upload folder under its content hash: the annotators hear it later,
        after the browser's temporary copy is gone."""
        uploads = self.pool.uploads_dir
        suffix = os.path.splitext(path)[1].lower()
        target = os.path.join(uploads, clip.hash + (suffix if suffix in AUDIO_SUFFIXES else ".wav"))
        if not os.path.exists(target):
            os.makedirs(uploads, exist_ok=True)
            # a part file of its own: two requests keeping the same clip at once must not share (and lose) one
            part = f"{target}.{uuid.uuid4().hex}.part"
            if suffix in AUDIO_SUFFIXES:
                shutil.copyfile(path, part)
            else:
                import soundfile as sf

                sf.write(part, clip.samples, 16_000, format="WAV", subtype="FLOAT")
            os.replace(part, target)  # atomic: a concurrent request never sees half a file
        return target


def check_sizes(question: str, choices: Sequence[str]) -> None:
    """Refuse (ItemError) a question or options over the limits, before anything is stored or asked."""
    if len(question) > MAX_QUESTION_CHARS:
        raise ItemError(f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    given = [c for c in choices if c and c.strip()]
    if len(given) > MAX_OPTIONS:
        raise ItemError(f"{len(given)} options; the limit is {MAX_OPTIONS} (one per letter)")
    longest = max((len(c.strip()) for c in given), default=0)
    if longest > MAX_OPTION_CHARS:
        raise ItemError(f"an option is {longest} characters; the limit is {MAX_OPTION_CHARS}")


def check_backend(pool: Pool, name: str) -> None:
    """Refuse (BackendError) a backend the menu does not offer, unless the app was started to allow it: a request
    must not reach e.g. `openai`, which would send the server's OPENAI_API_KEY to wherever it points."""
    if not pool.backend_allowed(name):
        allowed = [*pool.backend_names(), *pool.settings.extra_backends]
        raise BackendError(f"backend {name!r} is not offered by this app; use one of {allowed} (app.py --allow-backend NAME adds one)")


def resolve_key(answer: str | None, choices: Sequence[str]) -> str | None:
    """The answer key as one of `choices`: its exact text (case and spaces ignored) or its letter ("B", "(b)");
    "I don't know" (IDK_REPLY) marks an unanswerable question.

    None for no key. Raises ItemError for a key without choices or one that names no choice.
    """
    answer = (answer or "").strip()
    if not answer:
        return None
    if answer.lower() == IDK_REPLY.lower() and all(c.lower() != answer.lower() for c in choices):
        return IDK_REPLY
    if not choices:
        raise ItemError(f"an answer key {answer!r} was given but there are no options to match it against")
    for choice in choices:
        if choice.lower() == answer.lower():
            return choice
    letter = _LETTER.fullmatch(answer)
    if letter and ord(letter[1].upper()) - ord("A") < len(choices):
        return choices[ord(letter[1].upper()) - ord("A")]
    raise ItemError(f"the answer key {answer!r} is not one of the options {list(choices)}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "no detail"
