"""Schema changes as an ordered list of functions; the `_migrations` table records which ones a database has.

Add a change by appending a new `@migration` function; never edit one that has shipped.
"""
from __future__ import annotations

from collections.abc import Callable

import sqlite_utils

from annotations.transactions import now, writing

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[Migration] = []
APPLIED_TABLE = "_migrations"


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next schema change."""
    MIGRATIONS.append(fn)
    return fn


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the pending migrations in order, in one write transaction; returns the names applied.

    Several processes opening a new file at once are safe: the write lock makes one of them apply
    the migrations while the others wait, then find nothing pending.
    """
    if not _pending(db):
        return []
    with writing(db):
        db[APPLIED_TABLE].create({"name": str, "applied_at": str}, pk="name", if_not_exists=True)
        pending = _pending(db)
        for fn in pending:
            fn(db)
            db[APPLIED_TABLE].insert({"name": fn.__name__, "applied_at": now()})
    return [fn.__name__ for fn in pending]


def _pending(db: sqlite_utils.Database) -> list[Migration]:
    applied = {row["name"] for row in db[APPLIED_TABLE].rows} if db[APPLIED_TABLE].exists() else set()
    return [fn for fn in MIGRATIONS if fn.__name__ not in applied]


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["datasets"].create(
        {"name": str, "source": str, "format": str, "n_items": int, "imported_at": str},
        pk="name",
    )
    db["items"].create(
        {
            "dataset": str,
            "id": str,
            "question": str,
            "choices": str,  # JSON list of option texts
            "answer": str,  # one of the choices; NULL when the item has no key
            "modality": str,
            "audio_path": str,  # resolved at import; NULL: imported without audio (no-audio runs only)
            "meta": str,  # JSON: category, difficulty, ... as given by the source
            "raw": str,  # JSON: the source record unchanged, for exports in the source's own format
        },
        pk=("dataset", "id"),
        not_null=["question", "choices", "modality"],
        foreign_keys=[("dataset", "datasets", "name")],
    )
    db["items"].create_index(["dataset", "modality"])
    db["runs"].create(
        {
            "id": str,  # content hash of the run's identity (every column up to `condition`)
            "dataset": str,
            "backend": str,
            "model_id": str,
            "adapter": str,
            "method": str,
            "prompt_version": str,
            "decoding": str,  # JSON of reliability.types.Decoding
            "condition": str,  # "full" audio, "none" (no-audio), later fragment conditions
            "judge_version": str,  # the judge that produced the stored outcomes; rejudge updates it
            "source": str,  # "evaluate" or the predictions file a run was imported from
            "created_at": str,
        },
        pk="id",
        not_null=["dataset", "backend", "method", "decoding", "condition"],
        foreign_keys=[("dataset", "datasets", "name")],
    )
    db["runs"].create_index(["dataset", "condition"])
    db["answers"].create(
        {
            "id": str,  # hash(run id, item id): one answer per item per run, whatever happens
            "run_id": str,
            "item_id": str,
            "text": str,  # the raw final reply
            "text_hash": str,  # a human verdict applies only to the text it was given for
            "steps": str,  # JSON list of reliability.types.Step: every backend call the method made
            "choice": str,  # the option the judge read; NULL for idk or unparsed
            "outcome": str,  # correct / wrong / idk, by the judge
            "parsed": int,  # 0: the judge could read neither an option nor an abstention
            "rule": str,  # the judge rule that decided
            "judge_version": str,
            "confidence": float,
            "latency_s": float,
            "audio_hash": str,  # hash of the source clip; NULL for no-audio items. A changed clip is re-answered
            "created_at": str,
        },
        pk="id",
        not_null=["run_id", "item_id", "text", "outcome"],
        foreign_keys=[("run_id", "runs", "id")],
    )
    # covers the outcome queries (no table reads); one answer per (run, item) is the primary key's job
    db["answers"].create_index(["run_id", "item_id", "outcome", "text_hash"])
    db["labels"].create(
        {
            "id": str,  # hash(target, annotator, kind): re-labelling updates the row, never adds one
            "kind": str,  # "verdict": a judgement of a model answer; "human_answer": a human's own answer
            "answer_id": str,  # the judged answer (kind "verdict"), else NULL
            "run_id": str,  # that answer's run (never changes for an answer id), so outcomes need no join to find it
            "answer_text_hash": str,  # text_hash of the answer when it was judged
            "dataset": str,
            "item_id": str,
            "annotator": str,
            "verdict": str,  # correct / wrong / idk (for a human answer: its outcome against the key)
            "choice": str,  # the human's own answer (kind "human_answer")
            "note": str,
            "created_at": str,
            "updated_at": str,
        },
        pk="id",
        not_null=["kind", "dataset", "item_id", "annotator", "verdict"],
        foreign_keys=[("answer_id", "answers", "id"), ("run_id", "runs", "id")],
    )
    db["labels"].create_index(["answer_id"])
    db["labels"].create_index(["run_id", "kind"])
    db["labels"].create_index(["dataset", "item_id"])
    db["labels"].create_index(["annotator"])
    db["audio_files"].create(
        {"path": str, "size": int, "mtime_ns": int, "hash": str},
        pk="path",
    )


@migration
def m002_key_views(db: sqlite_utils.Database) -> None:
    """When each annotator first saw each item's answer key: a human answer given after it is not blind."""
    db["key_views"].create(
        {
            "dataset": str,
            "item_id": str,
            "annotator": str,
            "via": str,  # what showed the key: "judge mode", "the Compare tab" (typed there), "the API"
            "seen_at": str,  # the first time; later views never move it
        },
        pk=("dataset", "item_id", "annotator"),
        not_null=["via", "seen_at"],
    )
    # judging an answer shows its item's key: a database labelled before this table existed gets those views
    db.execute(
        "INSERT OR IGNORE INTO key_views (dataset, item_id, annotator, via, seen_at)"
        " SELECT dataset, item_id, annotator, 'judge mode', min(created_at) FROM labels WHERE kind = 'verdict'"
        " GROUP BY dataset, item_id, annotator"
    )
