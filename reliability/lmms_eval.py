"""lmms-eval interop: the per-sample JSONL its `--log_samples` writes for the MMAU tasks, read as prediction records.

Layout (lmms-eval's evaluator and loggers/evaluation_tracker.py): one JSON object per line with
`doc_id`, `target`, `filtered_resps` (the reply it scored: a text, or a one-element list), `resps`
(only when it differs), `input`, and the task's process_results keys; the MMAU tasks' `submission`
holds the question record, whose `id` is MMAU's item id, plus `model_prediction`, the option it read
from the reply (a random one when it read none). The lab judges the reply itself, so it takes
`filtered_resps` and ignores `model_prediction`.
"""
from __future__ import annotations

import os
from typing import Any

import sqlite_utils

from reliability.datasets import ImportReport, Problem, import_predictions, read_records
from reliability.errors import DatasetError

FORMAT = "lmms-eval"


def prediction_records(path: str | os.PathLike) -> list[dict[str, str]]:
    """{id, model_output} per logged sample; DatasetError listing every sample that has neither."""
    path = os.fspath(path)
    records, problems = [], []
    for number, sample in enumerate(read_records(path), start=1):
        try:
            records.append({"id": _item_id(sample), "model_output": _reply(sample)})
        except ValueError as exc:
            doc_id = sample.get("doc_id") if isinstance(sample, dict) else None
            problems.append(Problem(number, None if doc_id is None else f"doc {doc_id}", str(exc)))
    if problems:
        raise DatasetError(f"{path}: {len(problems)} sample(s) not in lmms-eval's MMAU log layout; nothing imported", problems)
    return records


def import_lmms_eval(
    db: sqlite_utils.Database, path: str | os.PathLike, dataset: str, model: str, method: str = "baseline", condition: str = "full"
) -> ImportReport:
    """Import an lmms-eval MMAU samples log as a run of `dataset` (imported from MMAU's question file), judged here."""
    report = import_predictions(db, path, dataset, model, method, condition, records=prediction_records(path))
    report.format = FORMAT
    return report


def _item_id(sample: Any) -> str:
    if not isinstance(sample, dict):
        raise ValueError(f"expected an object, got {type(sample).__name__}")
    submission = sample.get("submission")
    if not isinstance(submission, dict) or submission.get("id") in (None, ""):
        raise ValueError("no 'submission' with the MMAU item 'id' (was it logged by an MMAU task with --log_samples?)")
    return str(submission["id"])


def _reply(sample: dict[str, Any]) -> str:
    reply = sample.get("filtered_resps", sample.get("resps"))
    while isinstance(reply, list) and len(reply) == 1:
        reply = reply[0]  # [[text]] or [text]: one request per MMAU item
    if not isinstance(reply, str):
        raise ValueError(f"'filtered_resps' should hold one reply text, got {reply!r:.80}")
    return reply
