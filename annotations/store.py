"""The lab notebook's reads and writes: the only module that writes SQL.

Every write is idempotent: ids are content hashes (a run is the hash of its identity, an answer the
hash of its run and item, a label the hash of its target, annotator and kind) and rows are upserted,
so running, importing or labelling twice never duplicates anything. Every write function is one
transaction.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from annotations.transactions import now, writing
from reliability.errors import StoreError
from reliability.types import Answer, Decoding, Item, Judgement, Outcome

VERDICT = "verdict"  # label kind: a human's judgement of a model answer
HUMAN_ANSWER = "human_answer"  # label kind: a human's own answer to an item (the human baseline)
PARSER, HUMAN = "parser", "human"  # where an outcome came from
IDK_CHOICE = "I don't know"  # what a human picks to abstain
MAX_ANNOTATOR_CHARS = 64  # a name, not a document: 10,000-character names were accepted
VIA_VERDICT, VIA_COMPARE, VIA_API = "judge mode", "the Compare tab", "the API"  # where an annotator saw a key
_CHUNK = 500  # ids per `IN (...)` query, well under SQLite's variable limit


def content_id(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts: the id of runs, answers and labels."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- datasets and items


@dataclass(frozen=True)
class StoredItem:
    """An item as imported: the Item plus the source's extra fields and its record unchanged."""

    item: Item
    meta: dict[str, Any] = field(default_factory=dict)  # category, difficulty, ... as the source names them
    raw: dict[str, Any] | None = None  # the source record, for exports in the source's own format


def upsert_dataset(
    db: sqlite_utils.Database, name: str, records: Sequence[StoredItem], source: str = "", format: str = ""
) -> int:
    """Create or update a dataset and all its items in one transaction; returns the dataset's item count.

    :param name: the dataset's name; every record's `item.dataset` must equal it
    :param source: where the items came from (a file path), for the record
    :param format: the importer that read them ("mmau", "mmau-hf", ...)
    """
    wrong = [r.item.id for r in records if r.item.dataset != name]
    if wrong:
        raise StoreError(f"items {wrong[:5]} belong to another dataset than {name!r}")
    rows = [_item_row(r) for r in records]
    with writing(db):
        db["datasets"].upsert(
            {"name": name, "source": source, "format": format, "n_items": 0, "imported_at": now()}, pk="name"
        )
        db["items"].upsert_all(rows, pk=("dataset", "id"))
        count = db.execute("SELECT count(*) FROM items WHERE dataset = ?", [name]).fetchone()[0]
        db["datasets"].update(name, {"n_items": count})
    return count


def list_datasets(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    """Every dataset: name, source, format, n_items, imported_at."""
    return list(db.query("SELECT name, source, format, n_items, imported_at FROM datasets ORDER BY name"))


def get_items(
    db: sqlite_utils.Database, dataset: str, modality: str | None = None, limit: int | None = None
) -> list[Item]:
    """A dataset's items in import order, optionally one modality and the first `limit`."""
    return [r.item for r in stored_items(db, dataset, modality, limit)]


def stored_items(
    db: sqlite_utils.Database, dataset: str, modality: str | None = None, limit: int | None = None
) -> list[StoredItem]:
    """Like get_items, with each item's meta and source record."""
    if not db["datasets"].count_where("name = ?", [dataset]):
        known = [d["name"] for d in list_datasets(db)]
        raise StoreError(f"no dataset {dataset!r}; imported: {', '.join(known) or 'none yet'}")
    where, params = _where({"dataset": dataset, "modality": modality})
    limit_sql = "" if limit is None else f" LIMIT {int(limit)}"
    return [_stored_item(row) for row in db.query(f"SELECT * FROM items {where} ORDER BY rowid{limit_sql}", params)]


def get_item(db: sqlite_utils.Database, dataset: str, item_id: str) -> Item:
    """One item by dataset and id."""
    row = next(iter(db.query("SELECT * FROM items WHERE dataset = ? AND id = ?", [dataset, item_id])), None)
    if row is None:
        raise StoreError(f"no item {item_id!r} in dataset {dataset!r}")
    return _stored_item(row).item


def modalities(db: sqlite_utils.Database, dataset: str) -> dict[str, str]:
    """Item id -> modality for a dataset."""
    return {r["id"]: r["modality"] for r in db.query("SELECT id, modality FROM items WHERE dataset = ?", [dataset])}


# ---------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """One method of one backend over one dataset under one condition: the unit that gets answers."""

    id: str
    dataset: str
    backend: str
    model_id: str
    adapter: str | None
    method: str
    prompt_version: str
    decoding: dict[str, Any]
    condition: str
    judge_version: str
    source: str
    created_at: str
    n_answers: int = 0

    @property
    def setup(self) -> tuple[str, str, str]:
        """What must match for two runs to be compared item by item: backend, model, condition."""
        return (self.backend, self.model_id, self.condition)


def get_or_create_run(
    db: sqlite_utils.Database,
    dataset: str,
    backend: dict[str, Any],
    method: dict[str, Any],
    decoding: Decoding,
    condition: str = "full",
    judge_version: str = "",
    source: str = "evaluate",
) -> Run:
    """The run with this identity, created if new. Its id is the hash of the identity, so asking again
    (another process, a re-run after a crash) gives the same run and therefore the cached answers.

    :param backend: Backend.describe(): backend, model_id, adapter
    :param method: Method.describe(): method, prompt_version, adapter (a LoRA method's adapter wins)
    :param condition: "full", "none" (no audio), or a fragment condition
    """
    identity = _run_identity(dataset, backend, method, decoding, condition)
    run_id = content_id(identity)
    with writing(db):
        if not db["datasets"].count_where("name = ?", [dataset]):
            raise StoreError(f"no dataset {dataset!r}; import it first")
        db["runs"].insert(
            {"id": run_id, **identity, "judge_version": judge_version, "source": source, "created_at": now()},
            pk="id",
            ignore=True,
        )
    return get_run(db, run_id)


def run_id_for(dataset: str, backend: dict[str, Any], method: dict[str, Any], decoding: Decoding, condition: str = "full") -> str:
    """The id get_or_create_run gives this run, without storing it: a run is stored with its first answer."""
    return content_id(_run_identity(dataset, backend, method, decoding, condition))


def _run_identity(dataset: str, backend: dict[str, Any], method: dict[str, Any], decoding: Decoding, condition: str) -> dict[str, Any]:
    return {
        "dataset": dataset,
        "backend": backend["backend"],
        "model_id": backend.get("model_id") or "",
        "adapter": method.get("adapter") or backend.get("adapter"),
        "method": method["method"],
        "prompt_version": method.get("prompt_version") or "",
        "decoding": json.dumps(decoding.as_dict(), sort_keys=True),
        "condition": condition,
    }


def get_run(db: sqlite_utils.Database, run_id: str) -> Run:
    """A run by id or by a unique prefix of its id (as the CLI prints them)."""
    rows = list(db.query(f"{_RUNS_SQL} WHERE substr(r.id, 1, ?) = ?", [len(run_id), run_id]))
    if len(rows) != 1:
        raise StoreError(f"{'no' if not rows else 'more than one'} run matches {run_id!r}")
    return _run(rows[0])


def list_runs(db: sqlite_utils.Database, dataset: str | None = None, condition: str | None = None) -> list[Run]:
    """Runs (with their answer counts), oldest first, optionally of one dataset and condition."""
    where, params = _where({"r.dataset": dataset, "r.condition": condition})
    return [_run(row) for row in db.query(f"{_RUNS_SQL} {where} ORDER BY r.created_at, r.id", params)]


# the count is a subquery so that it reads the (run_id, item_id) index instead of joining every answer
_RUNS_SQL = "SELECT r.*, (SELECT count(*) FROM answers a WHERE a.run_id = r.id) AS n_answers FROM runs r"


# ---------------------------------------------------------------- answers


def save_answers(
    db: sqlite_utils.Database,
    run_id: str,
    answers: Sequence[Answer],
    audio_hashes: Sequence[str | None],
    judge_version: str,
) -> None:
    """Store a batch of judged answers in one transaction; an answer already stored for an item is replaced.

    :param audio_hashes: per answer, the hash of the source clip it was asked about (None: no audio)
    """
    if len(answers) != len(audio_hashes):
        raise ValueError(f"{len(answers)} answers but {len(audio_hashes)} audio hashes")
    stamp = now()
    rows = [
        {
            "id": content_id(run_id, a.item_id),
            "run_id": run_id,
            "item_id": a.item_id,
            "text": a.text,
            "text_hash": content_id(a.text),
            "steps": json.dumps([dataclasses.asdict(s) for s in a.steps], default=str),  # default: numpy scalars in meta
            **_judgement_columns(a.judgement, judge_version),
            "confidence": a.confidence,
            "latency_s": a.latency_s,
            "audio_hash": h,
            "created_at": stamp,
        }
        for a, h in zip(answers, audio_hashes)
    ]
    with writing(db):
        db["answers"].upsert_all(rows, pk="id")


def answered(db: sqlite_utils.Database, run_id: str) -> dict[str, str | None]:
    """Item id -> audio hash of every answer a run already has: the generation cache."""
    return {r["item_id"]: r["audio_hash"] for r in db.query("SELECT item_id, audio_hash FROM answers WHERE run_id = ?", [run_id])}


def answered_item_ids(db: sqlite_utils.Database, run_id: str) -> set[str]:
    """Ids of the items a run has answered."""
    return set(answered(db, run_id))


def answers_to_rejudge(db: sqlite_utils.Database, judge_version: str, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Stored answers judged by another judge version, with what judging needs: text, choices, key, old choice."""
    sql = (
        "SELECT a.id, a.run_id, a.text, a.choice, a.confidence, i.choices, i.answer FROM answers a"
        " JOIN runs r ON r.id = a.run_id JOIN items i ON i.dataset = r.dataset AND i.id = a.item_id"
        " WHERE a.judge_version IS NOT ?"
    )
    rows = []
    for chunk in _chunks(run_ids):
        part = sql + (f" AND a.run_id IN ({_marks(chunk)})" if chunk is not None else "")
        rows += [dict(r, choices=tuple(json.loads(r["choices"]))) for r in db.query(part, [judge_version, *(chunk or [])])]
    return rows


def update_judgements(
    db: sqlite_utils.Database, updates: Iterable[tuple[str, Judgement, float | None]], judge_version: str
) -> int:
    """Write new judgements (answer id, judgement, confidence) in one transaction, then mark every run whose
    answers are now all at `judge_version`. Returns the number of answers updated."""
    rows = [{**_judgement_columns(v, judge_version), "confidence": conf, "id": answer_id} for answer_id, v, conf in updates]
    with writing(db):
        db.conn.executemany(
            "UPDATE answers SET choice = :choice, outcome = :outcome, parsed = :parsed, rule = :rule,"
            " judge_version = :judge_version, confidence = :confidence WHERE id = :id",
            rows,
        )
        db.execute(
            "UPDATE runs SET judge_version = ? WHERE judge_version IS NOT ? AND NOT EXISTS"
            " (SELECT 1 FROM answers a WHERE a.run_id = runs.id AND a.judge_version IS NOT ?)",
            [judge_version, judge_version, judge_version],
        )
    return len(rows)


def answer_rows(db: sqlite_utils.Database, run_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Answers of these runs joined with their run and item, plus the outcome used for metrics and its
    source (a human verdict overrides the parser), for exports and the dashboard."""
    outcomes = run_outcomes(db, run_ids)
    sql = (
        "SELECT a.id AS answer_id, a.run_id, r.dataset, r.backend, r.model_id, r.adapter, r.method, r.condition,"
        " a.item_id, i.modality, i.question, i.choices, i.answer AS key, a.text, a.choice, a.outcome AS parser_outcome,"
        " a.parsed, a.rule, a.judge_version, a.confidence, a.latency_s, a.audio_hash, a.steps, a.created_at"
        " FROM answers a JOIN runs r ON r.id = a.run_id JOIN items i ON i.dataset = r.dataset AND i.id = a.item_id"
    )
    rows = []
    for chunk in _chunks(run_ids):
        for r in db.query(sql + f" WHERE a.run_id IN ({_marks(chunk)}) ORDER BY r.created_at, i.rowid", chunk):
            result = outcomes[r["run_id"]]
            rows.append(
                dict(
                    r,
                    choices=json.loads(r["choices"]),
                    steps=json.loads(r["steps"]),
                    parsed=bool(r["parsed"]),
                    outcome=result.outcomes[r["item_id"]],
                    source=result.sources[r["item_id"]],
                )
            )
    return rows


# ---------------------------------------------------------------- outcomes


@dataclass
class RunOutcomes:
    """A run's outcome per item, each with its source: a human verdict where one applies, else the parser."""

    run: Run
    # item id -> "correct" / "wrong" / "idk". Plain strings (they equal the Outcome members): an Enum member
    # hashes through a Python call, which makes every metric over these maps about three times slower.
    outcomes: dict[str, str]
    sources: dict[str, str]  # item id -> PARSER or HUMAN

    @property
    def source(self) -> str:
        """Which source the run's figures use: "parser", "human", or "mixed (N human)"."""
        n_human = sum(s == HUMAN for s in self.sources.values())
        if n_human == 0:
            return PARSER
        return HUMAN if n_human == len(self.sources) else f"mixed ({n_human} human)"


def run_outcomes(
    db: sqlite_utils.Database, run_ids: Sequence[str], human: bool = True, annotator: str | None = None
) -> dict[str, RunOutcomes]:
    """Outcomes of each run by item. With `human`, a human verdict on an answer overrides the parser:
    the majority of the annotators' verdicts (or only `annotator`'s), a tie going to the latest. A verdict
    applies only while the answer's text is the one it was given for."""
    run_ids = list(dict.fromkeys(run_ids))
    runs: dict[str, Run] = {}
    outcomes: dict[str, dict[str, str]] = {run_id: {} for run_id in run_ids}
    votes: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for chunk in _chunks(run_ids):
        marks = _marks(chunk)
        runs.update((row["id"], _run(row)) for row in db.query(f"{_RUNS_SQL} WHERE r.id IN ({marks})", chunk))
        for run_id, item_id, outcome in db.execute(f"SELECT run_id, item_id, outcome FROM answers WHERE run_id IN ({marks})", chunk):
            outcomes[run_id][item_id] = outcome
        if human:
            sql = (
                "SELECT l.run_id, l.item_id, l.verdict, l.updated_at FROM labels l"
                " JOIN answers a ON a.id = l.answer_id AND a.text_hash = l.answer_text_hash"
                f" WHERE l.kind = '{VERDICT}' AND l.run_id IN ({marks})" + (" AND l.annotator = ?" if annotator else "")
            )
            for run_id, item_id, verdict, updated_at in db.execute(sql, [*chunk, *([annotator] if annotator else [])]):
                votes[(run_id, item_id)].append((verdict, updated_at))
    unknown = [run_id for run_id in run_ids if run_id not in runs]
    if unknown:
        raise StoreError(f"no run {unknown[0]!r}")
    result = {run_id: RunOutcomes(runs[run_id], outcomes[run_id], dict.fromkeys(outcomes[run_id], PARSER)) for run_id in run_ids}
    for (run_id, item_id), labels in votes.items():
        result[run_id].outcomes[item_id] = majority(labels)
        result[run_id].sources[item_id] = HUMAN
    return result


def majority(labels: Sequence[tuple[str, str]]) -> str:
    """The most common verdict of (verdict, updated_at) pairs; a tie goes to the most recent of the tied."""
    if len(labels) == 1:
        return labels[0][0]
    counts: dict[str, int] = {}
    for verdict, _ in labels:  # a plain dict: building a Counter costs more than counting two or three labels
        counts[verdict] = counts.get(verdict, 0) + 1
    top = max(counts.values())
    return max((t, v) for v, t in labels if counts[v] == top)[1]


# ---------------------------------------------------------------- human labels


def add_label(db: sqlite_utils.Database, answer_id: str, annotator: str, verdict: str, note: str = "") -> str:
    """Record (or change) an annotator's verdict on a model answer; returns the label id.

    :param verdict: "correct", "wrong" or "idk" (the answer abstained)
    """
    return add_labels(db, [(answer_id, annotator, verdict, note)])[0]


def add_labels(db: sqlite_utils.Database, labels: Iterable[tuple[str, str, str, str]]) -> list[str]:
    """Record many verdicts (answer id, annotator, verdict, note) in one transaction, e.g. a page of the
    annotation UI or labels made elsewhere; all or none. Returns the label ids."""
    labels = [(answer_id, check_annotator(annotator), _verdict(verdict), note) for answer_id, annotator, verdict, note in labels]
    ids = []
    with writing(db):
        for answer_id, annotator, verdict, note in labels:
            row = db.execute(
                "SELECT r.dataset, a.run_id, a.item_id, a.text_hash FROM answers a JOIN runs r ON r.id = a.run_id"
                " WHERE a.id = ?",
                [answer_id],
            ).fetchone()
            if row is None:
                raise StoreError(f"no answer {answer_id!r}")
            ids.append(content_id(VERDICT, answer_id, annotator))
            dataset, run_id, item_id, text_hash = row
            _upsert_label(
                db,
                dict(id=ids[-1], kind=VERDICT, answer_id=answer_id, run_id=run_id, answer_text_hash=text_hash, dataset=dataset,
                     item_id=item_id, annotator=annotator, verdict=verdict, note=note),
            )
            _insert_key_views(db, annotator, [(dataset, item_id)], VIA_VERDICT)
    return ids


def add_human_answer(
    db: sqlite_utils.Database, dataset: str, item_id: str, annotator: str, choice: str | None, note: str = ""
) -> str:
    """Record (or change) a human's own answer to an item, for the human baseline; returns the label id.

    :param choice: one of the item's choices, or None / "I don't know" to abstain. It is scored by exact
      match with the key: a person picks an option, so there is no free text to parse.
    """
    annotator = check_annotator(annotator)
    row = db.execute("SELECT choices, answer, audio_path FROM items WHERE dataset = ? AND id = ?", [dataset, item_id]).fetchone()
    if row is None:
        raise StoreError(f"no item {item_id!r} in dataset {dataset!r}")
    choices, key, audio_path = json.loads(row[0]), row[1], row[2]
    if key is None:
        raise StoreError(f"item {item_id!r} has no answer key, so a human answer cannot be scored")
    if audio_path is None:
        raise StoreError(f"item {item_id!r} has no audio: a human answer needs the clip, so none is stored")
    if choice is None or choice == IDK_CHOICE:
        choice, verdict = None, Outcome.IDK.value
    elif choice not in choices:
        raise StoreError(f"{choice!r} is not one of the choices of item {item_id!r}: {choices}")
    else:
        verdict = (Outcome.CORRECT if choice == key else Outcome.WRONG).value
    label_id = content_id(HUMAN_ANSWER, dataset, item_id, annotator)
    with writing(db):
        # checked inside the write lock: a key shown in another tab a moment ago must not slip through
        seen = key_views(db, annotator, dataset).get((dataset, item_id))
        if seen is not None:
            raise StoreError(
                f"{annotator} saw the answer key of item {item_id!r} in {seen['via']} ({seen['seen_at'][:16].replace('T', ' ')} UTC), "
                "so a human answer to it would not be blind; none is stored"
            )
        _upsert_label(
            db,
            dict(id=label_id, kind=HUMAN_ANSWER, dataset=dataset, item_id=item_id, annotator=annotator, verdict=verdict,
                 choice=choice, note=note),
        )
    return label_id


def label_rows(db: sqlite_utils.Database, dataset: str | None = None) -> list[dict[str, Any]]:
    """Every label (both kinds), with the judged answer's run, method and parser outcome where there is one."""
    where, params = _where({"l.dataset": dataset})
    sql = (
        "SELECT l.id AS label_id, l.kind, l.dataset, l.item_id, l.annotator, l.verdict, l.choice, l.note,"
        " l.created_at, l.updated_at, l.answer_id, a.run_id, r.method, r.model_id, r.condition,"
        " a.outcome AS parser_outcome, a.text_hash = l.answer_text_hash AS current"
        " FROM labels l LEFT JOIN answers a ON a.id = l.answer_id LEFT JOIN runs r ON r.id = a.run_id"
        f" {where} ORDER BY l.created_at, l.id"
    )
    return [dict(r, current=r["current"] is None or bool(r["current"])) for r in db.query(sql, params)]


def verdicts_by_answer(db: sqlite_utils.Database, dataset: str | None = None) -> dict[str, dict[str, str]]:
    """Answer id -> annotator -> verdict, for inter-annotator agreement (current verdicts only)."""
    table: dict[str, dict[str, str]] = defaultdict(dict)
    for r in label_rows(db, dataset):
        if r["kind"] == VERDICT and r["current"]:
            table[r["answer_id"]][r["annotator"]] = r["verdict"]
    return dict(table)


def parser_vs_human(db: sqlite_utils.Database, dataset: str | None = None) -> list[tuple[str, str]]:
    """(parser outcome, human verdict) for every current verdict label, for the parser's agreement rate."""
    return [
        (r["parser_outcome"], r["verdict"]) for r in label_rows(db, dataset) if r["kind"] == VERDICT and r["current"]
    ]


def human_baseline(db: sqlite_utils.Database, dataset: str, annotator: str | None = None) -> dict[str, str]:
    """Item id -> outcome ("correct" / "wrong" / "idk") of the humans' own blind answers (majority over
    annotators, or one annotator's); see human_baseline_report for what is left out."""
    return human_baseline_report(db, dataset, annotator).outcomes


@dataclass(frozen=True)
class HumanBaseline:
    """The human row's outcomes and how many human answers it used and left out."""

    outcomes: dict[str, str]  # item id -> majority outcome of the answers used
    used: int  # human answers counted
    excluded: dict[str, int]  # reason (NOT_BLIND, NO_AUDIO) -> human answers left out

    @property
    def n_excluded(self) -> int:
        return sum(self.excluded.values())


NOT_BLIND = "key seen first"  # given (or last changed) after the annotator saw the item's key
NO_AUDIO = "no audio"  # an item without its clip: a guess from the text, not a human baseline


def human_baseline_report(db: sqlite_utils.Database, dataset: str, annotator: str | None = None) -> HumanBaseline:
    """The humans' own answers that make the human row: only blind answers to items with audio.

    The store refuses the others, but a database written before those rules may hold some; they stay
    stored (labels are never lost) and are counted here as excluded.
    """
    where, params = _where({"l.dataset": dataset, "l.kind": HUMAN_ANSWER, "l.annotator": annotator})
    sql = (
        "SELECT l.item_id, l.verdict, l.updated_at, i.audio_path IS NULL AS no_audio, k.seen_at"
        " FROM labels l JOIN items i ON i.dataset = l.dataset AND i.id = l.item_id"
        " LEFT JOIN key_views k ON k.dataset = l.dataset AND k.item_id = l.item_id AND k.annotator = l.annotator"
        f" {where}"
    )
    votes: dict[str, list[tuple[str, str]]] = defaultdict(list)
    excluded = {NOT_BLIND: 0, NO_AUDIO: 0}
    for r in db.query(sql, params):
        if r["no_audio"]:
            excluded[NO_AUDIO] += 1
        elif r["seen_at"] is not None and r["seen_at"] <= r["updated_at"]:
            excluded[NOT_BLIND] += 1
        else:
            votes[r["item_id"]].append((r["verdict"], r["updated_at"]))
    used = sum(len(v) for v in votes.values())
    return HumanBaseline({item_id: majority(v) for item_id, v in votes.items()}, used, excluded)


def saw_keys(db: sqlite_utils.Database, annotator: str, items: Iterable[tuple[str, str]], via: str) -> None:
    """Record that `annotator` has seen the answer keys of these (dataset, item id) pairs; the first time is kept.

    :param via: what showed them: VIA_VERDICT, VIA_COMPARE or VIA_API
    """
    annotator = check_annotator(annotator)
    known = key_views(db, annotator)
    items = [i for i in dict.fromkeys(items) if i not in known]  # a view already recorded needs no write lock
    if items:
        with writing(db):
            _insert_key_views(db, annotator, items, via)


def key_views(db: sqlite_utils.Database, annotator: str, dataset: str | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """(dataset, item id) -> {via, seen_at} of every answer key this annotator has seen."""
    where, params = _where({"annotator": annotator, "dataset": dataset})
    return {
        (r["dataset"], r["item_id"]): {"via": r["via"], "seen_at": r["seen_at"]}
        for r in db.query(f"SELECT dataset, item_id, via, seen_at FROM key_views {where}", params)
    }


@dataclass(frozen=True)
class QueueEntry:
    """An answer waiting for a human verdict."""

    answer_id: str
    run_id: str
    method: str
    model_id: str
    condition: str
    item: Item
    text: str
    choice: str | None
    outcome: Outcome  # the parser's
    parsed: bool
    n_labels: int  # current verdicts by anyone


def label_queue(
    db: sqlite_utils.Database,
    dataset: str | None = None,
    annotator: str | None = None,
    modality: str | None = None,
    method: str | None = None,
    run_id: str | None = None,
    unsure_only: bool = False,
    limit: int = 20,
) -> list[QueueEntry]:
    """Answers to label next, in a fixed pseudo-random order (by answer id, a hash) so that any prefix is a
    fair sample.

    :param annotator: leave out answers this annotator has already judged
    :param unsure_only: only answers the parser could not read
    """
    extra = ["a.parsed = 0"] if unsure_only else []
    if annotator is not None:
        extra.append(
            "NOT EXISTS (SELECT 1 FROM labels m WHERE m.answer_id = a.id AND m.annotator = ?"
            " AND m.answer_text_hash = a.text_hash)"
        )
    where, params = _where({"r.dataset": dataset, "i.modality": modality, "r.method": method, "r.id": run_id}, extra)
    sql = (
        "SELECT a.id AS answer_id, a.run_id, r.method, r.model_id, r.condition, a.text, a.choice, a.outcome,"
        " a.parsed, i.*, (SELECT count(*) FROM labels l WHERE l.answer_id = a.id"
        " AND l.answer_text_hash = a.text_hash) AS n_labels"
        " FROM answers a JOIN runs r ON r.id = a.run_id JOIN items i ON i.dataset = r.dataset AND i.id = a.item_id"
        f" {where} ORDER BY a.id LIMIT ?"
    )
    params += [annotator] if annotator is not None else []
    return [
        QueueEntry(
            r["answer_id"], r["run_id"], r["method"], r["model_id"], r["condition"], _stored_item(r).item,
            r["text"], r["choice"], Outcome(r["outcome"]), bool(r["parsed"]), r["n_labels"],
        )
        for r in db.query(sql, [*params, limit])
    ]


# ---------------------------------------------------------------- audio hash cache


def known_audio_hashes(db: sqlite_utils.Database, paths: Iterable[str]) -> dict[str, tuple[int, int, str]]:
    """Path -> (size, mtime_ns, hash) remembered for these audio files."""
    found = {}
    for chunk in _chunks(list(dict.fromkeys(paths))):
        for r in db.execute(f"SELECT path, size, mtime_ns, hash FROM audio_files WHERE path IN ({_marks(chunk)})", chunk):
            found[r[0]] = (r[1], r[2], r[3])
    return found


def remember_audio_hashes(db: sqlite_utils.Database, entries: Iterable[tuple[str, int, int, str]]) -> None:
    """Remember (path, size, mtime_ns, hash) so an unchanged file is never decoded just to be hashed again."""
    rows = [{"path": p, "size": s, "mtime_ns": m, "hash": h} for p, s, m, h in entries]
    if rows:
        with writing(db):
            db["audio_files"].upsert_all(rows, pk="path")


# ---------------------------------------------------------------- helpers


def _item_row(record: StoredItem) -> dict[str, Any]:
    item = record.item
    return {
        "dataset": item.dataset,
        "id": item.id,
        "question": item.question,
        "choices": json.dumps(list(item.choices)),
        "answer": item.answer,
        "modality": item.modality,
        "audio_path": item.audio_path,
        "meta": json.dumps(record.meta),
        "raw": None if record.raw is None else json.dumps(record.raw),
    }


def _stored_item(row: dict[str, Any]) -> StoredItem:
    item = Item(
        id=row["id"],
        question=row["question"],
        choices=tuple(json.loads(row["choices"])),
        answer=row["answer"],
        modality=row["modality"],
        audio_path=row["audio_path"],
        dataset=row["dataset"],
    )
    return StoredItem(item, json.loads(row["meta"] or "{}"), None if row["raw"] is None else json.loads(row["raw"]))


def _run(row: dict[str, Any]) -> Run:
    return Run(**{**row, "decoding": json.loads(row["decoding"])})


def _judgement_columns(verdict: Judgement, judge_version: str) -> dict[str, Any]:
    return {
        "choice": verdict.choice,
        "outcome": Outcome(verdict.outcome).value,
        "parsed": int(verdict.parsed),
        "rule": verdict.rule,
        "judge_version": judge_version,
    }


def _insert_key_views(db: sqlite_utils.Database, annotator: str, items: Sequence[tuple[str, str]], via: str) -> None:
    """Key views of the items that have a key, inside the caller's write transaction."""
    stamp = now()
    for dataset, item_id in items:
        db.execute(
            "INSERT OR IGNORE INTO key_views (dataset, item_id, annotator, via, seen_at)"
            " SELECT dataset, id, ?, ?, ? FROM items WHERE dataset = ? AND id = ? AND answer IS NOT NULL",
            [annotator, via, stamp, dataset, item_id],
        )


def _upsert_label(db: sqlite_utils.Database, label: dict[str, Any]) -> None:
    """Insert a label, or update the verdict, choice, note and answer text of the existing one (same id),
    keeping when it was first made."""
    stamp = now()
    row = {"answer_id": None, "run_id": None, "answer_text_hash": None, "choice": None, **label, "created_at": stamp, "updated_at": stamp}
    db.execute(
        "INSERT INTO labels (id, kind, answer_id, run_id, answer_text_hash, dataset, item_id, annotator, verdict, choice,"
        " note, created_at, updated_at) VALUES (:id, :kind, :answer_id, :run_id, :answer_text_hash, :dataset, :item_id,"
        " :annotator, :verdict, :choice, :note, :created_at, :updated_at)"
        " ON CONFLICT(id) DO UPDATE SET answer_text_hash = excluded.answer_text_hash, verdict = excluded.verdict,"
        " choice = excluded.choice, note = excluded.note, updated_at = excluded.updated_at",
        row,
    )


def _verdict(verdict: str) -> str:
    try:
        return Outcome(verdict).value
    except ValueError:
        raise StoreError(f"verdict {verdict!r} is not one of {[o.value for o in Outcome]}") from None


def check_annotator(annotator: str) -> str:
    """The annotator's name, stripped; StoreError for none or one over MAX_ANNOTATOR_CHARS."""
    if not annotator or not annotator.strip():
        raise StoreError("an annotator name is required")
    if len(annotator.strip()) > MAX_ANNOTATOR_CHARS:
        raise StoreError(f"an annotator name is at most {MAX_ANNOTATOR_CHARS} characters, got {len(annotator.strip())}")
    return annotator.strip()


def _where(filters: dict[str, Any], extra: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """A WHERE clause matching every filter that is not None, then the `extra` conditions (whose own
    parameters the caller appends after the returned ones).

    Column names come from this module, never from user input; values are always bound.
    """
    used = {column: value for column, value in filters.items() if value is not None}
    conditions = [f"{column} = ?" for column in used] + list(extra)
    return ("WHERE " + " AND ".join(conditions) if conditions else ""), list(used.values())


def _chunks(ids: Sequence[str] | None) -> Iterable[list[str] | None]:
    """`ids` in pieces small enough for one `IN (...)`; None (no filter) passes through once."""
    if ids is None:
        yield None
        return
    ids = list(ids)
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _marks(chunk: Sequence[Any]) -> str:
    return ", ".join("?" * len(chunk))
