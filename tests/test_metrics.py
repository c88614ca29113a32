"""Metrics: the published MMAU test-mini figures rebuilt from whole counts, edge cases, intervals, quadrants, AURC."""
from __future__ import annotations

import math

import numpy as np
import pytest

from reliability.metrics import (
    by_group,
    bootstrap,
    compare,
    compare_by_group,
    quadrants,
    rgi_label,
    risk_coverage,
    score,
    score_interval,
    transitions,
)
from reliability.types import Outcome

C, W, R = Outcome.CORRECT, Outcome.WRONG, Outcome.IDK
TOL = 0.005  # published figures are percent to two decimals

ITEMS = {"sound": 333, "music": 334, "speech": 333}
BASELINE_CORRECT = {"sound": 203, "music": 184, "speech": 169}  # no refusals

# docs/METRICS.md section 3, Qwen2-Audio-7B-Instruct on MMAU test-mini, percent: modality -> (Acc, Rel), and total Rel.
PUBLISHED = {
    "baseline": {"sound": (60.96, 60.96), "music": (55.09, 55.09), "speech": (50.75, 50.75), "total": 55.60},
    "idk": {"sound": (58.26, 73.03), "music": (54.19, 65.19), "speech": (43.84, 56.18), "total": 64.85},
    "mcot": {"sound": (57.96, 67.13), "music": (51.50, 67.53), "speech": (44.74, 57.71), "total": 64.29},
    "agent": {"sound": (58.56, 70.68), "music": (53.29, 68.22), "speech": (46.25, 57.93), "total": 65.66},
}
# published RGI (log10(ΔHum / ΔCon), D = N) per modality and pooled over all 1000 items
PUBLISHED_RGI = {
    "idk": {"sound": 0.27, "music": 0.20, "speech": 0.02, "total": 0.16},
    "mcot": {"sound": 0.09, "music": 0.25, "speech": 0.09, "total": 0.15},
    "agent": {"sound": 0.24, "music": 0.27, "speech": 0.17, "total": 0.23},
}

# (method, modality) -> (correct, idk, lost_correct, gained_humble).
# correct and idk follow from the published Acc and Rel alone (Rel = Acc + Rej(1 - Rej) with no other
# solution; test_published_rates_pin_down_the_counts checks that they are the only ones).
# lost/gained for sound are published (ΔCon, ΔHum). For music and speech only RGI is: many splits
# fit, so we use the one with the fewest changed answers (smallest total lost + gained) whose
# per-modality RGIs and pooled RGI all round to the published figures; the tests check every one.
COUNTS = {
    ("idk", "sound"): (194, 60, 36, 67),
    ("idk", "music"): (181, 42, 25, 40),
    ("idk", "speech"): (146, 48, 43, 45),
    ("mcot", "sound"): (193, 34, 39, 48),
    ("mcot", "music"): (172, 67, 31, 55),
    ("mcot", "speech"): (149, 51, 25, 31),
    ("agent", "sound"): (195, 47, 32, 55),
    ("agent", "music"): (178, 61, 30, 56),
    ("agent", "speech"): (154, 45, 21, 31),
}
METHODS = ("idk", "mcot", "agent")


def paired(modality: str, correct: int, idk: int, lost: int, gained: int) -> tuple[dict, dict]:
    """Baseline and method outcomes over one modality's items with the given counts."""
    n, base_c = ITEMS[modality], BASELINE_CORRECT[modality]
    base_w = n - base_c
    fixed = correct - base_c + lost  # baseline-wrong items the method gets right
    admitted = gained - fixed  # baseline-wrong items the method answers idk
    lost_idk = idk - admitted  # baseline-correct items the method answers idk
    lost_wrong = lost - lost_idk
    assert min(fixed, admitted, lost_idk, lost_wrong) >= 0, (modality, correct, idk, lost, gained)
    base = [C] * base_c + [W] * base_w
    meth = [C] * (base_c - lost) + [R] * lost_idk + [W] * lost_wrong + [C] * fixed + [R] * admitted + [W] * (base_w - gained)
    ids = [f"{modality}-{i:03d}" for i in range(n)]
    return dict(zip(ids, base)), dict(zip(ids, meth))


def runs(method: str) -> tuple[dict, dict, dict]:
    """Baseline and method outcomes over all 1000 items, and each item's modality."""
    baseline, answers, groups = {}, {}, {}
    for modality in ITEMS:
        b, m = paired(modality, *COUNTS[method, modality])
        baseline |= b
        answers |= m
        groups |= dict.fromkeys(b, modality)
    return baseline, answers, groups


@pytest.mark.parametrize("method, modality", list(COUNTS))
def test_published_rates_pin_down_the_counts(method, modality):
    n = ITEMS[modality]
    acc_pub, rel_pub = PUBLISHED[method][modality]
    c, r = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    acc, rej = c / n, r / n
    rel = rej * acc + (1 - rej) * (acc + rej)
    fits = (c + r <= n) & (np.abs(100 * acc - acc_pub) <= TOL) & (np.abs(100 * rel - rel_pub) <= TOL)
    assert list(zip(c[fits], r[fits])) == [COUNTS[method, modality][:2]]


def test_baseline_row():
    baseline, _, groups = runs("idk")
    scores = by_group(baseline, groups)
    for modality in ITEMS:
        acc, rel = PUBLISHED["baseline"][modality]
        assert 100 * scores[modality].acc == pytest.approx(acc, abs=TOL)
        assert 100 * scores[modality].rel == pytest.approx(rel, abs=TOL)
        assert scores[modality].idk == 0
    assert 100 * scores["total"].rel == pytest.approx(PUBLISHED["baseline"]["total"], abs=TOL)


@pytest.mark.parametrize("method", METHODS)
def test_method_rows(method):
    _, answers, groups = runs(method)
    scores = by_group(answers, groups)
    assert list(scores) == ["sound", "music", "speech", "total"]
    for modality in ITEMS:
        acc, rel = PUBLISHED[method][modality]
        assert 100 * scores[modality].acc == pytest.approx(acc, abs=TOL)
        assert 100 * scores[modality].rel == pytest.approx(rel, abs=TOL)
    assert 100 * scores["total"].rel == pytest.approx(PUBLISHED[method]["total"], abs=TOL)
    # the published total pools items; a mean of the modalities' Rel would miss it
    mean_rel = np.mean([PUBLISHED[method][m][1] for m in ITEMS])
    assert abs(mean_rel - PUBLISHED[method]["total"]) > TOL


def test_sound_idk_deltas():
    cmp = compare(*paired("sound", *COUNTS["idk", "sound"]))
    assert (cmp.n, cmp.baseline_correct, cmp.baseline_wrong) == (333, 203, 130)
    assert (cmp.lost_correct, cmp.gained_humble) == (36, 67)
    assert 100 * cmp.delta_con == pytest.approx(10.81, abs=TOL)
    assert 100 * cmp.delta_hum == pytest.approx(20.12, abs=TOL)
    assert cmp.rgi_label == "0.27"


@pytest.mark.parametrize("method, modality", list(COUNTS))
def test_published_rgi_per_modality(method, modality):
    cmp = compare(*paired(modality, *COUNTS[method, modality]))
    assert cmp.rgi == pytest.approx(PUBLISHED_RGI[method][modality], abs=TOL)
    assert cmp.rgi_label == f"{PUBLISHED_RGI[method][modality]:.2f}"
    assert (cmp.lost_correct, cmp.gained_humble) == COUNTS[method, modality][2:]
    n = ITEMS[modality]
    assert (cmp.delta_con, cmp.delta_hum) == (COUNTS[method, modality][2] / n, COUNTS[method, modality][3] / n)


@pytest.mark.parametrize("method", METHODS)
def test_total_rgi_pools_items(method):
    baseline, answers, groups = runs(method)
    table = compare_by_group(baseline, answers, groups)
    total = table["total"]
    assert total.n == 1000
    assert total.lost_correct == sum(table[m].lost_correct for m in ITEMS)
    assert total.rgi == pytest.approx(PUBLISHED_RGI[method]["total"], abs=TOL)
    assert total.rgi == pytest.approx(math.log10(total.gained_humble / total.lost_correct))


def test_group_normalisation():
    baseline, answers = paired("sound", *COUNTS["idk", "sound"])
    cmp = compare(baseline, answers, normalize="group")
    assert cmp.normalize == "group"
    assert cmp.delta_con == pytest.approx(36 / 203)
    assert cmp.delta_hum == pytest.approx(67 / 130)
    assert cmp.rgi == pytest.approx(math.log10((67 / 130) / (36 / 203)))
    # the published 0.27 needs D = N (docs/METRICS.md section 3)
    assert round(cmp.rgi, 2) != 0.27


def test_unknown_normalize_lists_allowed_values():
    with pytest.raises(ValueError, match="allowed: total, group"):
        compare({"a": C}, {"a": C}, normalize="items")
    with pytest.raises(ValueError, match="allowed: total, group"):
        bootstrap({"a": C}, {"a": C}, normalize="N")


@pytest.mark.parametrize(
    "baseline, method, rgi, label",
    [
        ({"a": C, "b": W}, {"a": C, "b": R}, math.inf, "+inf (no conservatism)"),
        ({"a": C, "b": W}, {"a": R, "b": W}, -math.inf, "-inf (no humility)"),
        ({"a": C, "b": W}, {"a": C, "b": W}, None, "undefined (no change)"),
        ({}, {}, None, "undefined (no paired items)"),
        ({"a": C}, {"b": C}, None, "undefined (no paired items)"),
    ],
)
def test_rgi_edges(baseline, method, rgi, label):
    cmp = compare(baseline, method)
    assert cmp.rgi == rgi
    assert cmp.rgi_label == label


def test_empty_set_under_total_normalisation_has_no_deltas():
    cmp = compare({}, {})
    assert (cmp.n, cmp.delta_con, cmp.delta_hum) == (0, None, None)


def test_group_normalisation_with_an_empty_group():
    # every baseline answer right: N_w = 0, so ΔHum (and RGI) is undefined under "group"
    cmp = compare({"a": C, "b": C}, {"a": R, "b": C}, normalize="group")
    assert cmp.delta_con == 0.5
    assert cmp.delta_hum is None and cmp.rgi is None
    assert cmp.rgi_label == "undefined (no baseline-wrong items)"
    cmp = compare({"a": W}, {"a": R}, normalize="group")
    assert cmp.delta_hum == 1.0 and cmp.delta_con is None
    assert cmp.rgi_label == "undefined (no baseline-correct items)"


def test_rgi_label_formats_finite_values():
    assert rgi_label(-0.1234) == "-0.12"
    assert rgi_label(0.0) == "0.00"


def test_compare_pairs_on_common_ids_only():
    cmp = compare({"a": C, "b": W, "only-baseline": C}, {"b": R, "a": C, "only-method": W})
    assert (cmp.n, cmp.lost_correct, cmp.gained_humble) == (2, 0, 1)


def test_score_counts_and_rates():
    s = score([C, "wrong", "idk", "correct"])
    assert (s.n, s.correct, s.wrong, s.idk) == (4, 2, 1, 1)
    assert (s.acc, s.tru, s.rej) == (0.5, 0.75, 0.25)
    assert s.rel == pytest.approx(0.25 * 0.5 + 0.75 * 0.75)
    assert score({"x": C, "y": W}) == score(["correct", "wrong"])


def test_score_without_refusals_has_rel_equal_acc():
    s = score([C, C, W])
    assert s.rel == s.acc == pytest.approx(2 / 3)


def test_empty_score_is_undefined_not_nan():
    s = score([])
    assert (s.n, s.acc, s.tru, s.rej, s.rel) == (0, None, None, None, None)


def test_strings_and_enums_agree():
    baseline, answers = paired("sound", *COUNTS["mcot", "sound"])
    as_str = {k: v.value for k, v in answers.items()}
    assert score(as_str.values()) == score(answers.values())
    assert compare(baseline, as_str) == compare(baseline, answers)


def test_unknown_outcome_names_the_value():
    with pytest.raises(ValueError, match="unknown outcome 'maybe'"):
        score([C, "maybe"])
    with pytest.raises(ValueError, match="unknown outcome None"):
        compare({"a": C}, {"a": None})


def test_by_group_pools_the_total():
    outcomes = {"s1": C, "s2": C, "s3": W, "m1": W}
    groups = {"s1": "sound", "s2": "sound", "s3": "sound", "m1": "music"}
    table = by_group(outcomes, groups)
    assert list(table) == ["sound", "music", "total"]
    assert table["total"].acc == 0.5  # pooled; the mean of groups would be (2/3 + 0) / 2
    assert table["music"].acc == 0.0


def test_by_group_refuses_items_without_group_and_a_group_named_total():
    with pytest.raises(ValueError, match="have no group"):
        by_group({"a": C, "b": C}, {"a": "sound"})
    with pytest.raises(ValueError, match="reserved"):
        by_group({"a": C}, {"a": "total"})


def test_compare_by_group_with_group_normalisation():
    baseline, answers, groups = runs("idk")
    table = compare_by_group(baseline, answers, groups, normalize="group")
    assert table["sound"].delta_con == pytest.approx(36 / 203)
    assert table["total"].delta_con == pytest.approx((36 + 25 + 43) / 556)
    assert table["total"].delta_hum == pytest.approx((67 + 40 + 45) / 444)


def test_bootstrap_is_seeded_and_contains_the_estimate():
    baseline, answers = paired("sound", *COUNTS["idk", "sound"])
    a = bootstrap(baseline, answers, n_boot=500, seed=7)
    assert a == bootstrap(baseline, answers, n_boot=500, seed=7)
    assert a != bootstrap(baseline, answers, n_boot=500, seed=8)
    assert (a.n, a.n_boot, a.level) == (333, 500, 0.95)
    point = score(answers)
    assert a.acc.estimate == point.acc and a.rel.estimate == point.rel
    assert a.rgi.estimate == compare(baseline, answers).rgi
    for name in ("acc", "tru", "rej", "rel", "delta_con", "delta_hum", "rgi"):
        iv = getattr(a, name)
        assert iv.low <= iv.estimate <= iv.high, (name, iv)
        assert iv.dropped == 0, (name, iv)


def test_bootstrap_matches_explicit_index_resampling():
    # the multinomial draw of category counts must be the same bootstrap as resampling item indices
    baseline, answers = paired("sound", *COUNTS["idk", "sound"])
    ours = bootstrap(baseline, answers, n_boot=4000, seed=1)
    ids = list(baseline)
    b = np.array([baseline[k] == C for k in ids])
    m_c = np.array([answers[k] == C for k in ids])
    m_w = np.array([answers[k] == W for k in ids])
    idx = np.random.default_rng(2).integers(0, len(ids), size=(4000, len(ids)))
    acc = m_c[idx].mean(axis=1)
    rgi = np.log10((~b & ~m_w)[idx].sum(axis=1) / (b & ~m_c)[idx].sum(axis=1))
    for iv, samples in ((ours.acc, acc), (ours.rgi, rgi)):
        low, high = np.quantile(samples, [0.025, 0.975])
        assert iv.low == pytest.approx(low, abs=0.01) and iv.high == pytest.approx(high, abs=0.01)


def test_bootstrap_reports_dropped_rgi_resamples():
    # one lost-correct item among 20: resamples that miss it have ΔCon = 0 and RGI = +inf
    baseline = {f"i{i}": (C if i < 10 else W) for i in range(20)}
    answers = dict(baseline, i0=W, i10=R, i11=R, i12=C)
    iv = bootstrap(baseline, answers, n_boot=1000, seed=0).rgi
    # P(missing the one item in 20 draws) = (19/20)^20 ≈ 0.36
    assert 250 < iv.dropped < 470
    assert math.isfinite(iv.low) and math.isfinite(iv.high)


def test_bootstrap_of_nothing_is_undefined():
    iv = bootstrap({}, {}, n_boot=50)
    assert iv.n == 0
    assert (iv.acc.estimate, iv.acc.low, iv.acc.high, iv.acc.dropped) == (None, None, None, 50)
    assert iv.rgi.low is None


@pytest.mark.parametrize("kwargs", [{"n_boot": 0}, {"level": 1.0}, {"level": 0}])
def test_bootstrap_arguments_are_checked(kwargs):
    with pytest.raises(ValueError):
        bootstrap({"a": C}, {"a": C}, **kwargs)
    with pytest.raises(ValueError):
        score_interval([C], **kwargs)


def test_score_interval():
    outcomes = [C] * 287 + [W] * 46  # a human-like sound score, no refusals
    a = score_interval(outcomes, n_boot=800, seed=3)
    assert a == score_interval(outcomes, n_boot=800, seed=3)
    assert a.n == 333
    assert a.acc.low < a.acc.estimate == 287 / 333 < a.acc.high
    assert a.acc.high - a.acc.low == pytest.approx(2 * 1.96 * math.sqrt(0.862 * 0.138 / 333), abs=0.01)
    assert (a.rej.low, a.rej.high) == (0.0, 0.0)
    assert score_interval([]).acc.low is None


def test_quadrants_of_sound_idk():
    baseline, answers = paired("sound", *COUNTS["idk", "sound"])
    q = quadrants(baseline, answers)
    assert q == {
        "known_kept": 167,
        "known_lost_to_idk": 20,
        "known_lost_to_wrong": 16,
        "unknown_admitted": 40,
        "unknown_fixed": 27,
        "unknown_kept_wrong": 63,
        "baseline_idk_now_correct": 0,
        "baseline_idk_now_wrong": 0,
        "baseline_idk_kept": 0,
    }
    cmp = compare(baseline, answers)
    assert q["known_lost_to_idk"] + q["known_lost_to_wrong"] == cmp.lost_correct
    assert q["unknown_admitted"] + q["unknown_fixed"] == cmp.gained_humble


def test_transitions_table():
    baseline = {"a": C, "b": C, "c": W, "d": R, "e": R, "x": C}
    method = {"a": R, "b": C, "c": C, "d": W, "e": R, "y": W}
    t = transitions(baseline, method)
    assert t == {
        "correct": {"correct": 1, "wrong": 0, "idk": 1},
        "wrong": {"correct": 1, "wrong": 0, "idk": 0},
        "idk": {"correct": 0, "wrong": 1, "idk": 1},
    }
    q = quadrants(baseline, method)
    assert (q["baseline_idk_now_wrong"], q["baseline_idk_kept"], q["unknown_fixed"]) == (1, 1, 1)


def test_risk_coverage_hand_worked():
    # ranked 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong): risks 0, 1/2, 1/3, 2/4
    rc = risk_coverage([0.7, 0.9, 0.6, 0.8], [True, True, False, False])
    assert rc.coverage == [0.25, 0.5, 0.75, 1.0]
    assert rc.risk == pytest.approx([0, 1 / 2, 1 / 3, 1 / 2])
    assert rc.aurc == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 2) / 4)


def test_risk_coverage_ties_keep_input_order():
    assert risk_coverage([0.5, 0.5], [False, True]).risk == [1.0, 0.5]
    assert risk_coverage([0.5, 0.5], [True, False]).risk == [0.0, 0.5]


def test_risk_coverage_edges():
    assert risk_coverage([], []).aurc is None
    assert risk_coverage([0.3, 0.2], [True, True]).aurc == 0.0
    with pytest.raises(ValueError, match="equal length"):
        risk_coverage([0.3, 0.2], [True])
    with pytest.raises(ValueError, match="NaN"):
        risk_coverage([0.3, float("nan")], [True, False])
