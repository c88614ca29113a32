"""Diagnostic runs: one ordinary evaluate run per method and condition, then a DiagnosticsReport from the stored outcomes.

Each condition is a normal run in the store (runs.condition), so caching, resume, human verdicts
and re-judging apply to diagnostics exactly as to any evaluation.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlite_utils

from annotations import store
from reliability.backends.base import Backend
from reliability.conditions import all_conditions, parse_condition
from reliability.diagnostics.measures import DiagnosticsReport, build_report
from reliability.errors import NothingToAskError
from reliability.evaluate import Progress, evaluate
from reliability.methods import Method, get_method
from reliability.types import Decoding, Item


@dataclass
class Diagnosis:
    """What run_diagnostics did and found."""

    report: DiagnosticsReport
    run_ids: dict[str, dict[str, str]]  # method -> condition -> run id
    skipped: dict[str, list[tuple[str, str]]]  # condition -> (item id, reason) of the items it could not ask
    answered: int  # answers generated now
    cached: int  # answers found in the store, not asked again


def run_diagnostics(
    db: sqlite_utils.Database,
    backend: Backend,
    items: Sequence[Item],
    methods: Sequence[str | Method] = ("baseline",),
    conditions: Sequence[str] | None = None,
    decoding: Decoding = Decoding(),
    batch_size: int = 8,
    progress: Progress | None = None,
    human: bool = True,
    normalize: str = "total",
) -> Diagnosis:
    """Run every method under every condition (cached answers are reused) and build the report.

    :param items: items of one dataset, already imported into `db`
    :param methods: method names or Method objects; the first is the reference of the report's gains
    :param conditions: condition names (default: full, none and the 14 fragments of N = 2..5)
    :param human: let human verdicts override the parser's outcomes, as everywhere in the lab
    :param normalize: ΔCon/ΔHum denominator of the gains, as in metrics.compare
    Items that cannot be asked under a condition (no audio for "full" or a fragment) are skipped
    there and listed in `skipped`; the report uses whatever each condition answered (a condition that answered
    nothing stores no run). NothingToAskError when no condition can answer anything.
    """
    conditions = list(all_conditions() if conditions is None else conditions)
    for name in conditions:
        parse_condition(name)  # refuse a bad name before any model is asked
    methods = [get_method(m) if isinstance(m, str) else m for m in methods]
    report = progress or (lambda done, total, message: None)
    per_condition = len(items) * len(methods)
    run_ids: dict[str, dict[str, str]] = {}
    skipped: dict[str, list[tuple[str, str]]] = {}
    answered = cached = 0
    for i, condition in enumerate(conditions):
        offset = i * per_condition
        try:
            result = evaluate(
                db, backend, items, methods, decoding, batch_size, condition,
                lambda done, total, message: report(offset + done, per_condition * len(conditions), f"{condition} · {message}"),
            )
        except NothingToAskError as exc:  # e.g. no audio for full and the fragments: the other conditions still count
            skipped[condition] = exc.skipped
            report(offset + per_condition, per_condition * len(conditions), f"{condition} · nothing to ask")
            continue
        for method, run_id in zip(methods, result.run_ids):
            run_ids.setdefault(method.name, {})[condition] = run_id
        skipped[condition] = result.skipped
        answered += result.answered
        cached += result.cached
    if not run_ids:
        raise NothingToAskError([pair for pairs in skipped.values() for pair in pairs], f"nothing to ask under {', '.join(conditions)}")
    groups = {item.id: item.modality for item in items}
    return Diagnosis(_report(db, run_ids, set(groups), groups, human, normalize), run_ids, skipped, answered, cached)


def load_report(
    db: sqlite_utils.Database,
    dataset: str,
    backend: str | None = None,
    model_id: str | None = None,
    methods: Sequence[str] | None = None,
    human: bool = True,
    normalize: str = "total",
) -> DiagnosticsReport:
    """The report of runs already in the store, without asking any model (the app's view, the CLI after rejudge).

    Where one method has several runs under one condition (other decoding or prompt version), the
    most recent one is used.
    :param backend: the backend whose runs to use (default: the backend and model of the dataset's latest run;
      runs of different models are never mixed in one report)
    :param model_id: only this model's runs (default: any model of `backend`)
    :param methods: the methods to include, the first being the reference (default: every method
      with runs, "baseline" first when present)
    """
    runs = store.list_runs(db, dataset)  # oldest first, so a later run replaces an earlier one below
    if backend is None and runs:
        backend, model_id = runs[-1].backend, runs[-1].model_id
    run_ids: dict[str, dict[str, str]] = {}
    for run in runs:
        if run.backend == backend and (model_id is None or run.model_id == model_id):
            if methods is None or run.method in methods:
                run_ids.setdefault(run.method, {})[run.condition] = run.id
    order = list(methods) if methods is not None else sorted(run_ids, key=lambda m: (m != "baseline", m))
    run_ids = {m: run_ids[m] for m in order if m in run_ids}
    groups = store.modalities(db, dataset)
    return _report(db, run_ids, set(groups), groups, human, normalize)


def _report(db, run_ids: dict[str, dict[str, str]], keep: set[str], groups, human: bool, normalize: str) -> DiagnosticsReport:
    """Outcomes of the given runs, limited to `keep` items, built into a report."""
    stored = store.run_outcomes(db, [rid for by_condition in run_ids.values() for rid in by_condition.values()], human=human)
    outcomes = {
        method: {
            condition: {k: v for k, v in stored[rid].outcomes.items() if k in keep} for condition, rid in by_condition.items()
        }
        for method, by_condition in run_ids.items()
    }
    return build_report(outcomes, groups, normalize=normalize)
