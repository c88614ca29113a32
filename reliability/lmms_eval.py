"""lmms-eval interop: the per-sample JSONL its `--log_samples` writes for the MMAU tasks, read as prediction records.

Layout (lmms-eval's evaluator and loggers/evaluation_tracker.py): one JSON object per line with
`doc_id`, `target`, `filtered_resps` (the reply it scored: a text, or a one-element list), `resps`
(only when it differs), `input`, and the task's process_results keys; the MMAU tasks' `submission`
holds the question record, whose `id` is MMAU's item id, plus `model_prediction`, the option it read
from the reply (a random one when it read none). The lab judges the reply itself, so it takes
`filtered_resps` and ignores `model_prediction`; the record's question, choices (a list, or the list
as JSON text) and answer go with it, so that a log made on another revision of the questions is refused.
The MMAU tasks show the options with letters ("A. ...") and ask for the letter, so their replies are
judged as lettered.
"""
from __future__ import annotations

import json
import os
from typing import Any

import sqlite_utils

from reliability.datasets import ImportReport, Problem, import_predictions, read_records
from reliability.errors import DatasetError

FORMAT = "lmms-eval"


def prediction_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """{id, model_output} per logged sample, plus the question, choices and answer its record holds; DatasetError
    listing every sample that has no id or no reply."""
    path = os.fspath(path)
    records, problems = [], []
    for number, sample in enumerate(read_records(path), start=1):
        try:
            records.append({"id": _item_id(sample), "model_output": _reply(sample), **_question(sample)})
        except ValueError as exc:
            doc_id = sample.get("doc_id") if isinstance(sample, dict) else None
            problems.append(Problem(number, None if doc_id is None else f"doc {doc_id}", str(exc)))
    if problems:
        raise DatasetError(f"{path}: {len(problems)} sample(s) not in lmms-eval's MMAU log layout; nothing imported", problems)
    return records


def import_lmms_eval(
    db: sqlite_utils.Database,
    path: str | os.PathLike,
    dataset: str,
    model: str,
    method: str = "baseline",
    condition: str = "full",
    lettered: bool = True,
) -> ImportReport:
    """Import an lmms-eval MMAU samples log as a run of `dataset` (imported from MMAU's question file), judged here.

    The log's item ids are checked against the dataset like any predictions file (import_predictions); its
    `submission` question record is not compared, as lmms-eval's MMAU tasks read the questions from their own copy.
    `lettered`: whether the task's prompt showed the options with letters."""
    report = import_predictions(db, path, dataset, model, method, condition, records=prediction_records(path), lettered=lettered)
    report.format = FORMAT
    return report


def _item_id(sample: Any) -> str:
    if not isinstance(sample, dict):
        raise ValueError(f"expected an object, got {type(sample).__name__}")
    submission = sample.get("submission")
    if not isinstance(submission, dict) or submission.get("id") in (None, ""):
        raise ValueError("no 'submission' with the MMAU item 'id' (was it logged by an MMAU task with --log_samples?)")
    return str(submission["id"])


def _question(sample: dict[str, Any]) -> dict[str, Any]:
    """What the logged record holds of its question: question and answer texts, choices as a list of texts."""
    submission = sample["submission"]
    found = {k: submission[k] for k in ("question", "answer") if isinstance(submission.get(k), str)}
    choices = submission.get("choices")
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)
        except json.JSONDecodeError:
            choices = None
    if isinstance(choices, list) and all(isinstance(c, str) for c in choices):
        found["choices"] = choices
    return found


def _reply(sample: dict[str, Any]) -> str:
    reply = sample.get("filtered_resps", sample.get("resps"))
    while isinstance(reply, list) and len(reply) == 1:
        reply = reply[0]  # [[text]] or [text]: one request per MMAU item
    if not isinstance(reply, str):
        raise ValueError(f"'filtered_resps' should hold one reply text, got {reply!r:.80}")
    return reply
