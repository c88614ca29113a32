"""Exports: answers and labels to CSV / JSONL, a run to MMAU's submission format, metric tables to JSON / CSV."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import sqlite_utils

from annotations import store
from reliability.datasets import PREDICTION_KEYS
from reliability.errors import ReliabilityError

ROW_FORMATS = ("csv", "jsonl")
TABLE_FORMATS = ("json", "csv")
# a CSV cell starting with one of these is a formula to a spreadsheet (OWASP "CSV injection"); tab and CR too
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_answers(db: sqlite_utils.Database, path: str | os.PathLike, run_ids: Sequence[str], format: str = "csv") -> int:
    """Write the answers of these runs with their run, item, parser outcome, final outcome and its source.

    :param format: "csv" (steps and choices as JSON text) or "jsonl"
    Returns the number of rows written.
    """
    return write_rows(store.answer_rows(db, run_ids), path, format, ROW_FORMATS)


def export_labels(db: sqlite_utils.Database, path: str | os.PathLike, dataset: str | None = None, format: str = "csv") -> int:
    """Write every human label (verdicts and human answers), optionally of one dataset; returns the row count."""
    return write_rows(store.label_rows(db, dataset), path, format, ROW_FORMATS)


def export_submission(db: sqlite_utils.Database, path: str | os.PathLike, run_id: str) -> int:
    """Write a run in MMAU's format: each item's original record plus the reply under `model_output` (read
    by MMAU's evaluation.py) and `model_prediction` (named by its README), so anyone can re-score it with
    MMAU's own script, and the run's `condition` (full, none: asked without audio, or a fragment).
    Items without an answer in the run are left out. Returns the number of records."""
    run = store.get_run(db, run_id)
    texts = {row["item_id"]: row["text"] for row in store.answer_rows(db, [run.id])}
    records = []
    for stored in store.stored_items(db, run.dataset):
        if stored.item.id in texts:
            record = dict(stored.raw) if stored.raw is not None else _record(stored)
            records.append({**record, "condition": run.condition, **{key: texts[stored.item.id] for key in PREDICTION_KEYS}})
    write_text(path, json.dumps(records, indent=2, ensure_ascii=False))
    return len(records)


def export_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, format: str = "json") -> int:
    """Write metric table rows (reliability.report) as JSON (a list) or CSV; ±inf is written as "inf"/"-inf"."""
    _check(format, TABLE_FORMATS)
    rows = [{k: _finite(v) for k, v in r.items()} for r in rows]
    if format == "csv":
        return write_rows(rows, path, format, TABLE_FORMATS)
    write_text(path, json.dumps(rows, indent=2, ensure_ascii=False))
    return len(rows)


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike, format: str, allowed: Sequence[str]) -> int:
    """Write dict rows as CSV (nested values as JSON text) or JSONL to a file, or to stdout for "-"; returns the row count."""
    _check(format, allowed)
    rows = list(rows)
    with _output(path) as f:
        if format == "jsonl":
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)
    return len(rows)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text and a final newline to a file, or to stdout for "-"."""
    with _output(path) as f:
        f.write(text + "\n")


@contextlib.contextmanager
def _output(path: str | os.PathLike) -> Iterator[TextIO]:
    if os.fspath(path) == "-":
        yield sys.stdout
        return
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            yield f
    except OSError as exc:
        raise ReliabilityError(f"cannot write {path}: {exc.strerror}") from exc


def _record(stored: store.StoredItem) -> dict[str, Any]:
    """An MMAU-style record for an item imported without its source record."""
    item = stored.item
    return {**stored.meta, "id": item.id, "question": item.question, "choices": list(item.choices), "answer": item.answer, "task": item.modality}


def _cell(value: Any) -> Any:
    """A CSV cell: nested values as JSON text; text a spreadsheet would run as a formula gets a leading quote."""
    if isinstance(value, (list, dict)):
        value = json.dumps(value, ensure_ascii=False)
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _number(value) else value


def _number(text: str) -> bool:
    """Whether text is a plain number ("-0.5", "-inf"), which a spreadsheet reads as one, not as a formula."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _finite(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _check(format: str, allowed: Sequence[str]) -> None:
    if format not in allowed:
        raise ReliabilityError(f"unknown export format {format!r}; use one of {', '.join(allowed)}")
