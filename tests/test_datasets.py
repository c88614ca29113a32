"""Importers: the real MMAU test-mini file, malformed files reported record by record, audio, HF layout, predictions."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from annotations import store
from reliability.datasets import BUNDLED, MMAU_TEST_MINI, VersionMismatchError, import_dataset, import_predictions, read_records
from reliability.errors import DatasetError
from reliability.evaluate import rejudge
from reliability.judge import JUDGE_VERSION
from reliability.methods import validate_item

MMAU = MMAU_TEST_MINI


def record(i: int, **changes) -> dict:
    """An MMAU-style record."""
    base = {
        "id": f"id-{i}",
        "audio_id": f"./test-mini-audios/id-{i}.wav",
        "question": f"What is heard in clip {i}?",
        "choices": ["a dog", "a cat", "a bird"],
        "answer": "a cat",
        "task": ["sound", "music", "speech"][i % 3],
        "difficulty": "easy",
    }
    return {k: v for k, v in {**base, **changes}.items() if v is not ...}


def write_json(tmp_path, records, name="toy.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def test_the_real_mmau_test_mini_gives_1000_items_333_334_333(db):
    report = import_dataset(db, MMAU)
    items = store.get_items(db, "mmau-test-mini")
    assert report.imported == len(items) == 1000
    assert Counter(i.modality for i in items) == {"sound": 333, "music": 334, "speech": 333}
    assert report.modalities == {"sound": 333, "music": 334, "speech": 333}
    assert not report.errors and not report.skipped
    # 27 items repeat an option; the repeat is merged so that every item can be asked
    assert len(report.warnings) == 27 and all("duplicate choices" in w.reason for w in report.warnings)
    for item in items:
        validate_item(item)
        assert item.audio_path is None  # no --audio-dir: no-audio runs only
    raw = store.stored_items(db, "mmau-test-mini", limit=1)[0].raw
    assert raw["audio_id"].startswith("./test-mini-audios/") and raw["split"] == "test-mini"


def test_a_malformed_file_is_reported_record_by_record_and_nothing_is_imported(db, tmp_path):
    path = write_json(
        tmp_path,
        [
            record(0),
            record(1, question=...),
            record(2, answer="a cow"),
            record(0, question="same id again"),
            record(4, choices=[]),
            record(5, task="noise"),
            "not an object",
            record(7, id=...),
            record(8),
        ],
    )
    with pytest.raises(DatasetError, match="7 bad record") as err:
        import_dataset(db, path)
    assert {p.record: (p.item_id, p.reason) for p in err.value.problems} == {
        2: ("id-1", "missing field 'question'"),
        3: ("id-2", "answer 'a cow' is not among the choices ['a dog', 'a cat', 'a bird']"),
        4: ("id-0", "duplicate id (first at record 1)"),
        5: ("id-4", "choices should be a non-empty list of texts, got []"),
        6: ("id-5", "task/modality 'noise' is not one of sound, music, speech"),
        7: (None, "expected an object, got str"),
        8: (None, "missing field 'id'"),
    }
    assert db["items"].count == 0 and db["datasets"].count == 0


def test_missing_audio_is_skipped_and_reported_or_kept_without_audio(db, tmp_path, make_wav, tone_wav):
    audio = tmp_path / "test-mini-audios"
    audio.mkdir()
    tone_wav.rename(audio / "id-0.wav")
    path = write_json(tmp_path, [record(0), record(1)])
    report = import_dataset(db, path, audio_dir=tmp_path)
    assert report.imported == 1 and [(p.item_id, "not found" in p.reason) for p in report.skipped] == [("id-1", True)]
    assert store.get_items(db, "toy")[0].audio_path == str(audio / "id-0.wav")
    report = import_dataset(db, path, name="kept", audio_dir=audio, keep_missing_audio=True)  # the folder itself works too
    items = {i.id: i for i in store.get_items(db, "kept")}
    assert items["id-0"].audio_path == str(audio / "id-0.wav") and items["id-1"].audio_path is None
    assert report.imported == 2 and [p.item_id for p in report.without_audio] == ["id-1"] and not report.warnings
    assert report.summary().endswith("1 without audio; 0 skipped, 0 warnings")


def test_only_missing_audio_imports_nothing_and_says_so_in_one_line(db, tmp_path):
    with pytest.raises(DatasetError, match="no item left") as error:
        import_dataset(db, write_json(tmp_path, [record(i) for i in range(5)]), audio_dir=tmp_path)
    message = str(error.value)
    assert "5 items skipped: audio file not found, e.g. " in message and message.endswith(", ...")
    assert message.count(".wav") == 3 and not error.value.problems


def test_an_audio_folder_that_does_not_exist_is_one_error(db, tmp_path):
    with pytest.raises(DatasetError, match="audio folder not found: .*nowhere"):
        import_dataset(db, MMAU, audio_dir=tmp_path / "nowhere")
    assert db["items"].count == 0


def test_hugging_face_layout_with_letter_prefixed_choices_and_answers(db, tmp_path):
    rows = [
        {
            "instruction": "Which animal is it?",
            "choices": ["(A) a dog", "(B) a cat"],
            "answer": "(B) a cat",
            "other_attributes": json.dumps({"id": "u1", "task": "sound", "difficulty": "hard"}),
        },
        {"instruction": "Tempo?", "choices": ["(A) A", "(B) B"], "answer": "B", "other_attributes": {"id": "u2", "task": "music"}},
        {"instruction": "Who?", "choices": ["(A) man", "(B) woman"], "answer": "(A)", "other_attributes": {"id": "u3", "task": "speech"}},
    ]
    path = tmp_path / "hf.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    report = import_dataset(db, path)
    assert report.format == "mmau-hf"
    items = {i.id: i for i in store.get_items(db, "hf")}
    assert items["u1"].choices == ("a dog", "a cat") and items["u1"].answer == "a cat"
    assert items["u2"].answer == "B"  # an option that is itself a letter
    assert items["u3"].answer == "man"
    assert store.stored_items(db, "hf")[0].meta == {"difficulty": "hard"}


def test_files_that_are_not_records(db, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n{not json\n')
    with pytest.raises(DatasetError, match="bad lines") as err:
        read_records(str(bad))
    assert err.value.problems[0].record == 2
    with pytest.raises(DatasetError, match="no such file"):
        import_dataset(db, tmp_path / "missing.json")
    with pytest.raises(DatasetError, match="parquet"):
        read_records(str(write_json(tmp_path, [], "x.parquet")))
    with pytest.raises(DatasetError, match="dataset name"):
        import_dataset(db, write_json(tmp_path, [record(0)]), name="no spaces please")


def test_predictions_made_elsewhere_become_a_judged_run(db, tmp_path):
    import_dataset(db, write_json(tmp_path, [record(0), record(1), record(2)]))
    path = write_json(
        tmp_path,
        [{"id": "id-0", "model_output": "a cat"}, {"id": "id-1", "model_prediction": "I don't know"}],
        "preds.json",
    )
    report = import_predictions(db, path, "toy", "qwen2-audio-7b")
    run = store.get_run(db, report.run_id)
    assert (run.backend, run.model_id, run.method, run.source) == ("external", "qwen2-audio-7b", "baseline", str(path))
    outcomes = store.run_outcomes(db, [run.id])[run.id].outcomes
    assert outcomes == {"id-0": "correct", "id-1": "idk"}
    again = import_predictions(db, path, "toy", "qwen2-audio-7b")
    assert again.run_id == run.id and db["answers"].count == 2


def test_bad_predictions_are_all_reported_and_none_imported(db, tmp_path):
    import_dataset(db, write_json(tmp_path, [record(0), record(1)]))
    path = write_json(
        tmp_path,
        [{"id": "id-0", "model_output": "a cat"}, {"id": "id-9", "model_output": "x"}, {"id": "id-1"}, {"id": "id-0", "model_output": "y"}],
        "preds.json",
    )
    with pytest.raises(DatasetError) as err:
        import_predictions(db, path, "toy", "m")
    assert [(p.record, p.reason) for p in err.value.problems] == [
        (2, "no such item in dataset 'toy'"),
        (3, "missing field 'model_output' or 'model_prediction'; name another with --field NAME"),
        (4, "duplicate id (first at record 1)"),
    ]
    assert db["runs"].count == 0 and db["answers"].count == 0


@pytest.mark.parametrize(
    "reply, choice, outcome",
    [
        ("(C)", "thirteen", "correct"),  # the third option as the model saw it, not the merged list's "five"
        ("C", "thirteen", "correct"),
        ("(D) five", "five", "wrong"),
        ("D", "five", "wrong"),
        ("B", "twenty", "wrong"),
        ("thirteen", "thirteen", "correct"),
    ],
)
def test_imported_letters_name_the_options_as_the_model_saw_them(db, tmp_path, reply, choice, outcome):
    repeated = record(0, choices=["thirteen", "twenty", "thirteen", "five"], answer="thirteen")
    import_dataset(db, write_json(tmp_path, [repeated]))
    assert store.get_items(db, "toy")[0].choices == ("thirteen", "twenty", "five")
    report = import_predictions(db, write_json(tmp_path, [{"id": "id-0", "model_output": reply}], "preds.json"), "toy", "m")
    (row,) = store.answer_rows(db, [report.run_id])
    assert (row["choice"], row["parser_outcome"]) == (choice, outcome)


def test_imported_letters_follow_the_hugging_face_record_too(db, tmp_path):
    hf = {
        "instruction": "How many beeps?", "choices": ["(A) 3", "(B) 13", "(C) 3", "(D) 8"], "answer": "(D) 8",
        "other_attributes": {"id": "hf-0", "task": "sound"},
    }
    import_dataset(db, write_json(tmp_path, [hf], "hf.json"), name="hf")
    report = import_predictions(db, write_json(tmp_path, [{"id": "hf-0", "model_output": "(D)"}], "preds.json"), "hf", "m")
    (row,) = store.answer_rows(db, [report.run_id])
    assert (row["choice"], row["parser_outcome"]) == ("8", "correct")


def test_rejudge_moves_imported_answers_to_the_current_judge_and_keeps_the_source_options(db, tmp_path):
    repeated = record(0, choices=["thirteen", "twenty", "thirteen", "five"], answer="thirteen")
    import_dataset(db, write_json(tmp_path, [repeated, record(1)]))
    preds = [{"id": "id-0", "model_output": "(C)"}, {"id": "id-1", "model_output": "N/A"}]
    run_id = import_predictions(db, write_json(tmp_path, preds, "preds.json"), "toy", "m").run_id
    # as an older judge stored them: "N/A" read as option A, "(C)" against the merged options
    db.execute("UPDATE answers SET judge_version = 'judge-1', outcome = 'wrong', choice = 'five'")
    db.execute("UPDATE runs SET judge_version = 'judge-1'")
    assert rejudge(db) == 2
    rows = {r["item_id"]: r for r in store.answer_rows(db, [run_id])}
    assert (rows["id-0"]["choice"], rows["id-0"]["parser_outcome"]) == ("thirteen", "correct")
    assert rows["id-1"]["parser_outcome"] == "idk"
    assert {r["judge_version"] for r in rows.values()} == {JUDGE_VERSION} == {store.get_run(db, run_id).judge_version}
    assert rejudge(db) == 0


def test_both_bundled_revisions_of_mmau_test_mini_differ_as_documented():
    old, new = (read_records(str(BUNDLED[name])) for name in ("mmau-test-mini-2025-03", "mmau-test-mini"))
    before, after = ({r["id"]: r for r in records} for records in (old, new))
    assert len(before) == len(after) == 1000 and len(set(before) - set(after)) == len(set(after) - set(before)) == 106

    def content(r):
        return (" ".join(r["question"].split()), r["choices"], r["answer"])

    assert sum(content(before[k]) != content(after[k]) for k in set(before) & set(after)) == 257
    assert BUNDLED["mmau-test-mini"] == MMAU_TEST_MINI


def march_predictions(tmp_path, reply=lambda r: r["answer"]):
    """A published-style predictions file made on the March 2025 questions: each record carries its question."""
    records = [{**r, "model_output": reply(r)} for r in read_records(str(BUNDLED["mmau-test-mini-2025-03"]))]
    return write_json(tmp_path, records, "published.json")


def test_predictions_made_on_the_other_revision_are_refused_in_one_line_naming_it(db, tmp_path):
    import_dataset(db, MMAU)
    with pytest.raises(VersionMismatchError) as err:
        import_predictions(db, march_predictions(tmp_path), "mmau-test-mini", "m")
    message = str(err.value)
    assert "363 of 1000 record(s) were made for other questions" in message and "'mmau-test-mini-2025-03'" in message
    assert err.value.bundled == "mmau-test-mini-2025-03" and err.value.problems == [] and "\n" not in message
    assert db["runs"].count == 0


def test_only_the_shared_ids_are_still_refused_as_their_keys_changed(db, tmp_path):
    import_dataset(db, MMAU)
    current = {r["id"] for r in read_records(str(MMAU))}
    shared = [r for r in read_records(str(march_predictions(tmp_path))) if r["id"] in current]
    with pytest.raises(VersionMismatchError, match="257 of 894 record"):
        import_predictions(db, write_json(tmp_path, shared, "shared.json"), "mmau-test-mini", "m")


def test_the_matching_revision_scores_each_reply_against_its_own_key(db, tmp_path):
    report = import_dataset(db, BUNDLED["mmau-test-mini-2025-03"])
    assert report.dataset == "mmau-test-mini-2025-03" and report.imported == 1000
    run_id = import_predictions(db, march_predictions(tmp_path), "mmau-test-mini-2025-03", "m").run_id
    outcomes = store.run_outcomes(db, [run_id])[run_id].outcomes
    assert len(outcomes) == 1000 and set(outcomes.values()) == {"correct"}


def test_ids_alone_unknown_to_every_bundled_file_are_listed_record_by_record(db, tmp_path):
    import_dataset(db, write_json(tmp_path, [record(0)]))
    with pytest.raises(DatasetError) as err:
        import_predictions(db, write_json(tmp_path, [{"id": "id-7", "model_output": "a cat"}], "preds.json"), "toy", "m")
    assert not isinstance(err.value, VersionMismatchError) and err.value.problems[0].reason == "no such item in dataset 'toy'"


def test_a_record_whose_key_differs_is_refused_even_on_a_dataset_of_ones_own(db, tmp_path):
    import_dataset(db, write_json(tmp_path, [record(0), record(1)]))
    preds = [{**record(0), "model_output": "a cat"}, {**record(1), "answer": "a dog", "model_output": "a dog"}]
    with pytest.raises(VersionMismatchError, match=r"1 of 2 record\(s\).*id id-1: its answer differs") as err:
        import_predictions(db, write_json(tmp_path, preds, "preds.json"), "toy", "m")
    assert err.value.bundled is None
    spaced = [{**record(0), "question": " What is heard in  clip 0? ", "model_output": "a cat"}]  # spacing aside
    assert import_predictions(db, write_json(tmp_path, spaced, "spaced.json"), "toy", "m").imported == 1


def test_field_names_the_reply_and_lettered_decides_a_contradicting_letter(db, tmp_path):
    import_dataset(db, write_json(tmp_path, [record(0, choices=["a dog", "a cat", "a bird"], answer="a bird")]))
    reply = "It chirps, so it is a bird. The answer is B."
    path = write_json(tmp_path, [{"id": "id-0", "response": reply}], "preds.json")
    with pytest.raises(DatasetError) as err:
        import_predictions(db, path, "toy", "m")
    assert "--field" in str(err.value.problems[0])
    unlettered = import_predictions(db, path, "toy", "m", field="response")
    lettered = import_predictions(db, path, "toy", "m2", field="response", lettered=True)
    (a,), (b,) = (store.answer_rows(db, [r.run_id]) for r in (unlettered, lettered))
    assert (a["choice"], a["parser_outcome"]) == ("a bird", "correct") and "without letters" in a["rule"]
    assert (b["choice"], b["parser_outcome"]) == ("a cat", "wrong")
    said = write_json(tmp_path, [{"id": "id-0", "response": reply, "lettered": True}], "said.json")
    (c,) = store.answer_rows(db, [import_predictions(db, said, "toy", "m3", field="response").run_id])
    assert c["choice"] == "a cat"
    # re-judging keeps each run's reading of the letters
    db.execute("UPDATE answers SET judge_version = 'judge-1'")
    assert rejudge(db) == 3
    assert {r["item_id"]: r["choice"] for r in store.answer_rows(db, [unlettered.run_id])} == {"id-0": "a bird"}
    assert {r["item_id"]: r["choice"] for r in store.answer_rows(db, [lettered.run_id])} == {"id-0": "a cat"}


def test_the_cli_refuses_another_revision_in_one_line_with_the_command_that_imports_it(tmp_path, capsys):
    import shlex

    from reliability.cli.main import main

    lab = str(tmp_path / "lab.db")
    assert main(["import", "dataset", str(MMAU), "--db", lab]) == 0
    published = str(march_predictions(tmp_path))
    capsys.readouterr()
    assert main(["import", "predictions", published, "--db", lab, "--dataset", "mmau-test-mini", "--model", "qwen2-audio"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "363 of 1000 record(s)" in err
    command = err.split("import that revision: ", 1)[1].strip()
    steps = [shlex.split(part)[1:] for part in command.split(" && ")]  # without "reliability"
    assert [s[:2] for s in steps] == [["import", "dataset"], ["import", "predictions"]]
    assert steps[1][steps[1].index("--dataset") + 1] == "mmau-test-mini-2025-03" and lab in steps[1]
    assert all(main(step) == 0 for step in steps)
    assert "imported 1000 answers into 'mmau-test-mini-2025-03'" in capsys.readouterr().out


def test_a_run_that_answers_part_of_its_dataset_says_n_of_n_in_metrics_and_on_the_dashboard(tmp_path, capsys):
    from reliability.cli.main import main
    from reliability.services import Services, Settings
    from reliability.ui.render import summary_text

    lab = str(tmp_path / "lab.db")
    assert main(["import", "dataset", str(BUNDLED["mmau-test-mini-2025-03"]), "--db", lab]) == 0
    some = read_records(str(march_predictions(tmp_path)))[:30]
    preds = str(write_json(tmp_path, some, "some.json"))
    assert main(["import", "predictions", preds, "--db", lab, "--dataset", "mmau-test-mini-2025-03", "--model", "qwen"]) == 0
    capsys.readouterr()
    assert main(["metrics", "--db", lab, "--n-boot", "20"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("note: external qwen full baseline: 30 of 1000 items answered")
    services = Services.build(Settings(lab, str(tmp_path / "data"), backend="scripted", n_boot=20))
    board = services.dashboard.metrics()
    assert "30 of 1000 items answered" in summary_text(board) and board.as_dict()["partial"] == board.partial


@pytest.mark.parametrize("name", ["mmau-test-mini", "mmau-test-mini-2025-03"])
def test_a_bundled_revision_imports_by_its_name(db, name):
    report = import_dataset(db, name)
    assert (report.dataset, report.imported, report.modalities) == (name, 1000, {"sound": 333, "music": 334, "speech": 333})


def test_the_demo_items_import_as_they_stand_with_their_clips(db):
    from reliability.paths import demo_items

    report = import_dataset(db, demo_items(), "demo", audio_dir=demo_items().parent)
    assert report.imported == 9 and not report.errors and not report.skipped
    assert all(item.audio_path and os.path.isfile(item.audio_path) for item in store.get_items(db, "demo"))
    assert {item.modality for item in store.get_items(db, "demo")} == {"sound", "music", "speech"}


def test_an_import_lists_every_missing_field_at_once_with_the_expected_fields(db, tmp_path):
    from reliability.datasets import SCHEMAS

    path = write_json(tmp_path, [{"id": "x", "question": "Which?"}, {"choices": ["a", "b"], "modality": "sound"}], "bad.json")
    with pytest.raises(DatasetError) as caught:
        import_dataset(db, path)
    reasons = [p.reason for p in caught.value.problems]
    assert reasons == ["missing fields 'choices', 'task' or 'modality'", "missing fields 'id', 'question'"]
    assert str(caught.value).endswith(f"nothing imported; each record has {SCHEMAS['mmau']}")
