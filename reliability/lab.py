"""The lab's services behind the app and its API: compare methods on a clip, queue and store labels, compute the dashboard.

Nothing here imports gradio: the UI handlers (reliability/ui/handlers.py) and the API endpoints call these plain
methods, and the tests call them directly. One `Lab` serves every user of a running app, so it holds
one SQLite connection per thread and builds each backend once, behind a lock.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from annotations import store
from annotations.agreement import summarize
from annotations.db import open_db
from annotations.sampling import stratified_order
from reliability import metrics, report
from reliability.training.adapters import ensure_loaded, list_adapters
from reliability.audio import Clip, load_audio
from reliability.backends import BACKENDS, DEFAULT_BACKEND, MENU_ONLY_AS_DEFAULT, get_backend
from reliability.backends.base import Backend
from reliability.errors import AudioError, BackendError, ItemError, ReliabilityError, StoreError
from reliability.evaluate import FULL
from reliability.judge import JUDGE_VERSION
from reliability.methods import LORA_PREFIX, ask, get_method, method_names, validate_item
from reliability.plots import MethodPoint
from reliability.prompts import IDK_REPLY
from reliability.types import MODALITIES, Decoding, Item

log = logging.getLogger(__name__)

LAB_DATASET = "lab"  # the dataset that items asked in the Compare tab are stored under
LAB_SOURCE = "lab"  # runs.source of answers made by the app
UNKNOWN_MODALITY = "unknown"
MODALITY_CHOICES = (*MODALITIES, UNKNOWN_MODALITY)
VERDICT_MODE, HUMAN_MODE = "verdict", "human"  # annotate: judge model answers / answer items yourself
PARSER, HUMAN = store.PARSER, store.HUMAN  # dashboard outcome sources
BASELINE = "baseline"
QUEUE_LIMIT = 5000  # most tasks one queue holds; far more than one labelling session
NO_KEY, NO_AUDIO, KEY_SEEN = "no answer key", "no audio", "you saw the key"  # why an item is not a human-baseline task
# extensions an upload may keep when it is copied into the app's upload folder
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm"})
_LETTER = re.compile(r"\(?([A-Za-z])\)?\.?")
WAIT_POLL_S = 0.5  # how often a Compare request waiting for the model reports where it stands


@dataclass(frozen=True)
class Waiting:
    """A Compare request's method waiting for the model: how many requests use or wait for it besides this one."""

    method: str
    ahead: int


class ModelGate:
    """A backend's model lock that counts the requests holding or waiting for it, so a waiting user can be told."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.queued = 0  # requests holding the lock or waiting for it

    def join(self, delta: int) -> None:
        """Enter (+1) or leave (-1) the line."""
        with self._count_lock:
            self.queued += delta

    def acquire(self, timeout: float = -1) -> bool:
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> ModelGate:
        self.join(1)
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.join(-1)


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
    outcome_source: str = PARSER
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


@dataclass(frozen=True)
class Task:
    """One thing for an annotator to label: a model answer to judge, or an item to answer themselves."""

    kind: str  # VERDICT_MODE or HUMAN_MODE
    item: Item
    answer_id: str | None = None  # verdict tasks: the answer judged
    method: str | None = None
    model_id: str | None = None
    text: str | None = None  # verdict tasks: the model's raw reply
    parser_choice: str | None = None
    parser_outcome: str | None = None
    parsed: bool = True
    n_labels: int = 0  # verdicts by anyone on this answer
    mine: str | None = None  # this annotator's current verdict (or own choice, or store.IDK_CHOICE)
    key_seen: bool = False  # human tasks: the annotator saw the key after answering, so the answer can no longer change

    @property
    def key(self) -> str:
        """What identifies the task across refreshes."""
        return self.answer_id or f"{self.item.dataset}/{self.item.id}"

    def as_dict(self) -> dict[str, Any]:
        item = self.item
        data = {
            "kind": self.kind, "key": self.key, "dataset": item.dataset, "item_id": item.id, "question": item.question,
            "choices": list(item.choices), "modality": item.modality, "has_audio": item.audio_path is not None,
            "mine": self.mine, "key_seen": self.key_seen,
        }
        if self.kind == VERDICT_MODE:
            # the answer key is shown only to judge a model's answer; a human answering must not see it
            data.update(
                answer_key=item.answer, answer_id=self.answer_id, method=self.method, model_id=self.model_id,
                text=self.text, parser_choice=self.parser_choice, parser_outcome=self.parser_outcome,
                parsed=self.parsed, n_labels=self.n_labels,
            )
        return data


@dataclass
class Queue:
    """An annotator's tasks under one filter, where to resume, and how many are done."""

    annotator: str
    mode: str
    tasks: list[Task]
    position: int  # the first task this annotator has not labelled (0 when all are done)
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> items under the filters that are not tasks

    @property
    def done(self) -> int:
        return sum(t.mine is not None for t in self.tasks)

    @property
    def by_modality(self) -> dict[str, tuple[int, int]]:
        """Modality -> (labelled, tasks)."""
        return modality_counts(self.tasks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "annotator": self.annotator, "mode": self.mode, "total": len(self.tasks), "done": self.done,
            "position": self.position, "left_out": self.left_out,
            "by_modality": {m: {"done": d, "total": n} for m, (d, n) in self.by_modality.items()},
            "tasks": [t.as_dict() for t in self.tasks],
        }


def modality_counts(tasks: Sequence[Task]) -> dict[str, tuple[int, int]]:
    """Modality -> (labelled, tasks), modalities in the order they first appear."""
    counts: dict[str, list[int]] = {}
    for t in tasks:
        done_total = counts.setdefault(t.item.modality, [0, 0])
        done_total[0] += t.mine is not None
        done_total[1] += 1
    return {m: (d, n) for m, (d, n) in counts.items()}


@dataclass(frozen=True)
class DashboardFilters:
    """What the dashboard shows."""

    dataset: str | None = None  # None: the most recently used dataset
    backend: str | None = None  # None: every backend (each model is its own setup)
    annotator: str | None = None  # None: every annotator's labels
    source: str = HUMAN  # HUMAN: human verdicts override the parser where they exist; PARSER: parser only
    normalize: str = "total"  # ΔCon/ΔHum denominator, see metrics.compare


@dataclass
class Dashboard:
    """Everything the dashboard draws, for one filter."""

    filters: DashboardFilters
    dataset: str | None  # the dataset shown (resolved from the filter)
    rows: list[dict[str, Any]]  # report rows plus backend and model_id; human baseline rows last
    points: list[MethodPoint]  # one per compared method × group, for the plane and the RGI bars
    curves: dict[str, metrics.RiskCoverage]  # method label -> risk-coverage over answers with a confidence
    agreement: dict[str, Any]
    counts: dict[str, int]

    @property
    def empty(self) -> bool:
        return not self.rows

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: ±inf and NaN become None (each RGI keeps its `rgi_label`, e.g. "+inf (no conservatism)")."""
        points = [
            {
                "method": p.method, "group": p.group, **dataclasses.asdict(p.comparison),
                "intervals": None if p.intervals is None else {
                    name: [getattr(p.intervals, name).low, getattr(p.intervals, name).high]
                    for name in ("delta_con", "delta_hum", "rgi")
                },
            }
            for p in self.points
        ]
        curves = {name: {"aurc": c.aurc, "n": len(c.coverage), "coverage": c.coverage, "risk": c.risk} for name, c in self.curves.items()}
        return json_safe({
            "filters": dataclasses.asdict(self.filters), "dataset": self.dataset, "rows": self.rows, "points": points,
            "risk_coverage": curves, "agreement": self.agreement, "counts": self.counts,
        })


@dataclass
class Lab:
    """The services one running app shares between its users."""

    db_path: str  # the lab database (SQLite); created with its folder if missing
    data_dir: str  # the app's own folder: uploads/ (kept clips) and exports/ (downloads) live here
    backend: str = DEFAULT_BACKEND  # the default backend's name
    backend_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the default backend
    adapters_dir: str | None = None  # folder of saved LoRA adapters (reliability.training.adapters), one sub-folder each
    examples_path: str | None = None  # a JSON list of example items (demo/items.json), audio relative to it
    max_seconds: float = 120.0  # longest clip accepted from an upload
    decoding: Decoding = Decoding()  # decoding of every Compare answer (greedy)
    n_boot: int = 1000  # bootstrap resamples of the dashboard's intervals
    queue_seed: str = "0"  # with the annotator's name, fixes the shuffled order of their tasks

    def __post_init__(self):
        self._local = threading.local()  # sqlite3 connections may not cross threads
        self._backends: dict[str, Backend] = {}
        self._build_lock = threading.Lock()
        # one model call at a time per backend: a LoRA method switches the shared model's adapter
        self._model_locks: dict[str, ModelGate] = defaultdict(ModelGate)
        self._warm: set[str] = set()

    # ------------------------------------------------------------ folders, database, backends

    @property
    def uploads_dir(self) -> str:
        return os.path.join(self.data_dir, "uploads")

    @property
    def exports_dir(self) -> str:
        return os.path.join(self.data_dir, "exports")

    def db(self) -> sqlite_utils.Database:
        """This thread's connection to the lab database (opened and migrated on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = open_db(self.db_path)
        return db

    def check(self) -> list[str]:
        """Problems a user should see on opening the app (an unusable database), as one line each."""
        try:
            self.db()
        except ReliabilityError as exc:
            return [str(exc)]
        return []

    def backend_names(self) -> list[str]:
        """Backends offered in the UI: the default first; scripted and openai only when they are the default."""
        return [self.backend] + [n for n in BACKENDS if n != self.backend and n not in MENU_ONLY_AS_DEFAULT]

    def get_backend(self, name: str | None = None) -> Backend:
        """The backend of this name, built on first use and shared afterwards."""
        name = name or self.backend
        with self._build_lock:
            if name not in self._backends:
                kwargs = self.backend_kwargs if name == self.backend else {}
                try:
                    self._backends[name] = get_backend(name, **kwargs)
                except TypeError as exc:
                    raise BackendError(f"backend {name!r} does not take {sorted(kwargs)}: {exc}") from exc
                except ImportError as exc:
                    raise BackendError(f"backend {name!r} needs a package that is not installed: {exc}") from exc
            return self._backends[name]

    def is_warm(self, name: str | None = None) -> bool:
        """Whether the backend has answered (or loaded) already, so the next answer needs no model load."""
        return (name or self.backend) in self._warm

    def warm(self, name: str | None = None) -> None:
        """Load a backend's model now (the app does this in the background at start), where it can load eagerly."""
        name = name or self.backend
        backend = self.get_backend(name)
        load = getattr(backend, "load", None)
        if callable(load):
            load()
        self._warm.add(name)

    def adapters(self) -> dict[str, str]:
        """LoRA adapters saved in `adapters_dir`: name -> folder ({} without an adapters folder)."""
        return {a.name: a.path for a in list_adapters(self.adapters_dir)} if self.adapters_dir else {}

    def method_names(self) -> list[str]:
        """Every method the Compare tab offers: the built-in ones, then one per saved adapter."""
        return [*method_names(), *(f"{LORA_PREFIX}{name}" for name in self.adapters())]

    def model_lock(self, name: str | None = None) -> ModelGate:
        """The lock held while a backend's model answers: hold it to change the model (e.g. train an adapter)
        without a Compare request answering in between."""
        return self._model_locks[name or self.backend]

    # ------------------------------------------------------------ compare

    def examples(self) -> list[dict[str, Any]]:
        """Example items for the Compare tab (audio path made absolute); [] when there is no examples file."""
        if not self.examples_path or not os.path.isfile(self.examples_path):
            return []
        with open(self.examples_path, encoding="utf-8") as f:
            records = json.load(f)
        base = os.path.dirname(os.path.abspath(self.examples_path))
        return [
            {
                "id": r["id"], "audio": os.path.join(base, r["audio"]), "question": r["question"],
                "choices": list(r.get("choices") or []), "answer": r.get("answer"), "modality": r.get("modality", UNKNOWN_MODALITY),
            }
            for r in records
        ]

    def prepare(
        self, audio_path: str | None, question: str, choices: Sequence[str], answer: str | None, modality: str = UNKNOWN_MODALITY
    ) -> tuple[Item, Clip]:
        """Check a Compare request, keep its clip in the upload folder and store it as an item of LAB_DATASET.

        The item id is a hash of the question, choices, key and the decoded audio, so asking the same thing
        again finds the answers already stored. Raises AudioError or ItemError with the reason.
        """
        if not audio_path:
            raise AudioError("no audio: upload or record a clip, or pick an example")
        question = (question or "").strip()
        if not question:
            raise ItemError("no question: type the question to ask about the clip")
        choices = tuple(dict.fromkeys(c.strip() for c in choices if c and c.strip()))
        key = resolve_key(answer, choices)
        if modality not in MODALITY_CHOICES:
            raise ItemError(f"modality {modality!r} is not one of {list(MODALITY_CHOICES)}")
        clip = load_audio(audio_path, max_seconds=self.max_seconds)
        item = Item(
            id="lab-" + store.content_id(question, choices, key, clip.hash)[:12],
            question=question, choices=choices, answer=key, modality=modality,
            audio_path=self._keep_upload(audio_path, clip), dataset=LAB_DATASET,
        )
        validate_item(item)
        store.upsert_dataset(
            self.db(), LAB_DATASET, [store.StoredItem(item, meta={"upload": os.path.basename(audio_path)})],
            source="the app's Compare tab", format=LAB_SOURCE,
        )
        return item, clip

    def compare(
        self,
        audio_path: str | None,
        question: str,
        choices: Sequence[str],
        answer: str | None,
        methods: Sequence[str],
        backend: str | None = None,
        modality: str = UNKNOWN_MODALITY,
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
        name = backend or self.backend
        item, clip = self.prepare(audio_path, question, choices, answer, modality)
        return self._answers(name, self.get_backend(name), methods, item, clip, report_waits)

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
        gate = self.model_lock(name)
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
            self.db(), LAB_DATASET, identity, method.describe(), self.decoding, FULL, JUDGE_VERSION, source=LAB_SOURCE
        )

    def _cached(self, engine: Backend, method_name: str, item: Item) -> MethodResult | None:
        try:
            run = self._run(engine, method_name)
        except ReliabilityError as exc:
            return MethodResult(method_name, error=str(exc))
        if item.id not in store.answered(self.db(), run.id):
            return None
        return self._stored(method_name, run.id, item.id, cached=True)

    def _ask(self, name: str, engine: Backend, method_name: str, item: Item, clip: Clip) -> MethodResult:
        try:
            method = get_method(method_name)
            run = self._run(engine, method_name)
            # the caller holds the backend's model lock
            if method.adapter is not None:
                if not self.adapters_dir:
                    raise BackendError("the app has no adapters folder (start it with --adapters-dir DIR)")
                ensure_loaded(engine, [method.adapter], self.adapters_dir)
            answers = ask(method, engine, [item], [clip], self.decoding)
            self._warm.add(name)
            store.save_answers(self.db(), run.id, answers, [clip.hash], JUDGE_VERSION)
        except ReliabilityError as exc:
            return MethodResult(method_name, error=str(exc))
        except Exception as exc:  # a model's own failure must not take down the other methods or users
            log.exception("method %s failed on backend %s", method_name, name)
            return MethodResult(method_name, error=f"{type(exc).__name__}: {_first_line(exc)}")
        return self._stored(method_name, run.id, item.id, cached=False)

    def _stored(self, method_name: str, run_id: str, item_id: str, cached: bool) -> MethodResult:
        row = next(r for r in store.answer_rows(self.db(), [run_id]) if r["item_id"] == item_id)
        return MethodResult(
            method=method_name, cached=cached, answer_id=row["answer_id"], run_id=run_id, item_id=item_id,
            text=row["text"], choice=row["choice"], key=row["key"], outcome=row["outcome"], outcome_source=row["source"],
            parsed=row["parsed"], rule=row["rule"], confidence=row["confidence"], latency_s=row["latency_s"],
            steps=row["steps"],
        )

    # ------------------------------------------------------------ labels

    def label(self, answer_id: str, annotator: str, verdict: str, note: str = "") -> dict[str, Any]:
        """Store (or change) an annotator's verdict on a model answer: correct, wrong or idk."""
        label_id = store.add_label(self.db(), answer_id, annotator, verdict, note)
        return {"label_id": label_id, "kind": store.VERDICT, "answer_id": answer_id, "annotator": annotator.strip(), "verdict": verdict}

    def human_answer(self, dataset: str, item_id: str, annotator: str, choice: str | None) -> dict[str, Any]:
        """Store (or change) an annotator's own answer to an item (an option, or None / "I don't know").

        Refused (ItemError / StoreError) for an item whose clip is missing and for one whose key the annotator has seen.
        """
        item = store.get_item(self.db(), dataset, item_id)
        if item.audio_path is not None and not os.path.isfile(item.audio_path):
            raise ItemError(f"the clip of item {item_id!r} is missing ({item.audio_path}): a human answer needs it, so none is stored")
        label_id = store.add_human_answer(self.db(), dataset, item_id, annotator, choice or None)
        return {
            "label_id": label_id, "kind": store.HUMAN_ANSWER, "dataset": dataset, "item_id": item_id,
            "annotator": annotator.strip(), "choice": choice or store.IDK_CHOICE,
        }

    def saw_keys(self, annotator: str, items: Sequence[tuple[str, str]], via: str) -> None:
        """Record that the annotator has seen the keys of these (dataset, item id) pairs: no human answer to them after."""
        if (annotator or "").strip():
            store.saw_keys(self.db(), annotator, items, via)

    def queue(
        self,
        annotator: str,
        mode: str = VERDICT_MODE,
        dataset: str | None = None,
        modality: str | None = None,
        method: str | None = None,
        unsure_only: bool = False,
        unlabelled_only: bool = False,
        limit: int = QUEUE_LIMIT,
    ) -> Queue:
        """The annotator's tasks with their own labels so far, resuming at the first unlabelled.

        The order is shuffled per annotator (and `queue_seed`) and stratified by modality, so that any prefix
        covers the modalities in proportion. Human-baseline tasks are the items with a key and their clip that
        the annotator has not seen the key of before answering; `left_out` counts the others by reason.

        :param mode: VERDICT_MODE (judge stored answers) or HUMAN_MODE (answer items with a key and a clip yourself)
        :param unsure_only: only answers the parser could not read (verdict mode)
        :param unlabelled_only: leave out what this annotator has labelled already
        """
        annotator = (annotator or "").strip()
        if not annotator:
            raise StoreError("an annotator name is required: type your name first")
        if mode not in (VERDICT_MODE, HUMAN_MODE):
            raise ItemError(f"annotation mode {mode!r} is not one of {[VERDICT_MODE, HUMAN_MODE]}")
        db = self.db()
        mine = {
            (r["answer_id"] if r["kind"] == store.VERDICT else f"{r['dataset']}/{r['item_id']}"): r
            for r in store.label_rows(db, dataset)
            if r["annotator"] == annotator and r["current"]
        }
        if mode == VERDICT_MODE:
            entries = store.label_queue(db, dataset, None, modality, method, None, unsure_only, QUEUE_LIMIT)
            tasks = [
                Task(
                    VERDICT_MODE, e.item, e.answer_id, e.method, e.model_id, e.text, e.choice, str(e.outcome), e.parsed,
                    e.n_labels, mine[e.answer_id]["verdict"] if e.answer_id in mine else None,
                )
                for e in entries
            ]
            left_out: dict[str, int] = {}
        else:
            tasks, left_out = self._human_tasks(annotator, dataset, modality, mine)
        tasks = stratified_order(tasks, key=lambda t: t.key, group=lambda t: t.item.modality, seed=f"{self.queue_seed}/{annotator}/{mode}")[:limit]
        if unlabelled_only:
            tasks = [t for t in tasks if t.mine is None]
        position = next((i for i, t in enumerate(tasks) if t.mine is None), 0)
        return Queue(annotator, mode, tasks, position, left_out)

    def _human_tasks(
        self, annotator: str, dataset: str | None, modality: str | None, mine: dict[str, dict[str, Any]]
    ) -> tuple[list[Task], dict[str, int]]:
        db = self.db()
        names = [dataset] if dataset else [d["name"] for d in store.list_datasets(db)]
        seen = store.key_views(db, annotator, dataset)
        tasks, left_out = [], {NO_KEY: 0, NO_AUDIO: 0, KEY_SEEN: 0}
        for item in (s.item for name in names for s in store.stored_items(db, name, modality)):
            label = mine.get(f"{item.dataset}/{item.id}")
            key_seen = (item.dataset, item.id) in seen
            if item.answer is None:
                left_out[NO_KEY] += 1
            elif item.audio_path is None or not os.path.isfile(item.audio_path):
                left_out[NO_AUDIO] += 1
            elif key_seen and label is None:
                left_out[KEY_SEEN] += 1
            else:
                tasks.append(Task(HUMAN_MODE, item, mine=None if label is None else (label["choice"] or store.IDK_CHOICE), key_seen=key_seen))
        return tasks, {reason: n for reason, n in left_out.items() if n}

    # ------------------------------------------------------------ dashboard

    def filter_choices(self) -> dict[str, list[str]]:
        """Values the dashboard and queue filters can take: datasets (most recently used first), backends,
        annotators, methods."""
        db = self.db()
        runs = store.list_runs(db)
        used = list(dict.fromkeys(r.dataset for r in reversed(runs)))
        datasets = used + [d["name"] for d in store.list_datasets(db) if d["name"] not in used]
        return {
            "datasets": datasets,
            "backends": sorted({r.backend for r in runs}),
            "annotators": sorted({r["annotator"] for r in store.label_rows(db)}),
            "methods": sorted({r.method for r in runs}),
        }

    def metrics(self, filters: DashboardFilters = DashboardFilters()) -> Dashboard:
        """The dashboard of one dataset's full-audio runs: metric rows with intervals, the method points, risk-coverage
        curves where confidences exist, and label agreement.

        Runs are compared within their setup (backend and model), every method against that setup's baseline;
        where a method has several runs in a setup (other decoding or prompt version) the most recent is used.
        With source HUMAN, human verdicts (the majority of the filtered annotators', a tie going to the latest)
        override the parser's outcome; each row's `source` says which was used.
        """
        if filters.source not in (PARSER, HUMAN):
            raise ItemError(f"outcome source {filters.source!r} is not one of {[PARSER, HUMAN]}")
        if filters.normalize not in metrics.NORMALIZATIONS:
            raise ItemError(f"normalize {filters.normalize!r} is not one of {list(metrics.NORMALIZATIONS)}")
        db = self.db()
        dataset = filters.dataset or next(iter(self.filter_choices()["datasets"]), None)
        if dataset is None:
            return Dashboard(filters, None, [], [], {}, _agreement([], []), {"runs": 0, "answers": 0, "labels": 0})
        everywhere = [r for r in store.label_rows(db) if r["current"] and filters.annotator in (None, r["annotator"])]
        labels = [r for r in everywhere if r["dataset"] == dataset]
        verdicts = [r for r in labels if r["kind"] == store.VERDICT]
        runs = _latest_runs(store.list_runs(db, dataset, FULL), filters.backend)
        result = report.build(
            db, dataset, runs, {"backend": "backend", "model_id": "model_id"}, _label, BASELINE,
            human=filters.source == HUMAN, annotator=filters.annotator, n_boot=self.n_boot, normalize=filters.normalize,
        )
        points = [p for setup in result.setups for p in report.points(setup, result.groups, filters.normalize, self.n_boot)]
        counts = {
            "runs": len(runs),
            "answers": result.answers,
            "labels": len(verdicts),
            "human_answers": len(labels) - len(verdicts),
            "human_used": result.people.used,  # the human row's answers
            "human_excluded": result.people.n_excluded,  # human answers kept out of it (not blind, or no audio)
        }
        agreement = _agreement(verdicts, labels)
        # with one dataset's labels only, pooling changes nothing: no second pass over them
        same = len(everywhere) == len(labels)
        agreement["pooled"] = dict(agreement) if same else _agreement([r for r in everywhere if r["kind"] == store.VERDICT], everywhere)
        agreement["excluded_human_answers"] = {reason: n for reason, n in result.people.excluded.items() if n}
        return Dashboard(filters, dataset, result.rows, points, report.curves(db, result), agreement, counts)

    def export_path(self, name: str) -> str:
        """A fresh file path in the exports folder (the only folder of the app's data the browser may download from)."""
        os.makedirs(self.exports_dir, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return os.path.join(self.exports_dir, f"{stamp}-{os.getpid()}-{threading.get_ident() % 10_000}-{name}")

    # ------------------------------------------------------------ helpers

    def _keep_upload(self, path: str, clip: Clip) -> str:
        """Copy an upload into the app's upload folder under its content hash: the annotators hear it later,
        after the browser's temporary copy is gone."""
        suffix = os.path.splitext(path)[1].lower()
        target = os.path.join(self.uploads_dir, clip.hash + (suffix if suffix in AUDIO_SUFFIXES else ".wav"))
        if not os.path.exists(target):
            os.makedirs(self.uploads_dir, exist_ok=True)
            if suffix in AUDIO_SUFFIXES:
                shutil.copyfile(path, target + ".part")
            else:
                import soundfile as sf

                sf.write(target + ".part", clip.samples, 16_000, format="WAV", subtype="FLOAT")
            os.replace(target + ".part", target)  # atomic: a concurrent request never sees half a file
        return target


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


def json_safe(value: Any) -> Any:
    """A copy of nested data that strict JSON accepts: NaN and ±inf become None, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _latest_runs(runs: Sequence[store.Run], backend: str | None) -> list[store.Run]:
    """The most recent run per (backend, model, method); list_runs is oldest first."""
    latest = {(r.backend, r.model_id, r.method): r for r in runs if backend in (None, r.backend)}
    return sorted(latest.values(), key=lambda r: (r.backend, r.model_id, r.method != BASELINE, r.method))


def _label(run: store.Run, members: Sequence[store.Run], n_setups: int) -> str:
    """A run's method, with its model where the dashboard shows several setups (one run per method each)."""
    return run.method if n_setups == 1 else f"{run.method} · {run.model_id or run.backend}"


def _agreement(verdicts: Sequence[dict[str, Any]], labels: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Parser-vs-human and inter-annotator agreement of the current verdicts, plus who labelled what."""
    table: dict[str, dict[str, str]] = defaultdict(dict)
    for r in verdicts:
        table[r["answer_id"]][r["annotator"]] = r["verdict"]
    summary = summarize(table, [(r["parser_outcome"], r["verdict"]) for r in verdicts])
    per_annotator: dict[str, int] = defaultdict(int)
    for r in labels:
        per_annotator[r["annotator"]] += 1
    return {
        "parser_rate": summary.parser_rate, "parser_n": summary.parser_n, "alpha": summary.alpha,
        "n_answers": summary.n_answers, "annotators": summary.annotators,
        "kappas": [{"a": a, "b": b, "kappa": k, "n": n} for (a, b), (k, n) in summary.kappas.items()],
        "labels_by_annotator": dict(sorted(per_annotator.items())),
    }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "no detail"
