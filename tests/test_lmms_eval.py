"""Importing lmms-eval's --log_samples JSONL of its MMAU tasks as a run, judged by the lab (not by lmms-eval's random fallback)."""
from __future__ import annotations

import json

import pytest

from annotations.db import open_db
from reliability.cli.main import main
from reliability.datasets import import_dataset
from reliability.errors import DatasetError
from reliability.lmms_eval import import_lmms_eval, prediction_records

ITEMS = [
    {"id": "q-speech", "audio_id": "a.wav", "question": "Who speaks?", "choices": ["Man", "Woman"], "answer": "Man", "task": "speech"},
    {"id": "q-sound", "audio_id": "b.wav", "question": "What rings?", "choices": ["A bell", "A phone", "A clock"], "answer": "A phone", "task": "sound"},
    {"id": "q-music", "audio_id": "c.wav", "question": "Which genre?", "choices": ["Jazz", "Rock"], "answer": "Rock", "task": "music"},
]


def logged_sample(doc_id: int, item: dict, reply: str, prediction: str) -> dict:
    """One line as lmms-eval's evaluation tracker writes it for mmau_test_mini (doc and arguments popped, resps flattened)."""
    doc = {**item, "choices": json.dumps(item["choices"]), "model_prediction": prediction}
    return {
        "doc_id": doc_id,
        "target": item["answer"],
        "filtered_resps": reply,
        "token_counts": [None],
        "doc_hash": "0" * 64,
        "input": f"{item['question']}\nA. ...\nAnswer with the option's letter from the given choices directly.",
        "accuracy": {"overall": float(prediction == item["answer"]), "task": item["task"]},
        "submission": doc,
    }


@pytest.fixture
def lab(tmp_path):
    dataset = tmp_path / "mmau.json"
    dataset.write_text(json.dumps(ITEMS))
    db = open_db(tmp_path / "lab.db")
    import_dataset(db, dataset, "mmau", keep_missing_audio=True)
    samples = tmp_path / "20260101_000000_samples_mmau_test_mini.jsonl"
    lines = [
        logged_sample(0, ITEMS[0], "A", "Man"),
        logged_sample(1, ITEMS[1], "The answer is (A)", "A bell"),
        logged_sample(2, ITEMS[2], "I don't know.", "Rock"),  # lmms-eval picked a random letter; it happened to be right
    ]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return db, samples


def test_a_samples_log_lands_as_a_run_judged_by_the_lab(lab):
    db, samples = lab
    report = import_lmms_eval(db, samples, "mmau", "qwen2-audio-lmms")
    assert (report.imported, report.format) == (3, "lmms-eval")
    rows = {r["item_id"]: r for r in db.query("SELECT item_id, text, outcome FROM answers WHERE run_id = ?", [report.run_id])}
    assert {k: (r["text"], r["outcome"]) for k, r in rows.items()} == {
        "q-speech": ("A", "correct"),
        "q-sound": ("The answer is (A)", "wrong"),
        "q-music": ("I don't know.", "idk"),
    }


def test_nested_and_unflattened_replies_are_read():
    assert prediction_records_of([{"submission": {"id": "x"}, "filtered_resps": [["B"]], "resps": [["B "]]}]) == [{"id": "x", "model_output": "B"}]


def prediction_records_of(samples: list[dict], tmp_dir=None) -> list[dict]:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(json.dumps(s) + "\n" for s in samples))
    return prediction_records(f.name)


def test_samples_without_an_mmau_id_or_reply_are_listed_and_nothing_is_imported(lab, capsys):
    db, samples = lab
    bad = samples.with_name("bad.jsonl")
    bad.write_text(json.dumps({"doc_id": 4, "filtered_resps": "A"}) + "\n" + json.dumps({"doc_id": 5, "submission": {"id": "q-sound"}, "filtered_resps": ["A", "B"]}) + "\n")
    with pytest.raises(DatasetError) as caught:
        import_lmms_eval(db, bad, "mmau", "m")
    assert [p.record for p in caught.value.problems] == [1, 2]
    assert "submission" in str(caught.value.problems[0]) and "one reply text" in str(caught.value.problems[1])
    assert db["runs"].count == 0


def test_the_cli_imports_with_format_lmms_eval(lab, tmp_path, capsys):
    db, samples = lab
    status = main(["import", "predictions", str(samples), "--format", "lmms-eval", "--dataset", "mmau", "--model", "m", "--db", str(tmp_path / "lab.db")])
    assert status == 0 and "imported 3 answers" in capsys.readouterr().out
