"""The metrics report: stored runs -> outcomes -> bootstrap figures -> table rows, and the one declaration of its columns.

Outcomes come from the store only (store.run_outcomes: the parser's, or human verdicts over them). The CLI
table (tables.format_table), the JSON / CSV exports and the dashboard (DashboardService.metrics, ui_render) all render
the rows built here, through COLUMNS.
"""
from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlite_utils

from annotations import store
from reliability import metrics
from reliability.errors import ReliabilityError
from reliability.judge import mmau_match
from reliability.types import MODALITIES, Outcome

if TYPE_CHECKING:
    from reliability.plots import MethodPoint

HIGHER, LOWER, NONE = "higher", "lower", "none"  # which way a column is better
TEXT, COUNT, PERCENT, RGI, NOTE = "text", "count", "percent", "rgi", "note"  # how a cell is written
OUTCOMES, MMAU = "outcomes", "mmau"  # whose bootstrap a figure is read from: the row's outcomes, or MMAU's verdicts
MMAU_ACC = "mmau_acc"
UNKNOWN_GROUP = "unknown"
HUMAN_LABEL = "human"  # the humans' own row
NO_SETUP = "-"  # the human row's setup fields

Outcomes = Mapping[str, Outcome | str]  # item id -> outcome


@dataclass(frozen=True)
class Column:
    """One column of the metrics table, as every view shows it."""

    key: str  # the row's field; a figure also has `{key}_low` and `{key}_high`, a NOTE its text in `{key}_why`
    label: str  # the header
    better: str  # HIGHER, LOWER or NONE
    format: str  # TEXT, COUNT, PERCENT (a rate with its interval), RGI (label and interval) or NOTE
    help: str
    stat: str | None = None  # the attribute of metrics.ScoreIntervals / ComparisonIntervals that computes it
    of: str = OUTCOMES  # OUTCOMES or MMAU: whose bootstrap `stat` is read from


COLUMNS = (
    Column("method", "method", NONE, TEXT, "the method that answered"),
    Column("group", "group", NONE, TEXT, "the modality, or total over all items"),
    Column("n", "n", NONE, COUNT, "items counted (paired with the baseline where compared)"),
    Column("acc", "Acc", HIGHER, PERCENT, "share answered correctly", "acc"),
    Column(MMAU_ACC, "MMAU Acc", HIGHER, PERCENT, "MMAU's own string-match accuracy, to compare with its leaderboard", "acc", MMAU),
    Column("tru", "Tru", HIGHER, PERCENT, "share not answered wrongly: correct or 'I don't know'", "tru"),
    Column("rel", "Rel", HIGHER, PERCENT, "reliability, Rej * Acc + (1 - Rej) * Tru", "rel"),
    Column("rej", "Rej", NONE, PERCENT, "share answered 'I don't know'", "rej"),
    Column("delta_con", "ΔCon", LOWER, PERCENT, "conservatism: baseline-correct items no longer correct", "delta_con"),
    Column("delta_hum", "ΔHum", HIGHER, PERCENT, "humility: baseline-wrong items no longer wrong", "delta_hum"),
    Column("rgi", "RGI", HIGHER, RGI, "reliability gain index, log10(ΔHum / ΔCon)", "rgi"),
    Column("left_out", "left out", NONE, NOTE, "items without an answer key, which count in no figure"),
    Column("source", "source", NONE, TEXT, "where the outcomes came from: parser, human or mixed"),
)

# Rows hold their figures in metrics' order (acc, tru, rej, rel, delta_con, ...), not COLUMNS' order: that
# order fixes the field order of the exported files.
_ORDER = [f.name for f in dataclasses.fields(metrics.ComparisonIntervals)]
_FIGURES = sorted((c for c in COLUMNS if c.stat is not None and c.of == OUTCOMES), key=lambda c: _ORDER.index(c.stat))
_MMAU_FIGURES = [c for c in COLUMNS if c.stat is not None and c.of == MMAU]


@dataclass(frozen=True)
class Setup:
    """Runs compared with each other: the fields they share, their outcomes and their rows."""

    fields: dict[str, str]  # e.g. backend, model, condition
    runs: dict[str, store.Run]  # label -> run
    outcomes: dict[str, dict[str, str]]  # label -> the outcomes that count (see counted_outcomes)
    baseline: str | None  # the label others are compared with; None: scores only
    rows: list[dict[str, Any]]


@dataclass(frozen=True)
class Coverage:
    """How many of its dataset's items a run answered: "n of N", said wherever a run answered fewer."""

    fields: dict[str, str]  # the run's setup (e.g. model, condition)
    label: str  # the run's method label
    answered: int  # items with an answer
    items: int  # the dataset's items

    @property
    def partial(self) -> bool:
        return self.answered < self.items

    def __str__(self) -> str:
        setup = " ".join(v for v in self.fields.values() if v)
        return f"{setup + ' ' if setup else ''}{self.label}: {self.answered} of {self.items} items answered"


@dataclass(frozen=True)
class Report:
    """A dataset's metrics: every setup's rows, then the row of the humans' own answers."""

    setups: list[Setup]
    people: store.HumanBaseline
    human_rows: list[dict[str, Any]]
    groups: dict[str, str]  # item id -> modality
    answers: int  # answers of the runs
    coverage: list[Coverage] = dataclasses.field(default_factory=list)  # per run, in the setups' order

    @property
    def partial(self) -> list[Coverage]:
        """The runs that answered fewer items than their dataset has."""
        return [c for c in self.coverage if c.partial]

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [row for setup in self.setups for row in setup.rows] + self.human_rows


def method_label(run: store.Run, members: Sequence[store.Run], n_setups: int) -> str:
    """A run's method, with its short id where its setup has the method twice."""
    twice = sum(r.method == run.method for r in members) > 1
    return f"{run.method} ({run.id[:8]})" if twice else run.method


def build(
    db: sqlite_utils.Database,
    dataset: str,
    runs: Sequence[store.Run],
    fields: Mapping[str, str],
    label: Callable[[store.Run, Sequence[store.Run], int], str] = method_label,
    baseline: str = "baseline",
    human: bool = True,
    annotator: str | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    normalize: str = "total",
) -> Report:
    """The report of these runs of a dataset: runs are compared within their setup, every method against the
    run labelled `baseline`, else the setup's only run of that method; the humans' own answers, where there are
    any, add a "human" row.

    :param fields: row field -> the Run attribute it holds; runs sharing them form a setup (e.g. model -> model_id)
    :param label: (run, its setup's runs, number of setups) -> the run's label in rows and figures
    :param human: let human verdicts (only `annotator`'s, if given) override the parser; each row's `source`
      says which was used
    """
    groups = store.modalities(db, dataset)
    run_ids = [r.id for r in runs]
    outcomes = store.run_outcomes(db, run_ids, human=human, annotator=annotator)
    keyless, matches = key_facts(db, run_ids)
    members: dict[tuple[str, ...], list[store.Run]] = defaultdict(list)
    for run in runs:
        members[tuple(getattr(run, attr) for attr in fields.values())].append(run)
    setups = []
    for key, setup_runs in members.items():
        labelled = {label(run, setup_runs, len(members)): run for run in setup_runs}
        results = {name: outcomes[run.id] for name, run in labelled.items()}
        by_people = {name: {k for k, s in result.sources.items() if s == store.HUMAN} for name, result in results.items()}
        reference = _baseline(labelled, baseline)
        found = {name: result.outcomes for name, result in results.items()}
        table = metrics_table(
            found,
            groups,
            baseline=reference,
            sources={name: result.source for name, result in results.items()},
            n_boot=n_boot,
            level=level,
            normalize=normalize,
            keyless=keyless,
            human=by_people,
            mmau={name: matches[run.id] for name, run in labelled.items()},
        )
        shared = dict(zip(fields, key))
        setups.append(
            Setup(
                shared,
                labelled,
                counted_outcomes(found, keyless, by_people),
                reference,
                [{**shared, **row} for row in table],
            )
        )
    people = store.human_baseline_report(db, dataset, annotator)
    human_rows = []
    if people.outcomes:
        table = metrics_table({HUMAN_LABEL: people.outcomes}, groups, None, {HUMAN_LABEL: store.HUMAN}, n_boot, level)
        human_rows = [{**dict.fromkeys(fields, NO_SETUP), **row} for row in table]
    coverage = [
        Coverage(setup.fields, name, len(outcomes[run.id].outcomes), len(groups)) for setup in setups for name, run in setup.runs.items()
    ]
    return Report(setups, people, human_rows, groups, sum(len(r.outcomes) for r in outcomes.values()), coverage)


def metrics_report(
    db: sqlite_utils.Database,
    dataset: str,
    condition: str | None = None,
    baseline: str = "baseline",
    human: bool = True,
    n_boot: int = 1000,
    level: float = 0.95,
    normalize: str = "total",
) -> Report:
    """The report of all a dataset's stored runs, set up by backend, model and condition, as the CLI prints it."""
    runs = store.list_runs(db, dataset, condition)
    if not runs:
        raise ReliabilityError(f"no runs of dataset {dataset!r}" + (f" under condition {condition!r}" if condition else ""))
    fields = {"backend": "backend", "model": "model_id", "condition": "condition"}
    return build(db, dataset, runs, fields, baseline=baseline, human=human, n_boot=n_boot, level=level, normalize=normalize)


def metrics_rows(
    db: sqlite_utils.Database,
    dataset: str,
    condition: str | None = None,
    baseline: str = "baseline",
    human: bool = True,
    n_boot: int = 1000,
    level: float = 0.95,
    normalize: str = "total",
) -> list[dict[str, Any]]:
    """The metrics table of all a dataset's stored runs (metrics_table rows plus backend, model, condition),
    as the CLI prints and exports it."""
    return metrics_report(db, dataset, condition, baseline, human, n_boot, level, normalize).rows


def key_facts(db: sqlite_utils.Database, run_ids: Sequence[str]) -> tuple[set[str], dict[str, dict[str, bool]]]:
    """What the answer keys say about these runs' answers: the items without a key, and per run, item id ->
    whether MMAU's own scorer (judge.mmau_match on the raw reply) counts the reply correct (keyed items only)."""
    keyless: set[str] = set()
    matches: dict[str, dict[str, bool]] = {run_id: {} for run_id in run_ids}
    for row in store.answer_rows(db, run_ids):
        if row["key"] is None:
            keyless.add(row["item_id"])
        else:
            matches[row["run_id"]][row["item_id"]] = mmau_match(row["text"], row["choices"], row["key"])
    return keyless, matches


def metrics_table(
    outcomes: Mapping[str, Outcomes],
    groups: Mapping[str, str],
    baseline: str | None = "baseline",
    sources: Mapping[str, str] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    normalize: str = "total",
    seed: int = 0,
    keyless: Collection[str] = (),
    human: Mapping[str, Collection[str]] | None = None,
    mmau: Mapping[str, Mapping[str, bool]] | None = None,
) -> list[dict[str, Any]]:
    """One row per method and group (each modality, then "total" pooling all items), with bootstrap intervals.

    :param outcomes: method label -> item id -> outcome
    :param groups: item id -> group (modality); an item without one counts as "unknown"
    :param baseline: the label every other method is compared with, paired by item id (ΔCon, ΔHum, RGI
      and the method's rates are then over the items both answered); None or a label not in
      `outcomes`: scores only
    :param sources: label -> where its outcomes came from ("parser", "human", "mixed (N human)")
    :param keyless: items without an answer key; they count in no figure (they are left out, and the
      row's `left_out` says how many), except under a label whose outcome on them is a human verdict
    :param human: label -> the items whose outcome is a human verdict
    :param mmau: label -> item id -> whether MMAU's own scorer (judge.mmau_match) counts the reply
      correct; `mmau_acc` is its share over the row's items that have one
    Rows hold: method, group, source, n, correct, wrong, idk, every figure column of COLUMNS with `_low` /
    `_high` interval bounds (None where undefined; RGI may be ±inf), rgi_label, mmau_n, left_out (a count,
    with the reason in left_out_why).
    """
    counted = counted_outcomes(outcomes, keyless, human)
    reference = counted.get(baseline) if baseline is not None else None
    rows = []
    for label, result in outcomes.items():
        ref = None if reference is None or label == baseline else reference
        for group, ids in _by_group(result, groups):
            subset = {k: result[k] for k in ids if k in counted[label]}
            row = _row(label, group, subset, ref, (sources or {}).get(label, ""), n_boot, level, normalize, seed)
            row.update(_mmau_figures(row.pop("ids"), (mmau or {}).get(label), n_boot, level, seed))
            left_out = len(ids) - len(subset)
            row["left_out"] = left_out
            row["left_out_why"] = f"{left_out} without an answer key" if left_out else ""
            rows.append(row)
    return rows


def counted_outcomes(
    outcomes: Mapping[str, Outcomes], keyless: Collection[str] = (), human: Mapping[str, Collection[str]] | None = None
) -> dict[str, dict[str, Outcome | str]]:
    """The outcomes that count in any figure, per label: items with an answer key, and keyless items whose
    outcome under that label is a human verdict (`human`: label -> those item ids)."""
    keyless = frozenset(keyless)
    counted = {}
    for label, result in outcomes.items():
        judged = set((human or {}).get(label, ()))
        counted[label] = {k: v for k, v in result.items() if k not in keyless or k in judged}
    return counted


def points(setup: Setup, groups: Mapping[str, str], normalize: str, n_boot: int) -> list[MethodPoint]:
    """Plane points of every method the setup compares: exact counts from metrics.compare_by_group, intervals
    from its rows."""
    from reliability.plots import MethodPoint  # plots loads plotly, which the command line never needs

    if setup.baseline is None:
        return []
    by_key = {(r["method"], r["group"]): r for r in setup.rows}
    reference = setup.outcomes[setup.baseline]
    found = []
    for label, result in setup.outcomes.items():
        if label == setup.baseline:
            continue
        compared = metrics.compare_by_group(reference, result, {k: groups.get(k, UNKNOWN_GROUP) for k in result}, normalize)
        for group, comparison in compared.items():
            row = by_key.get((label, group))
            if comparison.n and row is not None:
                intervals = metrics.ComparisonIntervals(
                    n=comparison.n, n_boot=n_boot, level=0.95, normalize=normalize,
                    **{c.stat: metrics.Interval(row[c.key], row[f"{c.key}_low"], row[f"{c.key}_high"]) for c in _FIGURES},
                )
                found.append(MethodPoint(label, group, comparison, intervals))
    return found


def curves(db: sqlite_utils.Database, report: Report) -> dict[str, metrics.RiskCoverage]:
    """Label -> risk-coverage curve of the answered (not idk) counted items that have a confidence, for each
    run with any."""
    confidences: dict[str, dict[str, float]] = defaultdict(dict)
    for row in store.answer_rows(db, [run.id for setup in report.setups for run in setup.runs.values()]):
        if row["confidence"] is not None:
            confidences[row["run_id"]][row["item_id"]] = row["confidence"]
    found = {}
    for setup in report.setups:
        for label, run in setup.runs.items():
            outcomes, known = setup.outcomes[label], confidences.get(run.id, {})
            ids = [k for k, o in outcomes.items() if k in known and o != Outcome.IDK]
            if ids:
                found[label] = metrics.risk_coverage([known[k] for k in ids], [outcomes[k] == Outcome.CORRECT for k in ids])
    return found


def _baseline(labelled: Mapping[str, store.Run], baseline: str) -> str | None:
    """The label named `baseline`, else the label of the setup's only run of that method; None: no comparison."""
    if baseline in labelled:
        return baseline
    found = [name for name, run in labelled.items() if run.method == baseline]
    return found[0] if len(found) == 1 else None


def _row(
    label: str,
    group: str,
    result: Outcomes,
    ref: Outcomes | None,
    source: str,
    n_boot: int,
    level: float,
    normalize: str,
    seed: int,
) -> dict[str, Any]:
    if ref is not None:
        result = {k: v for k, v in result.items() if k in ref}
        ref = {k: ref[k] for k in result}
    counts = Counter(result.values())  # Outcome is a str enum: "correct" and Outcome.CORRECT count together
    row: dict[str, Any] = {
        "method": label, "group": group, "source": source, "n": len(result), "ids": list(result),
        **{o.value: counts[o] for o in (Outcome.CORRECT, Outcome.WRONG, Outcome.IDK)},
    }
    if ref is None:
        figures: Any = metrics.score_interval(result, n_boot=n_boot, seed=seed, level=level)
        rgi_label = ""
    else:
        figures = metrics.bootstrap(ref, result, n_boot=n_boot, seed=seed, level=level, normalize=normalize)
        rgi_label = metrics.compare(ref, result, normalize).rgi_label
    for column in _FIGURES:
        row.update(_bounds(column.key, getattr(figures, column.stat, None)))  # a score has no ΔCon, ΔHum, RGI
    row["rgi_label"] = rgi_label
    return row


def _mmau_figures(ids: Sequence[str], matches: Mapping[str, bool] | None, n_boot: int, level: float, seed: int) -> dict[str, Any]:
    """The MMAU figures with their bootstrap intervals over the items that have MMAU's verdict, and their number."""
    scored = [matches[k] for k in ids if k in matches] if matches else []
    figures = None
    if scored:
        verdicts = [Outcome.CORRECT if m else Outcome.WRONG for m in scored]
        figures = metrics.score_interval(verdicts, n_boot=n_boot, seed=seed, level=level)
    row: dict[str, Any] = {}
    for column in _MMAU_FIGURES:
        row.update(_bounds(column.key, getattr(figures, column.stat) if figures else None))
    row["mmau_n"] = len(scored)
    return row


def _bounds(key: str, interval: metrics.Interval | None) -> dict[str, Any]:
    if interval is None:
        return {key: None, f"{key}_low": None, f"{key}_high": None}
    return {key: interval.estimate, f"{key}_low": interval.low, f"{key}_high": interval.high}


def _by_group(result: Outcomes, groups: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """(group, item ids) per group in the paper's modality order, then others by name, then "total"."""
    members: dict[str, list[str]] = {}
    for item_id in result:
        members.setdefault(groups.get(item_id, UNKNOWN_GROUP), []).append(item_id)
    rank = {m: i for i, m in enumerate(MODALITIES)}
    order = sorted(members, key=lambda g: (rank.get(g, len(rank)), g))
    return [(g, members[g]) for g in order] + [(metrics.TOTAL, list(result))]
