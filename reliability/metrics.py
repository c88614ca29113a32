"""Reliability metrics (docs/METRICS.md sections 2-3): Acc, Tru, Rej, Rel, ΔCon, ΔHum, RGI, bootstrap intervals, quadrants, risk-coverage.

Every function is pure and returns plain numbers. An undefined figure (no items, a zero
denominator) is None, never NaN; RGI's one-sided edge cases are ±math.inf and carry a label.
Outcomes may be `Outcome` members or their strings ("correct", "wrong", "idk").
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from reliability.types import MODALITIES, Outcome

NORMALIZATIONS = ("total", "group")
TOTAL = "total"  # the key of pooled figures in by_group / compare_by_group

# Outcomes as small ints so that counting and resampling run in numpy.
_ORDER = (Outcome.CORRECT, Outcome.WRONG, Outcome.IDK)
_CORRECT, _WRONG, _IDK = range(3)
# Outcome is a str enum with str hashing, so one string-keyed dict looks up both forms.
_CODE = {o.value: i for i, o in enumerate(_ORDER)}


@dataclass(frozen=True)
class Score:
    """Counts and rates of one set of judged answers. Rates are fractions (0..1), None when n = 0."""

    n: int  # judged items
    correct: int  # N_c
    wrong: int  # N_w
    idk: int  # N_r, abstentions
    acc: float | None  # N_c / N; higher is better
    tru: float | None  # (N_c + N_r) / N = 1 - N_w / N; higher is better
    rej: float | None  # N_r / N; neither direction is better on its own (see rel)
    rel: float | None  # Rej * Acc + (1 - Rej) * Tru; higher is better


@dataclass(frozen=True)
class Comparison:
    """A method against the baseline on the items both answered (paired by item id)."""

    n: int  # paired items
    baseline_correct: int  # N_c: baseline-correct paired items
    baseline_wrong: int  # N_w: baseline-wrong paired items
    lost_correct: int  # baseline-correct items the method no longer gets correct (wrong or idk)
    gained_humble: int  # baseline-wrong items the method no longer gets wrong (idk or correct)
    normalize: str  # "total" (D = N) or "group" (D = N_c for ΔCon, N_w for ΔHum)
    delta_con: float | None  # lost_correct / D, conservatism; lower is better; None when D = 0
    delta_hum: float | None  # gained_humble / D, humility; higher is better; None when D = 0
    rgi: float | None  # log10(ΔHum / ΔCon); higher is better; ±inf at the edges, None when undefined
    rgi_label: str  # rgi for a table: "0.27", "+inf (no conservatism)", "undefined (no change)", ...


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval around a point estimate."""

    estimate: float | None  # the figure on the full sample
    low: float | None  # None when every resample was undefined
    high: float | None
    dropped: int = 0  # resamples where the figure was undefined or infinite, left out of low/high


@dataclass(frozen=True)
class ScoreIntervals:
    """Bootstrap intervals of one set's rates."""

    n: int
    n_boot: int
    level: float  # e.g. 0.95
    acc: Interval
    tru: Interval
    rej: Interval
    rel: Interval


@dataclass(frozen=True)
class ComparisonIntervals:
    """Paired bootstrap intervals of a method's rates and of its comparison with the baseline."""

    n: int  # paired items
    n_boot: int
    level: float
    normalize: str
    acc: Interval  # the method's rates
    tru: Interval
    rej: Interval
    rel: Interval
    delta_con: Interval
    delta_hum: Interval
    rgi: Interval  # `dropped` counts resamples with RGI ±inf or undefined


@dataclass(frozen=True)
class RiskCoverage:
    """Selective-prediction curve: the error rate of the k most confident answers, k = 1..N."""

    coverage: list[float]  # k / N
    risk: list[float]  # error rate of the top-k answers; lower is better
    aurc: float | None  # mean risk over k = 1..N; lower is better; None for no answers


def score(outcomes: Iterable[Outcome | str] | Mapping[str, Outcome | str]) -> Score:
    """Acc, Tru, Rej and Rel of a set of outcomes (a mapping is read by its values).

    Higher Acc, Tru and Rel are better. With no outcomes the rates are None.
    """
    if isinstance(outcomes, Mapping):
        outcomes = outcomes.values()
    return _score_from_counts(np.bincount(_encode(outcomes), minlength=3))


def compare(
    baseline: Mapping[str, Outcome | str], method: Mapping[str, Outcome | str], normalize: str = "total"
) -> Comparison:
    """ΔCon, ΔHum and RGI of `method` against `baseline`, paired on the item ids both contain.

    Items present in only one mapping are ignored. normalize="total" divides both deltas by the
    number of paired items N (reproduces the published tables); "group" divides ΔCon by N_c and ΔHum
    by N_w. Lower ΔCon, higher ΔHum and higher RGI are better.
    """
    _check_normalize(normalize)
    ids = [k for k in baseline if k in method]
    return _comparison_from_counts(_pair_counts(baseline, method, ids), normalize)


def by_group(outcomes: Mapping[str, Outcome | str], groups: Mapping[str, str]) -> dict[str, Score]:
    """Score per group (e.g. modality) plus "total", which pools all items (not a mean of groups).

    `groups` maps every item id to its group; a missing id raises ValueError.
    """
    ids = list(outcomes)
    labels = _group_labels(ids, groups)
    codes = _encode(outcomes[k] for k in ids)
    result = {g: _score_from_counts(np.bincount(codes[labels == g], minlength=3)) for g in _group_order(labels)}
    result[TOTAL] = _score_from_counts(np.bincount(codes, minlength=3))
    return result


def compare_by_group(
    baseline: Mapping[str, Outcome | str],
    method: Mapping[str, Outcome | str],
    groups: Mapping[str, str],
    normalize: str = "total",
) -> dict[str, Comparison]:
    """`compare` per group plus "total", which pools all paired items (not a mean of groups).

    `groups` maps every paired item id to its group; a missing id raises ValueError.
    """
    _check_normalize(normalize)
    ids = [k for k in baseline if k in method]
    labels = _group_labels(ids, groups)
    pairs = _pair_codes(baseline, method, ids)
    result = {
        g: _comparison_from_counts(np.bincount(pairs[labels == g], minlength=9), normalize)
        for g in _group_order(labels)
    }
    result[TOTAL] = _comparison_from_counts(np.bincount(pairs, minlength=9), normalize)
    return result


def score_interval(
    outcomes: Iterable[Outcome | str] | Mapping[str, Outcome | str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> ScoreIntervals:
    """Percentile bootstrap intervals of Acc, Tru, Rej and Rel of one set (e.g. the human baseline).

    Seeded, so the same call gives the same intervals. Higher Acc, Tru and Rel are better.
    """
    _check_bootstrap(n_boot, level)
    if isinstance(outcomes, Mapping):
        outcomes = outcomes.values()
    counts = np.bincount(_encode(outcomes), minlength=3)
    n = int(counts.sum())
    point = _score_from_counts(counts)
    boot = _resample_counts(counts, n_boot, seed)  # (n_boot, 3)
    rates = _rates(boot[:, _CORRECT], boot[:, _WRONG], boot[:, _IDK])
    return ScoreIntervals(
        n=n,
        n_boot=n_boot,
        level=level,
        **{name: _interval(getattr(point, name), rates[name], level) for name in ("acc", "tru", "rej", "rel")},
    )


def bootstrap(
    baseline: Mapping[str, Outcome | str],
    method: Mapping[str, Outcome | str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    normalize: str = "total",
) -> ComparisonIntervals:
    """Paired percentile bootstrap intervals of the method's Acc/Tru/Rej/Rel and of ΔCon, ΔHum, RGI.

    All figures are over the paired items (ids in both mappings). Those items are resampled with
    replacement, the same draw for baseline and method. RGI resamples that are ±inf or undefined are
    left out of its interval and counted in `dropped` (likewise ΔCon/ΔHum resamples with a zero
    denominator under normalize="group").
    """
    _check_normalize(normalize)
    _check_bootstrap(n_boot, level)
    ids = [k for k in baseline if k in method]
    counts = _pair_counts(baseline, method, ids)
    point = _comparison_from_counts(counts, normalize)
    point_score = _score_from_counts(_method_counts(counts))
    boot = _resample_counts(counts, n_boot, seed)  # (n_boot, 9)
    mc = _method_counts(boot)
    rates = _rates(mc[:, _CORRECT], mc[:, _WRONG], mc[:, _IDK])
    deltas = _deltas(*_comparison_parts(boot), normalize)
    return ComparisonIntervals(
        n=len(ids),
        n_boot=n_boot,
        level=level,
        normalize=normalize,
        **{name: _interval(getattr(point_score, name), rates[name], level) for name in ("acc", "tru", "rej", "rel")},
        **{name: _interval(getattr(point, name), deltas[name], level) for name in ("delta_con", "delta_hum", "rgi")},
    )


def transitions(baseline: Mapping[str, Outcome | str], method: Mapping[str, Outcome | str]) -> dict[str, dict[str, int]]:
    """Paired 3×3 table: table[baseline outcome][method outcome] = number of items (all 9 cells present)."""
    ids = [k for k in baseline if k in method]
    grid = _pair_counts(baseline, method, ids).reshape(3, 3)
    return {b.value: {m.value: int(grid[i, j]) for j, m in enumerate(_ORDER)} for i, b in enumerate(_ORDER)}


def quadrants(baseline: Mapping[str, Outcome | str], method: Mapping[str, Outcome | str]) -> dict[str, int]:
    """Know/don't-know quadrants: paired baseline → method transitions under readable names.

    "Known" items are those the baseline got right, "unknown" those it got wrong. Higher
    known_kept, unknown_admitted and unknown_fixed are better; lower known_lost_* and
    unknown_kept_wrong are better. known_lost_to_idk + known_lost_to_wrong is `compare`'s
    lost_correct; unknown_admitted + unknown_fixed is its gained_humble.
    """
    t = transitions(baseline, method)
    c, w, r = (o.value for o in _ORDER)
    return {
        "known_kept": t[c][c],
        "known_lost_to_idk": t[c][r],
        "known_lost_to_wrong": t[c][w],
        "unknown_admitted": t[w][r],
        "unknown_fixed": t[w][c],
        "unknown_kept_wrong": t[w][w],
        "baseline_idk_now_correct": t[r][c],
        "baseline_idk_now_wrong": t[r][w],
        "baseline_idk_kept": t[r][r],
    }


def risk_coverage(confidences: Sequence[float], correct: Sequence[bool]) -> RiskCoverage:
    """Risk-coverage curve and AURC of answers ranked by confidence (lower AURC is better).

    Answers are sorted by confidence, highest first; at coverage k/N the risk is the error rate of
    the top k. AURC is the mean risk over k = 1..N, the area under the risk-coverage curve of
    Geifman, Uziel & El-Yaniv, "Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers"
    (ICLR 2019). Ties keep their input order (stable sort), so the result is deterministic.
    The caller passes answered items only: abstentions (idk) carry no answer to rank.
    """
    conf = np.asarray(confidences, dtype=float)
    right = np.asarray(correct, dtype=bool)
    if conf.shape != right.shape or conf.ndim != 1:
        raise ValueError(f"confidences and correct must be flat and of equal length; got {conf.shape} and {right.shape}")
    if np.isnan(conf).any():
        raise ValueError(f"confidences contain NaN at positions {np.flatnonzero(np.isnan(conf))[:10].tolist()}")
    if conf.size == 0:
        return RiskCoverage(coverage=[], risk=[], aurc=None)
    order = np.argsort(-conf, kind="stable")
    k = np.arange(1, conf.size + 1)
    risk = np.cumsum(~right[order]) / k
    return RiskCoverage(coverage=(k / conf.size).tolist(), risk=risk.tolist(), aurc=float(risk.mean()))


def rgi_label(rgi: float | None, why_undefined: str = "no change") -> str:
    """How an RGI value reads in a table or plot: "0.27", "+inf (no conservatism)", "undefined (...)"."""
    if rgi is None:
        return f"undefined ({why_undefined})"
    if rgi == math.inf:
        return "+inf (no conservatism)"
    if rgi == -math.inf:
        return "-inf (no humility)"
    return f"{rgi:.2f}"


def _encode(outcomes: Iterable[Outcome | str]) -> np.ndarray:
    try:
        return np.fromiter((_CODE[o] for o in outcomes), dtype=np.int8)
    except KeyError as e:
        raise ValueError(f"unknown outcome {e.args[0]!r}; known: {', '.join(_CODE)}") from None


def _pair_codes(baseline: Mapping, method: Mapping, ids: list[str]) -> np.ndarray:
    """One int per paired item: 3 * baseline code + method code, shape (len(ids),)."""
    return 3 * _encode(baseline[k] for k in ids) + _encode(method[k] for k in ids)


def _pair_counts(baseline: Mapping, method: Mapping, ids: list[str]) -> np.ndarray:
    """Counts of the 9 (baseline, method) outcome pairs, shape (9,)."""
    return np.bincount(_pair_codes(baseline, method, ids), minlength=9)


def _method_counts(pairs: np.ndarray) -> np.ndarray:
    """The method's correct/wrong/idk counts from pair counts, shape (..., 9) -> (..., 3)."""
    return pairs.reshape(*pairs.shape[:-1], 3, 3).sum(axis=-2)


def _comparison_parts(pairs: np.ndarray) -> tuple[np.ndarray, ...]:
    """lost_correct, gained_humble, N_c, N_w, N of pair counts (..., 9)."""
    grid = pairs.reshape(*pairs.shape[:-1], 3, 3)
    n_c = grid[..., _CORRECT, :].sum(axis=-1)
    n_w = grid[..., _WRONG, :].sum(axis=-1)
    lost = n_c - grid[..., _CORRECT, _CORRECT]
    gained = n_w - grid[..., _WRONG, _WRONG]
    return lost, gained, n_c, n_w, grid.sum(axis=(-2, -1))


def _rates(c: np.ndarray, w: np.ndarray, r: np.ndarray) -> dict[str, np.ndarray]:
    """Acc, Tru, Rej, Rel of count arrays; NaN (internal only) where N = 0."""
    n = c + w + r
    with np.errstate(invalid="ignore", divide="ignore"):
        acc, tru, rej = c / n, (c + r) / n, r / n
    return {"acc": acc, "tru": tru, "rej": rej, "rel": rej * acc + (1 - rej) * tru}


def _deltas(lost, gained, n_c, n_w, n, normalize: str) -> dict[str, np.ndarray]:  # ints or arrays alike
    """ΔCon, ΔHum, RGI of count arrays; NaN (internal only) where undefined, ±inf at RGI's edges."""
    d_con, d_hum = (n, n) if normalize == "total" else (n_c, n_w)
    with np.errstate(invalid="ignore", divide="ignore"):
        con = np.asarray(lost, dtype=float) / d_con
        hum = np.asarray(gained, dtype=float) / d_hum
        # hum/con: x/0 = inf -> +inf, 0/x = 0 -> -inf, 0/0 or NaN input -> NaN (undefined)
        rgi = np.log10(hum / con)
    return {"delta_con": con, "delta_hum": hum, "rgi": rgi}


def _score_from_counts(counts: np.ndarray) -> Score:
    c, w, r = (int(x) for x in counts)
    rates = _rates(np.float64(c), np.float64(w), np.float64(r))
    return Score(n=c + w + r, correct=c, wrong=w, idk=r, **{k: _number(v) for k, v in rates.items()})


def _comparison_from_counts(pairs: np.ndarray, normalize: str) -> Comparison:
    lost, gained, n_c, n_w, n = (int(x) for x in _comparison_parts(pairs))
    d = {k: _number(v) for k, v in _deltas(lost, gained, n_c, n_w, n, normalize).items()}
    if n == 0:
        why = "no paired items"
    elif d["delta_con"] is None:
        why = "no baseline-correct items"
    elif d["delta_hum"] is None:
        why = "no baseline-wrong items"
    else:
        why = "no change"
    return Comparison(
        n=n,
        baseline_correct=n_c,
        baseline_wrong=n_w,
        lost_correct=lost,
        gained_humble=gained,
        normalize=normalize,
        rgi_label=rgi_label(d["rgi"], why),
        **d,
    )


def _resample_counts(counts: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Category counts of n_boot resamples of the items with replacement, shape (n_boot, len(counts)).

    Every metric here depends on a resample only through how many items fall in each outcome
    category, and those counts of N uniform draws with replacement are exactly multinomial with the
    observed frequencies. Drawing them directly is the same bootstrap as an (n_boot, N) index
    matrix, in O(n_boot × categories) time and memory instead of O(n_boot × N).
    """
    n = int(counts.sum())
    if n == 0:
        return np.zeros((n_boot, counts.size), dtype=np.int64)
    return np.random.default_rng(seed).multinomial(n, counts / n, size=n_boot)


def _interval(estimate: float | None, samples: np.ndarray, level: float) -> Interval:
    ok = np.isfinite(samples)
    dropped = int(samples.size - ok.sum())
    if not ok.any():
        return Interval(estimate=estimate, low=None, high=None, dropped=dropped)
    low, high = np.quantile(samples[ok], [(1 - level) / 2, (1 + level) / 2])
    return Interval(estimate=estimate, low=float(low), high=float(high), dropped=dropped)


def _number(x: np.floating) -> float | None:
    """A numpy scalar as a plain float, with NaN (undefined) as None; ±inf is kept."""
    x = float(x)
    return None if math.isnan(x) else x


def _group_labels(ids: list[str], groups: Mapping[str, str]) -> np.ndarray:
    missing = [k for k in ids if k not in groups]
    if missing:
        raise ValueError(f"{len(missing)} item(s) have no group, e.g. {missing[:5]}")
    labels = np.array([groups[k] for k in ids], dtype=object)
    if TOTAL in set(labels):
        raise ValueError(f"{TOTAL!r} is reserved for pooled figures and cannot name a group")
    return labels


def _group_order(labels: np.ndarray) -> list[str]:
    """Groups in the paper's modality order (sound, music, speech), then any others by name."""
    rank = {m: i for i, m in enumerate(MODALITIES)}
    return sorted(set(labels), key=lambda g: (rank.get(g, len(rank)), g))


def _check_normalize(normalize: str) -> None:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalize {normalize!r}; allowed: {', '.join(NORMALIZATIONS)}")


def _check_bootstrap(n_boot: int, level: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (exclusive), got {level}")
