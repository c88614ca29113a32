"""Does the answer come from the audio? Text-prior rate, per-item audio-reliance categories, fragment retention, no-audio humility.

Pure functions over outcome maps (item id -> Outcome) per condition (`reliability.conditions`);
nothing here reads the store or draws. Definitions (docs/METRICS.md section 5, "All That Glitters Is Not
Audio", arXiv 2604.24401):

- "Right" means Outcome.CORRECT. An abstention (idk) is not right: an item the model abstains on
  without audio did not get its answer from the text.
- R_TP = Acc_none / Acc_full on the items answered under both conditions.
- Categories, mutually exclusive, over the items answered under full, none and every fragment
  condition given: TS right with and without audio; audio-needed (right with, not right without)
  split into FS (some fragment run is right) and XS (no fragment run is right); AH right without
  audio, not right with it; UN right in neither.
- Retention at N: the mean accuracy of the N chunk runs n{N}_chunk1..n{N}_chunk{N} divided by Acc_full, on
  the items answered under full and all N chunk runs.

Undefined figures (no items, Acc_full = 0) are None, never NaN. "total" pools all items.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reliability.conditions import FULL, NONE, parse_condition
from reliability.metrics import TOTAL, Comparison, Score, by_group, compare, score
from reliability.types import MODALITIES, Outcome

TS, FS, XS, AH, UN = "TS", "FS", "XS", "AH", "UN"
CATEGORIES = (TS, FS, XS, AH, UN)
CATEGORY_NAMES = {
    TS: "text-solvable",
    FS: "audio-needed, a fragment suffices",
    XS: "audio-needed, the whole clip is needed",
    AH: "audio-harmful",
    UN: "unsolved",
}
AUDIO_NEEDED = (FS, XS)
# Items the text alone does not solve. The audio-needed items of the reference method are all
# correct for it with audio, so a comparison against it restricted to FS + XS has no baseline-wrong
# item and ΔHum is 0 by construction; adding UN (wrong both ways) keeps the items where humility
# can be gained while still leaving out every item the text prior answers (TS, AH).
TEXT_UNSOLVED = (FS, XS, UN)

Outcomes = Mapping[str, Outcome | str]  # item id -> outcome of one run


@dataclass(frozen=True)
class TextPrior:
    """How much of the full-audio accuracy survives with no audio, on one group of items."""

    n: int  # items answered under both full and none
    acc_full: float | None
    acc_none: float | None
    rate: float | None  # R_TP = acc_none / acc_full; lower means the score relies more on the audio; None when acc_full is 0 or None


@dataclass(frozen=True)
class CategoryCounts:
    """Per-item categories of one group, as counts and shares of the group's items."""

    n: int  # categorised items
    counts: dict[str, int]  # category -> items, every category present
    shares: dict[str, float | None]  # category -> count / n; None when n = 0
    audio_needed: int  # FS + XS
    xs_share: float | None  # XS / (FS + XS): the audio-needed items no fragment answers; None with no audio-needed item


@dataclass(frozen=True)
class Retention:
    """Accuracy from fragments of N pieces relative to the full clip, on one group of items."""

    pieces: int  # N
    n: int  # items answered under full and all N chunk runs
    acc_full: float | None
    chunk_acc: list[float | None]  # accuracy of chunk 1..N
    mean_acc: float | None  # mean of chunk_acc
    retention: float | None  # mean_acc / acc_full; higher means fragments keep more; None when acc_full is 0 or None


@dataclass(frozen=True)
class NoAudioHumility:
    """One method's answers with and without audio: a reliable model abstains more when the audio is missing."""

    method: str
    full: Score  # over the items answered with audio
    none: Score  # over the items answered with no audio

    @property
    def rej_full(self) -> float | None:
        return self.full.rej

    @property
    def rej_none(self) -> float | None:
        return self.none.rej


@dataclass(frozen=True)
class AudioGain:
    """A method against the reference with audio: on all items and on the items the text alone does not solve."""

    method: str
    all_items: Comparison
    audio_items: Comparison  # restricted to the reference's TEXT_UNSOLVED items


@dataclass(frozen=True)
class DiagnosticsReport:
    """Every diagnostic of a set of methods on one dataset, backend and model."""

    reference: str  # the method whose categories choose the items of `gains` (the baseline)
    methods: tuple[str, ...]
    conditions: tuple[str, ...]  # conditions with answers, full, none, then fragments by N and K
    scores: dict[str, dict[str, dict[str, Score]]]  # method -> condition -> group -> Score
    text_prior: dict[str, dict[str, TextPrior]]  # method -> group -> R_TP; {} without both full and none
    categories: dict[str, dict[str, str]]  # method -> item -> category; {} without full, none and fragments
    category_table: dict[str, dict[str, CategoryCounts]]  # method -> group -> counts
    retention: dict[str, dict[int, dict[str, Retention]]]  # method -> N -> group -> retention
    humility: dict[str, NoAudioHumility]  # method -> abstention with and without audio
    gains: dict[str, AudioGain]  # method (other than the reference) -> comparison with the reference


def text_prior_rate(full: Outcomes, none: Outcomes, groups: Mapping[str, str]) -> dict[str, TextPrior]:
    """R_TP = Acc_none / Acc_full per group plus "total", on the items answered under both conditions."""
    ids = [k for k in full if k in none]
    acc_full = by_group({k: full[k] for k in ids}, groups)
    acc_none = by_group({k: none[k] for k in ids}, groups)
    return {
        g: TextPrior(acc_full[g].n, acc_full[g].acc, acc_none[g].acc, _ratio(acc_none[g].acc, acc_full[g].acc))
        for g in acc_full
    }


def categorize(full: Outcomes, none: Outcomes, fragments: Mapping[str, Outcomes]) -> dict[str, str]:
    """Item id -> TS / FS / XS / AH / UN (module docstring), over the items answered under every condition.

    :param fragments: fragment condition name (e.g. "n3_chunk2") -> that run's outcomes; at least one,
      since without fragments "no fragment suffices" would hold for every audio-needed item
    """
    if not fragments:
        raise ValueError("categories need at least one fragment condition (n<N>_chunk<K>) to split FS from XS")
    for name in fragments:
        if not parse_condition(name).is_fragment:
            raise ValueError(f"{name!r} is not a fragment condition")
    runs = list(fragments.values())
    categories = {}
    for item in full:
        if item not in none or any(item not in run for run in runs):
            continue
        with_audio, without = _right(full[item]), _right(none[item])
        if with_audio and without:
            categories[item] = TS
        elif with_audio:
            categories[item] = FS if any(_right(run[item]) for run in runs) else XS
        else:
            categories[item] = AH if without else UN
    return categories


def category_table(categories: Mapping[str, str], groups: Mapping[str, str]) -> dict[str, CategoryCounts]:
    """Counts and shares of each category per group plus "total"; XS also as a share of the audio-needed items."""
    unknown = set(categories.values()) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    labels = _labels(categories, groups)
    table = {g: _counts([c for k, c in categories.items() if labels[k] == g]) for g in _group_order(labels.values())}
    table[TOTAL] = _counts(list(categories.values()))
    return table


def retention(full: Outcomes, fragments: Mapping[str, Outcomes], groups: Mapping[str, str]) -> dict[int, dict[str, Retention]]:
    """N -> group (plus "total") -> retention, for every N whose N chunk runs are all given (module docstring)."""
    by_pieces: dict[int, dict[int, Outcomes]] = {}
    for name, run in fragments.items():
        cond = parse_condition(name)
        if not cond.is_fragment:
            raise ValueError(f"{name!r} is not a fragment condition")
        by_pieces.setdefault(cond.pieces, {})[cond.chunk] = run
    result = {}
    for pieces in sorted(by_pieces):
        chunks = by_pieces[pieces]
        if len(chunks) != pieces:  # a mean over some of the chunks would favour the chunks that ran
            continue
        runs = [chunks[k] for k in range(1, pieces + 1)]
        ids = [k for k in full if all(k in run for run in runs)]
        base = by_group({k: full[k] for k in ids}, groups)
        per_chunk = [by_group({k: run[k] for k in ids}, groups) for run in runs]
        result[pieces] = {g: _retention(pieces, base[g], [s[g] for s in per_chunk]) for g in base}
    return result


def no_audio_humility(method_full: Mapping[str, Outcomes], method_none: Mapping[str, Outcomes]) -> dict[str, NoAudioHumility]:
    """Method -> its scores (abstention rate included) with audio and with no audio.

    Each score covers the items that method answered under that condition (the same items whenever
    both runs are complete); a method missing from one mapping gets an empty score there.
    """
    names = list(dict.fromkeys([*method_full, *method_none]))
    return {m: NoAudioHumility(m, score(method_full.get(m, {})), score(method_none.get(m, {}))) for m in names}


def audio_needed_comparison(
    baseline: Outcomes,
    method: Outcomes,
    categories: Mapping[str, str],
    keep: Collection[str] = TEXT_UNSOLVED,
    normalize: str = "total",
) -> Comparison:
    """metrics.compare of `method` against `baseline` on the items whose category is in `keep` only.

    With the baseline's own categories keep the default TEXT_UNSOLVED (FS, XS, UN): the baseline is
    right on all of its FS and XS items, so FS + XS alone leave ΔHum 0 by construction. Pass
    keep=AUDIO_NEEDED when the categories come from another reference (e.g. a stronger model).
    """
    unknown = set(keep) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; known: {', '.join(CATEGORIES)}")
    kept = {k for k, c in categories.items() if c in keep}
    return compare({k: v for k, v in baseline.items() if k in kept}, method, normalize)


def build_report(
    outcomes: Mapping[str, Mapping[str, Outcomes]],
    groups: Mapping[str, str],
    reference: str | None = None,
    normalize: str = "total",
) -> DiagnosticsReport:
    """Every diagnostic from method -> condition -> item -> outcome; figures that need a missing condition are left out.

    :param groups: item id -> modality, for every answered item
    :param reference: the method the others are compared with (default: the first method)
    :param normalize: ΔCon/ΔHum denominator of `gains`, as in metrics.compare
    """
    methods = tuple(outcomes)
    reference = methods[0] if reference is None and methods else reference
    if methods and reference not in outcomes:
        raise ValueError(f"reference method {reference!r} has no runs; methods: {', '.join(methods)}")
    present = {c for runs in outcomes.values() for c, run in runs.items() if run}
    text_prior, categories, tables, kept = {}, {}, {}, {}
    for m, runs in outcomes.items():
        full, none = runs.get(FULL, {}), runs.get(NONE, {})
        frags = {c: run for c, run in runs.items() if parse_condition(c).is_fragment and run}
        if full and none:
            text_prior[m] = text_prior_rate(full, none, groups)
            if frags:
                categories[m] = categorize(full, none, frags)
                tables[m] = category_table(categories[m], groups)
        if full and frags:
            kept[m] = retention(full, frags, groups)
    ref_full = outcomes.get(reference, {}).get(FULL, {})
    gains = {
        m: AudioGain(
            m,
            compare(ref_full, runs[FULL], normalize),
            audio_needed_comparison(ref_full, runs[FULL], categories[reference], normalize=normalize),
        )
        for m, runs in outcomes.items()
        if m != reference and runs.get(FULL) and reference in categories
    }
    return DiagnosticsReport(
        reference=reference or "",
        methods=methods,
        conditions=tuple(sorted(present, key=_condition_key)),
        scores={m: {c: by_group(run, groups) for c, run in runs.items() if run} for m, runs in outcomes.items()},
        text_prior=text_prior,
        categories=categories,
        category_table=tables,
        retention=kept,
        humility=no_audio_humility(
            {m: runs[FULL] for m, runs in outcomes.items() if runs.get(FULL)},
            {m: runs[NONE] for m, runs in outcomes.items() if runs.get(NONE)},
        ),
        gains=gains,
    )


def report_rows(report: DiagnosticsReport) -> list[dict[str, Any]]:
    """One row per method and group (each modality, then "total"), rates as fractions, None where undefined.

    Accuracy and abstention rate per condition are over the items that condition answered; r_tp is
    over the items answered under both full and none; ret_<N> is the retention at N pieces.
    """
    ns = sorted({n for by_pieces in report.retention.values() for n in by_pieces})
    rows = []
    for m in report.methods:
        scores = report.scores.get(m, {})
        groups = list(dict.fromkeys(g for by_group in scores.values() for g in by_group))
        groups = [g for g in groups if g != TOTAL] + [TOTAL]
        for g in groups:
            full, none = scores.get(FULL, {}).get(g), scores.get(NONE, {}).get(g)
            prior = report.text_prior.get(m, {}).get(g)
            table = report.category_table.get(m, {}).get(g)
            kept = report.retention.get(m, {})
            rows.append(
                {
                    "method": m,
                    "group": g,
                    "acc_full": full.acc if full else None,
                    "acc_none": none.acc if none else None,
                    "r_tp": prior.rate if prior else None,
                    **{c: table.counts[c] if table else None for c in CATEGORIES},
                    "xs_share": table.xs_share if table else None,
                    **{f"ret_{n}": kept[n][g].retention if n in kept and g in kept[n] else None for n in ns},
                    "rej_full": full.rej if full else None,
                    "rej_none": none.rej if none else None,
                }
            )
    return rows


def format_report(report: DiagnosticsReport) -> str:
    """The report as aligned text (rates in percent): the per-group rows, then each method's gains on all and on text-unsolved items."""
    rows = report_rows(report)
    if not rows:
        return "no diagnostic runs yet"
    columns = list(rows[0])
    header = {"acc_full": "Acc full", "acc_none": "Acc none", "r_tp": "R_TP", "xs_share": "XS/need", "rej_full": "Rej full", "rej_none": "Rej none"}
    lines = [[header.get(c, c.replace("ret_", "ret N=")) for c in columns]]
    lines += [[_cell(r[c], c) for c in columns] for r in rows]
    text = _align(lines)
    if report.gains:
        gains = [["method", "items", "n", "ΔCon", "ΔHum", "RGI"]]
        for gain in report.gains.values():
            for label, comp in (("all", gain.all_items), ("text-unsolved (FS+XS+UN)", gain.audio_items)):
                gains.append([gain.method, label, str(comp.n), _cell(comp.delta_con, "%"), _cell(comp.delta_hum, "%"), comp.rgi_label])
        text += f"\n\nagainst {report.reference}, with audio:\n" + _align(gains)
    return text


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if column in CATEGORIES or column in ("method", "group"):
        return str(value)
    return f"{100 * value:.1f}"


def _align(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def _condition_key(name: str) -> tuple[int, int, int]:
    """full, none, then fragments by N and K; also refuses an invalid condition name."""
    cond = parse_condition(name)
    return (2, cond.pieces, cond.chunk) if cond.is_fragment else ((0 if name == FULL else 1), 0, 0)


def _right(outcome: Outcome | str) -> bool:
    return Outcome(outcome) is Outcome.CORRECT


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def _retention(pieces: int, full: Score, chunks: Sequence[Score]) -> Retention:
    accs = [s.acc for s in chunks]
    mean = None if full.n == 0 else sum(accs) / pieces
    return Retention(pieces, full.n, full.acc, accs, mean, _ratio(mean, full.acc))


def _counts(categories: Sequence[str]) -> CategoryCounts:
    n = len(categories)
    counts = {c: categories.count(c) for c in CATEGORIES}
    needed = counts[FS] + counts[XS]
    return CategoryCounts(
        n=n,
        counts=counts,
        shares={c: _ratio(counts[c], n) for c in CATEGORIES},
        audio_needed=needed,
        xs_share=_ratio(counts[XS], needed),
    )


def _labels(items: Mapping[str, str], groups: Mapping[str, str]) -> dict[str, str]:
    missing = [k for k in items if k not in groups]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no group, e.g. {missing[:5]}")
    if TOTAL in {groups[k] for k in items}:
        raise ValueError(f"{TOTAL!r} is reserved for pooled figures and cannot name a group")
    return {k: groups[k] for k in items}


def _group_order(labels) -> list[str]:
    """Groups in the paper's modality order (sound, music, speech), then any others by name, as metrics.by_group."""
    rank = {m: i for i, m in enumerate(MODALITIES)}
    return sorted(set(labels), key=lambda g: (rank.get(g, len(rank)), g))
