"""The dashboard service: metric rows, method points, risk-coverage curves and label agreement of one dataset, and export paths."""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from annotations import store
from annotations.agreement import summarize
from reliability import metrics, report
from reliability.errors import ItemError
from reliability.evaluate import FULL
from reliability.plots import MethodPoint
from reliability.prompts import IDK_REPLY
from reliability.services.catalog import Catalog
from reliability.services.jsonable import json_safe
from reliability.services.pool import Pool, store_errors

PARSER, HUMAN = store.PARSER, store.HUMAN  # dashboard outcome sources
BASELINE = "baseline"


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
    partial: list[str] = dataclasses.field(default_factory=list)  # "n of N" of each run that answered fewer items than the dataset has

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
            "risk_coverage": curves, "agreement": self.agreement, "counts": self.counts, "partial": self.partial,
        })


@dataclass
class DashboardService:
    """The dashboard's numbers from the lab database, and where its downloads are written."""

    pool: Pool
    catalog: Catalog

    @store_errors
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
        db = self.pool.db()
        n_boot = self.pool.settings.n_boot
        dataset = filters.dataset or next(iter(self.catalog.filter_choices()["datasets"]), None)
        if dataset is None:
            return Dashboard(filters, None, [], [], {}, _agreement([], []), {"runs": 0, "answers": 0, "labels": 0})
        everywhere = [r for r in store.label_rows(db) if r["current"] and filters.annotator in (None, r["annotator"])]
        labels = [r for r in everywhere if r["dataset"] == dataset]
        verdicts = [r for r in labels if r["kind"] == store.VERDICT]
        runs = _latest_runs(store.list_runs(db, dataset, FULL), filters.backend)
        result = report.build(
            db, dataset, runs, {"backend": "backend", "model_id": "model_id"}, _label, BASELINE,
            human=filters.source == HUMAN, annotator=filters.annotator, n_boot=n_boot, normalize=filters.normalize,
        )
        points = [p for setup in result.setups for p in report.points(setup, result.groups, filters.normalize, n_boot)]
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
        partial = [str(c) for c in result.partial]
        return Dashboard(filters, dataset, result.rows, points, report.curves(db, result), agreement, counts, partial)

    def export_path(self, name: str) -> str:
        """A fresh file path in the exports folder (the only folder of the app's data the browser may download from)."""
        os.makedirs(self.pool.exports_dir, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return os.path.join(self.pool.exports_dir, f"{stamp}-{os.getpid()}-{threading.get_ident() % 10_000}-{name}")


def _latest_runs(runs: Sequence[store.Run], backend: str | None) -> list[store.Run]:
    """The most recent run per (backend, model, method); list_runs is oldest first."""
    latest = {(r.backend, r.model_id, r.method): r for r in runs if backend in (None, r.backend)}
    return sorted(latest.values(), key=lambda r: (r.backend, r.model_id, r.method != BASELINE, r.method))


def _label(run: store.Run, members: Sequence[store.Run], n_setups: int) -> str:
    """A run's method, with its model where the dashboard shows several setups (one run per method each)."""
    return run.method if n_setups == 1 else f"{run.method} · {run.model_id or run.backend}"


def _agreement(verdicts: Sequence[dict[str, Any]], labels: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Parser-vs-human and inter-annotator agreement of the current verdicts, the agreement among the humans' own
    answers to the items they share (`answers`), plus who labelled what."""
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
        "answers": _answer_agreement([r for r in labels if r["kind"] != store.VERDICT]),
    }


def _answer_agreement(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Agreement among the humans' own answers: the option each picked ("I don't know" is a category too), on the
    items at least two of them answered."""
    table: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for r in answers:
        table[(r["dataset"], r["item_id"])][r["annotator"]] = r["choice"] or IDK_REPLY
    shared = {item: by for item, by in table.items() if len(by) > 1}
    summary = summarize(shared, [])
    return {
        "alpha": summary.alpha, "n_items": len(shared), "annotators": summary.annotators,
        "kappas": [{"a": a, "b": b, "kappa": k, "n": n} for (a, b), (k, n) in summary.kappas.items()],
    }
