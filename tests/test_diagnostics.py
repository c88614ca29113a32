"""Text-prior diagnostics: a scripted model that answers from the part of the clip it hears lands items in every category.

The clip is 60 segments of 10 ms, segment s a pure tone of 100·(s+1) Hz, so a responder can tell
exactly which segments a request carries (one FFT bin per segment). 60 is divisible by 2, 3, 4 and
5, so every fragment boundary falls between segments.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import soundfile as sf

from annotations import store
from annotations.db import open_db
from reliability.audio import SAMPLE_RATE, from_array
from reliability.backends.scripted import ScriptedBackend
from reliability.conditions import FULL, NONE, all_conditions, apply_condition
from reliability.diagnostics.plots import category_bars, humility_bars, retention_figure
from reliability.diagnostics.measures import (
    AH,
    AUDIO_NEEDED,
    FS,
    TS,
    UN,
    XS,
    audio_needed_comparison,
    build_report,
    categorize,
    category_table,
    no_audio_humility,
    retention,
    text_prior_rate,
)
from reliability.methods import ask, get_method
from reliability.prompts import IDK_INSTRUCTION, IDK_REPLY
from reliability.types import Item, Outcome

C, W, R = Outcome.CORRECT, Outcome.WRONG, Outcome.IDK
SEGMENT = 160  # samples: 10 ms, so 100 Hz per FFT bin
SEGMENTS = 60
CHOICES = ("alpha", "beta", "gamma")
METHODS = ("baseline", "idk")


def needs(*segments):
    """Right when every one of these segments is heard; otherwise unsure."""
    return lambda heard: "right" if heard is not None and set(segments) <= heard else "unsure"


# item id -> (modality, rule, expected category). A rule maps the heard segments (None: no audio at
# all) to "right", "wrong" (confidently), "unsure" (the baseline guesses wrong, IDK prompting
# abstains) or "idk" (abstains even unprompted).
ITEMS = {
    "ts-sound": ("sound", lambda heard: "right", TS),
    "fs-sound": ("sound", needs(5), FS),  # in chunk 1 of every N
    "un-sound": ("sound", lambda heard: "unsure", UN),
    "ts-music": ("music", lambda heard: "right", TS),
    "xs-music": ("music", needs(0, SEGMENTS - 1), XS),  # first and last segment: only the whole clip has both
    "ah-music": ("music", lambda heard: "right" if heard is None else "wrong", AH),  # the audio misleads
    "fs-speech": ("speech", needs(40), FS),
    "xs-speech": ("speech", needs(10, 50), XS),  # no piece of N = 2..5 spans segments 10 to 50
    # abstaining without audio is not being right without it: still audio-needed
    "fs-speech-idk": ("speech", lambda heard: "idk" if heard is None else needs(25)(heard), FS),
}
GROUPS = {k: v[0] for k, v in ITEMS.items()}
EXPECTED = {k: v[2] for k, v in ITEMS.items()}


def segmented_samples() -> np.ndarray:
    t = np.arange(SEGMENT) / SAMPLE_RATE
    return np.concatenate([0.3 * np.sin(2 * np.pi * 100 * (s + 1) * t) for s in range(SEGMENTS)]).astype(np.float32)


def heard_segments(audio: np.ndarray | None) -> frozenset[int] | None:
    """The segments present in a request's audio (zero padding has no peak and is ignored)."""
    if audio is None:
        return None
    frames = audio[: len(audio) // SEGMENT * SEGMENT].reshape(-1, SEGMENT)
    peaks = np.abs(np.fft.rfft(frames, axis=1)).argmax(axis=1)
    return frozenset(int(p) - 1 for p in peaks if p > 0)


def respond(request) -> str:
    text = request.messages[-1]["content"]
    item_id = re.search(r"item ([\w-]+)\?", text)[1]
    verdict = ITEMS[item_id][1](heard_segments(request.audio))
    if verdict == "right":
        return CHOICES[0]
    if verdict == "idk" or (verdict == "unsure" and IDK_INSTRUCTION in text):
        return IDK_REPLY
    return CHOICES[1]


def make_items(dataset: str = "adhoc", audio_path: str | None = None) -> list[Item]:
    return [
        Item(k, f"What is heard in item {k}?", CHOICES, CHOICES[0], GROUPS[k], audio_path, dataset) for k in ITEMS
    ]


@pytest.fixture(scope="module")
def outcomes():
    """method -> condition -> item -> outcome, asked without the store."""
    backend = ScriptedBackend(responder=respond)
    clip = from_array(segmented_samples(), SAMPLE_RATE, "segments")
    items = make_items()
    result = {}
    for m in METHODS:
        for c in all_conditions():
            answers = ask(get_method(m), backend, items, [apply_condition(clip, c)] * len(items))
            result.setdefault(m, {})[c] = {a.item_id: a.outcome for a in answers}
    return result


@pytest.fixture(scope="module")
def report(outcomes):
    return build_report(outcomes, GROUPS)


def fragments_of(runs):
    return {c: run for c, run in runs.items() if c not in (FULL, NONE)}


def test_responder_hears_exactly_the_segments_of_each_fragment():
    clip = from_array(segmented_samples(), SAMPLE_RATE, "segments")
    assert heard_segments(apply_condition(clip, FULL).samples) == frozenset(range(60))
    assert heard_segments(apply_condition(clip, "n3_chunk2").samples) == frozenset(range(20, 40))
    assert heard_segments(apply_condition(clip, "n5_chunk5").samples) == frozenset(range(48, 60))


@pytest.mark.parametrize("method", METHODS)
def test_every_item_lands_in_its_category(outcomes, method):
    runs = outcomes[method]
    assert categorize(runs[FULL], runs[NONE], fragments_of(runs)) == EXPECTED


def test_text_prior_rate_per_modality_and_total(outcomes):
    runs = outcomes["baseline"]
    rates = text_prior_rate(runs[FULL], runs[NONE], GROUPS)
    assert list(rates) == ["sound", "music", "speech", "total"]
    assert (rates["sound"].acc_full, rates["sound"].acc_none, rates["sound"].rate) == (2 / 3, 1 / 3, 0.5)
    assert rates["music"].rate == 1.0  # TS right both ways, XS lost and AH won without audio
    assert rates["speech"].acc_full == 1.0 and rates["speech"].rate == 0.0
    assert rates["total"].n == 9 and rates["total"].rate == pytest.approx(3 / 7)


def test_text_prior_rate_is_none_not_nan_when_nothing_is_right_with_audio():
    rates = text_prior_rate({"a": W, "b": R, "c": C}, {"a": C, "b": W, "c": C}, {"a": "sound", "b": "sound", "c": "music"})
    assert rates["sound"].acc_full == 0.0 and rates["sound"].rate is None
    assert rates["music"].rate == 1.0
    empty = text_prior_rate({"a": C}, {"b": C}, {"a": "sound", "b": "sound"})
    assert empty == {"total": empty["total"]} and empty["total"].n == 0 and empty["total"].rate is None


def test_category_table_counts_shares_and_xs_share_of_audio_needed():
    table = category_table(EXPECTED, GROUPS)
    assert list(table) == ["sound", "music", "speech", "total"]
    total = table["total"]
    assert total.n == 9 and total.counts == {TS: 2, FS: 3, XS: 2, AH: 1, UN: 1}
    assert total.shares[FS] == pytest.approx(3 / 9) and sum(total.shares.values()) == pytest.approx(1)
    assert total.audio_needed == 5 and total.xs_share == pytest.approx(0.4)
    assert table["sound"].counts == {TS: 1, FS: 1, XS: 0, AH: 0, UN: 1} and table["sound"].xs_share == 0.0
    assert table["music"].xs_share == 1.0 and table["speech"].xs_share == pytest.approx(1 / 3)
    none_needed = category_table({"a": TS}, {"a": "sound"})
    assert none_needed["total"].audio_needed == 0 and none_needed["total"].xs_share is None


@pytest.mark.parametrize("pieces", [2, 3, 4, 5])
def test_retention_is_mean_chunk_accuracy_over_full_accuracy(outcomes, pieces):
    runs = outcomes["baseline"]
    kept = retention(runs[FULL], fragments_of(runs), GROUPS)
    assert sorted(kept) == [2, 3, 4, 5]
    # every chunk: the 2 TS items right; each of the 3 FS items right in exactly one chunk
    total = kept[pieces]["total"]
    assert total.n == 9 and total.acc_full == pytest.approx(7 / 9) and len(total.chunk_acc) == pieces
    assert sum(total.chunk_acc) * 9 == pytest.approx(2 * pieces + 3)
    assert total.retention == pytest.approx((2 * pieces + 3) / (7 * pieces))
    assert kept[pieces]["sound"].retention == pytest.approx((pieces + 1) / (2 * pieces))
    assert kept[pieces]["sound"].chunk_acc[0] == pytest.approx(2 / 3), "segment 5 is in chunk 1"


def test_retention_leaves_out_an_n_with_missing_chunks(outcomes):
    runs = outcomes["baseline"]
    partial = {c: runs[c] for c in ("n2_chunk1", "n2_chunk2", "n3_chunk1")}
    assert list(retention(runs[FULL], partial, GROUPS)) == [2]


def test_no_audio_humility_per_method(outcomes):
    humble = no_audio_humility({m: outcomes[m][FULL] for m in METHODS}, {m: outcomes[m][NONE] for m in METHODS})
    assert (humble["baseline"].rej_full, humble["baseline"].rej_none) == (0.0, pytest.approx(1 / 9))
    assert (humble["idk"].rej_full, humble["idk"].rej_none) == (pytest.approx(1 / 9), pytest.approx(6 / 9))
    only_none = no_audio_humility({}, {"idk": outcomes["idk"][NONE]})
    assert only_none["idk"].full.n == 0 and only_none["idk"].rej_full is None


def test_gains_on_all_items_and_on_text_unsolved_items(report):
    gain = report.gains["idk"]
    assert list(report.gains) == ["idk"], "the reference is not compared with itself"
    assert (gain.all_items.n, gain.all_items.lost_correct, gain.all_items.gained_humble) == (9, 0, 1)
    assert gain.all_items.delta_hum == pytest.approx(1 / 9) and gain.all_items.rgi == math.inf
    assert (gain.audio_items.n, gain.audio_items.baseline_correct, gain.audio_items.baseline_wrong) == (6, 5, 1)
    assert gain.audio_items.delta_hum == pytest.approx(1 / 6)


def test_audio_needed_comparison_removes_gains_on_text_solvable_items():
    categories = {"a": FS, "b": XS, "c": UN, "d": AH, "e": AH, "f": TS}
    baseline = {"a": C, "b": C, "c": W, "d": W, "e": W, "f": C}
    method = {"a": R, "b": C, "c": W, "d": R, "e": R, "f": C}  # humble only where the text answers anyway
    assert audio_needed_comparison(baseline, method, categories, keep=list(categories.values())).rgi == pytest.approx(math.log10(2))
    restricted = audio_needed_comparison(baseline, method, categories)
    assert (restricted.n, restricted.lost_correct, restricted.gained_humble, restricted.rgi) == (3, 1, 0, -math.inf)
    only_needed = audio_needed_comparison(baseline, method, categories, keep=AUDIO_NEEDED)
    assert only_needed.n == 2 and only_needed.baseline_wrong == 0
    with pytest.raises(ValueError, match="unknown categories"):
        audio_needed_comparison(baseline, method, categories, keep=("XX",))


def test_categorize_needs_fragments_and_skips_items_not_answered_everywhere():
    with pytest.raises(ValueError, match="at least one fragment"):
        categorize({"a": C}, {"a": W}, {})
    with pytest.raises(ValueError, match="not a fragment"):
        categorize({"a": C}, {"a": W}, {"none": {"a": W}})
    full, none = {"a": C, "b": C, "c": C}, {"a": W, "b": W, "c": W}
    assert categorize(full, none, {"n2_chunk1": {"a": W, "b": C}, "n2_chunk2": {"a": W, "b": W}}) == {"a": XS, "b": FS}


def test_report_bundles_every_figure(report):
    assert report.reference == "baseline" and report.methods == METHODS
    assert report.conditions == tuple(all_conditions())
    assert report.categories["baseline"] == EXPECTED
    assert report.text_prior["baseline"]["total"].rate == pytest.approx(3 / 7)
    assert report.category_table["idk"]["total"].counts[XS] == 2
    assert report.scores["idk"][NONE]["total"].idk == 6
    assert report.retention["baseline"][2]["total"].retention == pytest.approx(0.5)


def test_report_with_no_audio_runs_only_keeps_what_it_can(outcomes):
    report = build_report({"baseline": {NONE: outcomes["baseline"][NONE]}}, GROUPS)
    assert report.conditions == (NONE,) and report.text_prior == {} and report.categories == {} and report.retention == {}
    assert report.scores["baseline"][NONE]["total"].acc == pytest.approx(3 / 9)
    assert report.humility["baseline"].full.n == 0 and report.humility["baseline"].rej_none == pytest.approx(1 / 9)
    for fig in (category_bars(report), retention_figure(report)):
        assert fig.data == () and "No " in fig.layout.annotations[0].text
    bars = humility_bars(report)
    assert [t.name for t in bars.data] == ["with audio", "no audio"] and bars.data[0].text == ("no run",)


def test_category_bars_stack_the_shares_per_modality(report):
    fig = category_bars(report)
    assert fig.layout.barmode == "stack"
    assert [t.name.split()[0] for t in fig.data] == [TS, FS, XS, AH, UN]
    xs = fig.data[2]
    assert list(xs.x) == ["sound", "music", "speech", "total"]
    assert list(xs.y) == pytest.approx([0, 1 / 3, 1 / 3, 2 / 9]) and list(xs.text) == ["0", "1", "1", "2"]


def test_retention_figure_has_a_line_per_group(report):
    fig = retention_figure(report, "idk")
    assert [t.name for t in fig.data] == ["sound", "music", "speech", "total"]
    total = fig.data[-1]
    assert list(total.x) == [2, 3, 4, 5]
    assert list(total.y) == pytest.approx([(2 * n + 3) / (7 * n) for n in (2, 3, 4, 5)])


def test_humility_bars_group_methods(report):
    fig = humility_bars(report)
    assert fig.layout.barmode == "group" and [t.name for t in fig.data] == ["with audio", "no audio"]
    assert list(fig.data[0].x) == list(METHODS)
    assert list(fig.data[1].y) == pytest.approx([1 / 9, 6 / 9])


def test_empty_report_gives_explained_empty_figures():
    report = build_report({}, {})
    for fig in (category_bars(report), retention_figure(report), humility_bars(report)):
        assert fig.data == () and fig.layout.annotations[0].text.startswith("No ")


def test_run_diagnostics_makes_one_cached_run_per_condition(tmp_path, outcomes):
    from reliability.diagnostics.runs import load_report, run_diagnostics

    path = tmp_path / "segments.wav"
    sf.write(path, segmented_samples(), SAMPLE_RATE, subtype="FLOAT")
    db = open_db(tmp_path / "lab.db")
    items = make_items("diag", str(path))
    store.upsert_dataset(db, "diag", [store.StoredItem(item) for item in items])
    backend = ScriptedBackend(responder=respond)
    first = run_diagnostics(db, backend, items, METHODS)
    assert first.answered == 16 * 2 * 9 and first.cached == 0
    assert set(first.run_ids["idk"]) == set(all_conditions())
    assert first.report.categories == {"baseline": EXPECTED, "idk": EXPECTED}
    assert first.report.text_prior["baseline"]["total"].rate == pytest.approx(3 / 7)
    assert first.report.humility == build_report(outcomes, GROUPS).humility
    again = run_diagnostics(db, backend, items, METHODS)
    assert again.answered == 0 and again.cached == 16 * 2 * 9, "every condition is an ordinary cached run"
    stored = load_report(db, "diag")  # the latest run's backend and model
    assert stored.categories == first.report.categories and stored.retention == first.report.retention


def test_run_diagnostics_on_items_without_audio_reports_the_no_audio_figures():
    from reliability.diagnostics.runs import run_diagnostics

    db = open_db()
    items = make_items("text-only")  # like MMAU imported without its audio
    store.upsert_dataset(db, "text-only", [store.StoredItem(item) for item in items])
    diagnosis = run_diagnostics(db, ScriptedBackend(responder=respond), items, METHODS, [FULL, NONE])
    assert len(diagnosis.skipped[FULL]) == 9 and diagnosis.skipped[NONE] == []
    report = diagnosis.report
    assert report.conditions == (NONE,) and report.text_prior == {}
    assert report.scores["baseline"][NONE]["total"].acc == pytest.approx(3 / 9)
    assert report.humility["idk"].rej_none == pytest.approx(6 / 9) and report.humility["idk"].full.n == 0


def test_text_prior_tab_shows_stored_runs(tmp_path):
    from reliability.diagnostics.runs import run_diagnostics
    from reliability.ui.diagnostics_tab import DiagnosticsHandlers
    from reliability.services import Services, Settings
    from reliability.services.dashboard import HUMAN

    path = tmp_path / "segments.wav"
    sf.write(path, segmented_samples(), SAMPLE_RATE, subtype="FLOAT")
    services = Services.build(Settings(db_path=str(tmp_path / "lab.db"), data_dir=str(tmp_path / "data")))
    items = make_items("diag", str(path))
    store.upsert_dataset(services.pool.db(), "diag", [store.StoredItem(item) for item in items])
    run_diagnostics(services.pool.db(), ScriptedBackend(responder=respond), items, METHODS, [FULL, NONE, "n2_chunk1", "n2_chunk2"])
    ui = DiagnosticsHandlers(services)
    dataset, backend = ui.choices(None, None)
    assert dataset["value"] == "diag" and backend["choices"] == ["scripted"]
    method, summary, categories, retention, humility = ui.refresh("diag", None, None, HUMAN)
    assert method["value"] == "baseline" and set(method["choices"]) == set(METHODS)
    assert "R_TP" in summary and "42.9" in summary, summary  # baseline total R_TP = 3/7
    assert [t.name for t in humility.data] == ["with audio", "no audio"]
    assert list(humility.data[1].y) == pytest.approx([1 / 9, 6 / 9])  # baseline, idk abstain without audio
