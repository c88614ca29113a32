"""Metric tables from outcome maps: per modality and total, every method against the baseline, with intervals.

Pure functions: outcomes in, rows (plain dicts, rates as fractions 0..1) out. The CLI prints them, the
exports write them and the app shows them; nothing here reads the store or draws.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reliability import metrics
from reliability.types import MODALITIES, Outcome

RATES = ("acc", "tru", "rej", "rel")  # higher acc, tru, rel are better
DELTAS = ("delta_con", "delta_hum", "rgi")  # lower ΔCon, higher ΔHum and RGI are better
MMAU_ACC = "mmau_acc"  # MMAU's own accuracy (string_match on the raw reply); higher is better
UNKNOWN_GROUP = "unknown"

Outcomes = Mapping[str, Outcome | str]  # item id -> outcome


@dataclass(frozen=True)
class Column:
    """One column of the metrics table as every view shows it (CLI text, dashboard)."""

    key: str  # the row's field
    label: str  # the header
    kind: str  # "text", "count", "percent" (a rate with its interval) or "rgi" (label and interval)
    better: str = ""  # "higher", "lower" or "" (no direction)


# The one declaration of the table's columns: the CLI and the dashboard both render these.
COLUMNS = (
    Column("method", "method", "text"),
    Column("group", "group", "text"),
    Column("n", "n", "count"),
    Column("acc", "Acc", "percent", "higher"),
    Column(MMAU_ACC, "MMAU Acc", "percent", "higher"),
    Column("tru", "Tru", "percent", "higher"),
    Column("rel", "Rel", "percent", "higher"),
    Column("rej", "Rej", "percent"),
    Column("delta_con", "ΔCon", "percent", "lower"),
    Column("delta_hum", "ΔHum", "percent", "higher"),
    Column("rgi", "RGI", "rgi", "higher"),
    Column("left_out", "left out", "text"),
    Column("source", "source", "text"),
)


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
    Rows hold: method, group, source, n, correct, wrong, idk, each rate in RATES and DELTAS with
    `_low` / `_high` interval bounds (None where undefined; RGI may be ±inf), rgi_label, mmau_acc
    with its bounds and mmau_n, left_out (a count, with the reason in left_out_why).
    """
    counted = counted_outcomes(outcomes, keyless, human)
    reference = counted.get(baseline) if baseline is not None else None
    rows = []
    for label, result in outcomes.items():
        ref = None if reference is None or label == baseline else reference
        for group, ids in _by_group(result, groups):
            subset = {k: result[k] for k in ids if k in counted[label]}
            row = _row(label, group, subset, ref, (sources or {}).get(label, ""), n_boot, level, normalize, seed)
            row.update(_mmau_columns(row.pop("ids"), (mmau or {}).get(label), n_boot, level, seed))
            left_out = len(ids) - len(subset)
            row["left_out"] = left_out
            row["left_out_why"] = f"{left_out} without an answer key" if left_out else ""
            rows.append(row)
    return rows


def table_headers(setup: Sequence[str] = ()) -> list[str]:
    """The headers of the text and dashboard tables: `setup` columns, then COLUMNS."""
    return [*setup, *(c.label for c in COLUMNS)]


def table_cells(row: Mapping[str, Any], bound_digits: int = 1, missing: str = "-") -> list[str]:
    """One row's cells in COLUMNS order: rates in percent with their intervals, RGI with its label."""
    cells = []
    for column in COLUMNS:
        if column.kind == "percent":
            cells.append(percent_cell(row, column.key, bound_digits, missing))
        elif column.kind == "rgi":
            cells.append(rgi_cell(row, missing))
        elif column.key == "left_out":
            cells.append(row.get("left_out_why") or "")
        else:
            cells.append(str(row[column.key]))
    return cells


def format_table(rows: Sequence[Mapping[str, Any]], setup: Sequence[str] = ()) -> str:
    """The rows as aligned text: rates in percent with their intervals, RGI with its label.

    :param setup: extra leading columns present in the rows (e.g. "model", "condition")
    """
    header = table_headers(setup)
    lines = [header] + [[str(r[c]) for c in setup] + table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


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
        intervals: Any = metrics.score_interval(result, n_boot=n_boot, seed=seed, level=level)
        names, rgi_label = RATES, ""
    else:
        intervals = metrics.bootstrap(ref, result, n_boot=n_boot, seed=seed, level=level, normalize=normalize)
        names, rgi_label = RATES + DELTAS, metrics.compare(ref, result, normalize).rgi_label
    for name in RATES + DELTAS:
        interval = getattr(intervals, name) if name in names else None
        row[name] = interval.estimate if interval else None
        row[f"{name}_low"] = interval.low if interval else None
        row[f"{name}_high"] = interval.high if interval else None
    row["rgi_label"] = rgi_label
    return row


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


def _mmau_columns(ids: Sequence[str], matches: Mapping[str, bool] | None, n_boot: int, level: float, seed: int) -> dict[str, Any]:
    """mmau_acc with its bootstrap interval over the items that have MMAU's verdict, and their number."""
    scored = [matches[k] for k in ids if k in matches] if matches else []
    if not scored:
        return {MMAU_ACC: None, f"{MMAU_ACC}_low": None, f"{MMAU_ACC}_high": None, "mmau_n": 0}
    acc = metrics.score_interval([Outcome.CORRECT if m else Outcome.WRONG for m in scored], n_boot=n_boot, seed=seed, level=level).acc
    return {MMAU_ACC: acc.estimate, f"{MMAU_ACC}_low": acc.low, f"{MMAU_ACC}_high": acc.high, "mmau_n": len(scored)}


def _by_group(result: Outcomes, groups: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    """(group, item ids) per group in the paper's modality order, then others by name, then "total"."""
    members: dict[str, list[str]] = {}
    for item_id in result:
        members.setdefault(groups.get(item_id, UNKNOWN_GROUP), []).append(item_id)
    rank = {m: i for i, m in enumerate(MODALITIES)}
    order = sorted(members, key=lambda g: (rank.get(g, len(rank)), g))
    return [(g, members[g]) for g in order] + [(metrics.TOTAL, list(result))]


def percent_cell(row: Mapping[str, Any], name: str, bound_digits: int = 1, missing: str = "-") -> str:
    """A rate as "76.0 [60.0, 92.0]" (percent, with its interval where there is one)."""
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if value is None:
        return missing
    text = f"{100 * value:.1f}"
    return text + (f" [{100 * low:.{bound_digits}f}, {100 * high:.{bound_digits}f}]" if low is not None and high is not None else "")


def rgi_cell(row: Mapping[str, Any], missing: str = "-") -> str:
    """RGI's label with its interval when both ends are finite numbers."""
    if not row["rgi_label"]:
        return missing
    low, high, value = row["rgi_low"], row["rgi_high"], row["rgi"]
    finite = value is not None and math.isfinite(value) and low is not None and high is not None
    return row["rgi_label"] + (f" [{low:.2f}, {high:.2f}]" if finite else "")
