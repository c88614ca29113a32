"""The store: idempotent writes, run identity, the human-over-parser outcome rule, labels and the label queue."""
from __future__ import annotations

import pytest

from annotations import store
from reliability.errors import StoreError
from reliability.types import Answer, Decoding, Item, Judgement, Outcome

BACKEND = {"backend": "scripted", "model_id": "m1", "adapter": None}
BASELINE = {"method": "baseline", "prompt_version": "p1", "adapter": None}
IDK = {"method": "idk", "prompt_version": "p1", "adapter": None}


@pytest.fixture
def dataset(db):
    """Four items over three modalities in dataset "toy", each with a clip."""
    items = [
        Item(f"q{i}", f"question {i}?", ("red", "green", "blue"), "red", modality, f"/clips/q{i}.wav", "toy")
        for i, modality in enumerate(["sound", "sound", "music", "speech"])
    ]
    store.upsert_dataset(db, "toy", [store.StoredItem(i, {"level": "easy"}, {"id": i.id}) for i in items])
    return items


def answer(item_id: str, text: str, outcome: Outcome, method: str = "baseline", parsed: bool = True) -> Answer:
    return Answer(item_id, method, text, Judgement(None, outcome, parsed, "test"), [], Decoding())


def make_run(db, method=BASELINE, outcomes=("correct", "wrong", "idk", "wrong"), **kwargs):
    run = store.get_or_create_run(db, "toy", BACKEND, method, Decoding(), judge_version="j1", **kwargs)
    answers = [answer(f"q{i}", f"reply {o}", Outcome(o), method["method"]) for i, o in enumerate(outcomes)]
    store.save_answers(db, run.id, answers, [None] * len(answers), "j1")
    return run


def test_importing_a_dataset_twice_keeps_one_row_per_item(db, dataset):
    assert store.upsert_dataset(db, "toy", [store.StoredItem(i) for i in dataset]) == 4
    assert db["items"].count == 4
    assert store.get_items(db, "toy") == dataset
    assert [s.meta for s in store.stored_items(db, "toy")] == [{}] * 4  # the re-import's meta replaced the first
    assert store.list_datasets(db)[0]["n_items"] == 4
    assert [i.id for i in store.get_items(db, "toy", modality="sound")] == ["q0", "q1"]
    assert len(store.get_items(db, "toy", limit=3)) == 3


def test_an_unknown_dataset_names_the_known_ones(db, dataset):
    with pytest.raises(StoreError, match="no dataset 'nope'.*toy"):
        store.get_items(db, "nope")


def test_items_of_another_dataset_are_refused(db, dataset):
    with pytest.raises(StoreError, match="another dataset"):
        store.upsert_dataset(db, "other", [store.StoredItem(dataset[0])])


def test_run_id_is_a_hash_of_its_identity(db, dataset):
    first = store.get_or_create_run(db, "toy", BACKEND, BASELINE, Decoding())
    assert store.get_or_create_run(db, "toy", BACKEND, BASELINE, Decoding()).id == first.id
    others = {
        store.get_or_create_run(db, "toy", BACKEND, BASELINE, Decoding(max_new_tokens=9)).id,
        store.get_or_create_run(db, "toy", BACKEND, BASELINE, Decoding(), condition="none").id,
        store.get_or_create_run(db, "toy", {**BACKEND, "model_id": "m2"}, BASELINE, Decoding()).id,
        store.get_or_create_run(db, "toy", BACKEND, {**BASELINE, "adapter": "a1"}, Decoding()).id,
        store.get_or_create_run(db, "toy", BACKEND, {**BASELINE, "prompt_version": "p2"}, Decoding()).id,
    }
    assert first.id not in others and len(others) == 5
    assert db["runs"].count == 6
    assert store.get_run(db, first.id[:6]).id == first.id


def test_a_run_of_an_unknown_dataset_is_refused(db):
    with pytest.raises(StoreError, match="import it first"):
        store.get_or_create_run(db, "nope", BACKEND, BASELINE, Decoding())


def test_get_run_by_unknown_prefix_says_so(db, dataset):
    with pytest.raises(StoreError, match="no run matches 'zzz'"):
        store.get_run(db, "zzz")


def test_saving_answers_again_replaces_never_duplicates(db, dataset):
    run = make_run(db)
    store.save_answers(db, run.id, [answer("q0", "changed", Outcome.WRONG)], ["h1"], "j1")
    assert db["answers"].count == 4
    assert store.answered(db, run.id)["q0"] == "h1"
    assert store.answered_item_ids(db, run.id) == {"q0", "q1", "q2", "q3"}
    assert store.list_runs(db)[0].n_answers == 4


def test_outcomes_come_from_the_parser_until_a_human_labels(db, dataset):
    run = make_run(db)
    result = store.run_outcomes(db, [run.id])[run.id]
    assert result.outcomes == {"q0": "correct", "q1": "wrong", "q2": "idk", "q3": "wrong"}
    assert result.source == store.PARSER
    store.add_label(db, store.content_id(run.id, "q1"), "ann", "correct")
    result = store.run_outcomes(db, [run.id])[run.id]
    assert result.outcomes["q1"] == Outcome.CORRECT and result.sources["q1"] == store.HUMAN
    assert result.sources["q0"] == store.PARSER
    assert result.source == "mixed (1 human)"
    assert store.run_outcomes(db, [run.id], human=False)[run.id].outcomes["q1"] == Outcome.WRONG


def test_relabelling_updates_the_same_row(db, dataset):
    run = make_run(db)
    answer_id = store.content_id(run.id, "q1")
    first = store.add_label(db, answer_id, "ann", "correct", note="first look")
    assert store.add_label(db, answer_id, "ann", "idk", note="listened again") == first
    assert db["labels"].count == 1
    row = store.label_rows(db)[0]
    assert (row["verdict"], row["note"], row["parser_outcome"], row["method"]) == ("idk", "listened again", "wrong", "baseline")


def test_annotators_disagreeing_resolve_by_majority_then_latest(db, dataset):
    run = make_run(db)
    answer_id = store.content_id(run.id, "q1")
    store.add_labels(db, [(answer_id, "a", "correct", ""), (answer_id, "b", "correct", ""), (answer_id, "c", "idk", "")])
    assert store.run_outcomes(db, [run.id])[run.id].outcomes["q1"] == Outcome.CORRECT
    store.add_label(db, answer_id, "b", "idk")  # now 2 idk : 1 correct
    assert store.run_outcomes(db, [run.id])[run.id].outcomes["q1"] == Outcome.IDK
    assert store.majority([("wrong", "2024-01-02"), ("correct", "2024-01-03")]) == Outcome.CORRECT
    assert store.majority([("correct", "2024-01-03"), ("wrong", "2024-01-04")]) == Outcome.WRONG


def test_one_annotators_verdicts_only(db, dataset):
    run = make_run(db)
    answer_id = store.content_id(run.id, "q1")
    store.add_labels(db, [(answer_id, "a", "correct", ""), (answer_id, "b", "correct", ""), (answer_id, "c", "idk", "")])
    assert store.run_outcomes(db, [run.id], annotator="c")[run.id].outcomes["q1"] == Outcome.IDK
    assert store.run_outcomes(db, [run.id], annotator="a")[run.id].outcomes["q1"] == Outcome.CORRECT
    result = store.run_outcomes(db, [run.id], annotator="nobody")[run.id]
    assert (result.outcomes["q1"], result.source) == (Outcome.WRONG, store.PARSER)


def test_a_verdict_stops_applying_when_the_answer_text_changes(db, dataset):
    run = make_run(db)
    store.add_label(db, store.content_id(run.id, "q1"), "ann", "correct")
    store.save_answers(db, run.id, [answer("q1", "a different reply", Outcome.WRONG)], [None], "j1")
    result = store.run_outcomes(db, [run.id])[run.id]
    assert (result.outcomes["q1"], result.sources["q1"]) == (Outcome.WRONG, store.PARSER)
    assert db["labels"].count == 1  # kept, only no longer current
    assert store.label_rows(db)[0]["current"] is False
    assert store.verdicts_by_answer(db) == {}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda db: store.add_label(db, "no-such-answer", "ann", "correct"), "no answer"),
        (lambda db: store.add_label(db, "x", "ann", "maybe"), "verdict 'maybe'"),
        (lambda db: store.add_label(db, "x", "  ", "correct"), "annotator"),
        (lambda db: store.add_human_answer(db, "toy", "q0", "ann", "purple"), "not one of the choices"),
        (lambda db: store.add_human_answer(db, "toy", "nope", "ann", "red"), "no item"),
    ],
)
def test_bad_labels_are_refused_with_the_value(db, dataset, call, message):
    with pytest.raises(StoreError, match=message):
        call(db)
    assert db["labels"].count == 0


def test_a_bad_label_in_a_batch_writes_none_of_it(db, dataset):
    run = make_run(db)
    with pytest.raises(StoreError):
        store.add_labels(db, [(store.content_id(run.id, "q0"), "ann", "correct", ""), ("nope", "ann", "wrong", "")])
    assert db["labels"].count == 0


def test_human_answers_make_the_human_baseline(db, dataset):
    store.add_human_answer(db, "toy", "q0", "ann", "red")
    store.add_human_answer(db, "toy", "q1", "ann", "green")
    store.add_human_answer(db, "toy", "q2", "ann", None)
    store.add_human_answer(db, "toy", "q2", "ann", "I don't know")  # same row again
    store.add_human_answer(db, "toy", "q0", "bob", "blue")
    assert db["labels"].count == 4
    assert store.human_baseline(db, "toy", annotator="ann") == {"q0": "correct", "q1": "wrong", "q2": "idk"}
    # q0: ann correct, bob wrong (later) -> the tie goes to the latest
    assert store.human_baseline(db, "toy")["q0"] == Outcome.WRONG


def test_a_human_answer_needs_the_items_audio(db, dataset):
    store.upsert_dataset(db, "toy", [store.StoredItem(Item("mute", "q?", ("red", "blue"), "red", "sound", None, "toy"))])
    with pytest.raises(StoreError, match="'mute' has no audio"):
        store.add_human_answer(db, "toy", "mute", "ann", "red")
    assert db["labels"].count == 0


def test_a_human_answer_after_seeing_the_key_is_refused_and_an_earlier_one_kept(db, dataset):
    run = make_run(db)
    store.add_human_answer(db, "toy", "q0", "ann", "red")  # blind: before the key
    store.add_label(db, store.content_id(run.id, "q0"), "ann", "correct")  # judging shows q0's key
    store.saw_keys(db, "ann", [("toy", "q1")], store.VIA_COMPARE)
    for item_id, via in (("q0", "judge mode"), ("q1", "the Compare tab")):
        with pytest.raises(StoreError, match=f"ann saw the answer key of item '{item_id}' in {via}"):
            store.add_human_answer(db, "toy", item_id, "ann", "blue")
    store.add_human_answer(db, "toy", "q1", "bob", "red")  # bob has not seen it
    report = store.human_baseline_report(db, "toy")
    assert report.outcomes == {"q0": "correct", "q1": "correct"} and (report.used, report.n_excluded) == (2, 0)
    assert set(store.key_views(db, "ann")) == {("toy", "q0"), ("toy", "q1")}


def test_answers_stored_before_the_rules_stay_but_leave_the_human_row(db, dataset):
    store.upsert_dataset(db, "toy", [store.StoredItem(Item("mute", "q?", ("red", "blue"), "red", "sound", "/m.wav", "toy"))])
    store.add_human_answer(db, "toy", "mute", "ann", "red")
    store.add_human_answer(db, "toy", "q2", "ann", "red")
    store.add_human_answer(db, "toy", "q3", "ann", "red")
    # as an older version let happen: the clip dropped by a re-import, the key seen before the answer
    db["items"].update(("toy", "mute"), {"audio_path": None})
    db["key_views"].insert({"dataset": "toy", "item_id": "q2", "annotator": "ann", "via": "judge mode", "seen_at": "2000-01-01"})
    report = store.human_baseline_report(db, "toy")
    assert report.outcomes == {"q3": "correct"} and report.used == 1
    assert report.excluded == {store.NOT_BLIND: 1, store.NO_AUDIO: 1}
    assert db["labels"].count == 3  # labels are never lost


def test_the_key_views_migration_finds_what_judges_saw(db, dataset):
    from annotations.migrations import m002_key_views

    run = make_run(db)
    store.add_label(db, store.content_id(run.id, "q1"), "ann", "wrong")
    db["key_views"].drop()
    m002_key_views(db)
    assert set(store.key_views(db, "ann")) == {("toy", "q1")}


def test_agreement_inputs(db, dataset):
    run = make_run(db)
    store.add_labels(
        db,
        [
            (store.content_id(run.id, "q0"), "a", "correct", ""),
            (store.content_id(run.id, "q0"), "b", "wrong", ""),
            (store.content_id(run.id, "q1"), "a", "wrong", ""),
        ],
    )
    store.add_human_answer(db, "toy", "q3", "a", "red")  # not a verdict: left out
    assert store.verdicts_by_answer(db, "toy") == {
        store.content_id(run.id, "q0"): {"a": "correct", "b": "wrong"},
        store.content_id(run.id, "q1"): {"a": "wrong"},
    }
    assert sorted(store.parser_vs_human(db)) == [("correct", "correct"), ("correct", "wrong"), ("wrong", "wrong")]


def test_label_queue_filters(db, dataset):
    base = make_run(db)
    idk = make_run(db, IDK, outcomes=("idk", "idk", "correct", "wrong"))
    store.save_answers(db, idk.id, [answer("q3", "gibberish", Outcome.WRONG, "idk", parsed=False)], [None], "j1")
    assert len(store.label_queue(db, dataset="toy")) == 8
    assert len(store.label_queue(db, limit=3)) == 3
    assert {e.method for e in store.label_queue(db, method="idk")} == {"idk"}
    assert {e.item.modality for e in store.label_queue(db, modality="sound")} == {"sound"}
    unsure = store.label_queue(db, unsure_only=True)
    assert [(e.run_id, e.item.id, e.parsed) for e in unsure] == [(idk.id, "q3", False)]
    store.add_label(db, store.content_id(base.id, "q0"), "ann", "correct")
    mine = store.label_queue(db, annotator="ann")
    assert len(mine) == 7 and store.content_id(base.id, "q0") not in {e.answer_id for e in mine}
    theirs = store.label_queue(db, annotator="other")
    assert len(theirs) == 8
    assert {e.n_labels for e in theirs if e.answer_id == store.content_id(base.id, "q0")} == {1}
    assert store.label_queue(db) == store.label_queue(db)  # a stable order


def test_answer_rows_join_run_item_and_final_outcome(db, dataset):
    run = make_run(db)
    store.add_label(db, store.content_id(run.id, "q1"), "ann", "idk")
    rows = {r["item_id"]: r for r in store.answer_rows(db, [run.id])}
    assert rows["q1"]["parser_outcome"] == "wrong" and rows["q1"]["outcome"] == "idk" and rows["q1"]["source"] == "human"
    assert rows["q0"]["choices"] == ["red", "green", "blue"] and rows["q0"]["modality"] == "sound"
    assert rows["q0"]["method"] == "baseline" and rows["q0"]["key"] == "red"


def test_audio_hashes_are_remembered_by_path(db):
    store.remember_audio_hashes(db, [("/a.wav", 10, 5, "h1"), ("/b.wav", 11, 6, "h2")])
    store.remember_audio_hashes(db, [("/a.wav", 12, 7, "h3")])
    assert store.known_audio_hashes(db, ["/a.wav", "/b.wav", "/c.wav"]) == {"/a.wav": (12, 7, "h3"), "/b.wav": (11, 6, "h2")}
