"""Exports and metric tables: answers/labels CSV and JSONL, MMAU submission format, the metrics table and its figures."""
from __future__ import annotations

import csv
import json
import math

import pytest

from annotations import store
from annotations.db import open_db
from reliability import exports, report
from reliability.datasets import import_dataset
from reliability.errors import ReliabilityError
from reliability.report import metrics_table
from reliability.tables import format_table
from reliability.types import Answer, Decoding, Judgement, Outcome

RECORDS = [
    {"id": f"id-{i}", "audio_id": f"./a/id-{i}.wav", "question": f"Q{i}?", "choices": ["x", "y"], "answer": "x",
     "task": ["sound", "music"][i % 2], "category": "Reasoning"}
    for i in range(4)
]


@pytest.fixture
def db(db, tmp_path):
    """conftest's empty lab database with RECORDS imported as dataset "toy"."""
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(RECORDS))
    import_dataset(db, path)
    return db


def add_run(db, method: str, texts: list[str]) -> str:
    run = store.get_or_create_run(db, "toy", {"backend": "scripted", "model_id": "m"}, {"method": method}, Decoding())
    answers = [
        Answer(f"id-{i}", method, text, Judgement("x", Outcome.CORRECT if text == "x" else Outcome.WRONG, True, "t"), [], Decoding(), 0.8)
        for i, text in enumerate(texts)
    ]
    store.save_answers(db, run.id, answers, [None] * len(answers), "j")
    return run.id


def paper_sound_outcomes() -> tuple[dict[str, Outcome], dict[str, Outcome]]:
    """Baseline and IDK-prompting outcomes with the published sound counts (docs/METRICS.md section 3):
    baseline 203 correct / 130 wrong; IDK 194 correct, 60 idk; lost-correct 36, gained-humble 67."""
    c, w, r = Outcome.CORRECT, Outcome.WRONG, Outcome.IDK
    pairs = [(c, c)] * 167 + [(c, r)] * 20 + [(c, w)] * 16 + [(w, c)] * 27 + [(w, r)] * 40 + [(w, w)] * 63
    baseline = {f"s{i}": b for i, (b, _) in enumerate(pairs)}
    idk = {f"s{i}": m for i, (_, m) in enumerate(pairs)}
    return baseline, idk


def test_metrics_table_reproduces_the_published_sound_figures():
    baseline, idk = paper_sound_outcomes()
    groups = {k: "sound" for k in baseline}
    rows = metrics_table({"baseline": baseline, "idk": idk}, groups, n_boot=200, sources={"idk": "parser"})
    by = {(r["method"], r["group"]): r for r in rows}
    assert set(by) == {("baseline", "sound"), ("baseline", "total"), ("idk", "sound"), ("idk", "total")}
    assert by["baseline", "sound"]["acc"] == pytest.approx(0.6096, abs=1e-4)
    assert by["baseline", "sound"]["delta_con"] is None and by["baseline", "sound"]["rgi_label"] == ""
    row = by["idk", "sound"]
    assert (row["n"], row["correct"], row["idk"]) == (333, 194, 60)
    assert row["acc"] == pytest.approx(0.5826, abs=1e-4)
    assert row["rel"] == pytest.approx(0.7303, abs=1e-4)
    assert row["delta_con"] == pytest.approx(36 / 333) and row["delta_hum"] == pytest.approx(67 / 333)
    assert row["rgi"] == pytest.approx(math.log10(67 / 36)) and row["rgi_label"] == "0.27"
    assert row["rel_low"] < row["rel"] < row["rel_high"] and row["rgi_low"] < row["rgi"] < row["rgi_high"]
    assert row["source"] == "parser" and by["baseline", "sound"]["source"] == ""
    text = format_table(rows)
    assert "73.0 [" in text and "0.27 [" in text


def test_metrics_table_pairs_by_item_and_labels_edges():
    c, w, r = Outcome.CORRECT, Outcome.WRONG, Outcome.IDK
    baseline = {"a": c, "b": w, "c": c}
    rows = metrics_table(
        {"baseline": baseline, "humble": {"a": c, "b": r, "extra": w}, "same": dict(baseline)},
        {"a": "speech", "b": "sound", "c": "music"},
        n_boot=50,
    )
    by = {(row["method"], row["group"]): row for row in rows}
    assert by["humble", "total"]["n"] == 2  # "c" was not answered, "extra" has no baseline answer
    assert by["humble", "total"]["rgi"] == math.inf and by["humble", "total"]["rgi_label"].startswith("+inf")
    assert by["same", "total"]["rgi"] is None and by["same", "total"]["rgi_label"].startswith("undefined")
    assert [row["group"] for row in rows if row["method"] == "baseline"] == ["sound", "music", "speech", "total"]
    assert metrics_table({"human": baseline}, {}, baseline=None, n_boot=10)[0]["group"] == "unknown"


def test_answers_and_labels_export_as_csv_and_jsonl(db, tmp_path):
    run_id = add_run(db, "baseline", ["x", "y", "x", "y"])
    store.add_label(db, store.content_id(run_id, "id-1"), "ann", "idk", note="hedged, in fact")
    assert exports.export_answers(db, tmp_path / "a.jsonl", [run_id], "jsonl") == 4
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["item_id"] for r in rows] == ["id-0", "id-1", "id-2", "id-3"]
    assert (rows[1]["parser_outcome"], rows[1]["outcome"], rows[1]["source"]) == ("wrong", "idk", "human")
    assert rows[0]["choices"] == ["x", "y"] and rows[0]["confidence"] == 0.8
    assert exports.export_answers(db, tmp_path / "a.csv", [run_id]) == 4
    with open(tmp_path / "a.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert table[1]["outcome"] == "idk" and json.loads(table[0]["choices"]) == ["x", "y"]
    assert exports.export_labels(db, tmp_path / "l.csv", "toy") == 1
    with open(tmp_path / "l.csv", newline="") as f:
        label = next(csv.DictReader(f))
    assert (label["annotator"], label["verdict"], label["note"], label["method"]) == ("ann", "idk", "hedged, in fact", "baseline")


def test_a_run_exports_in_mmau_submission_format(db, tmp_path):
    run_id = add_run(db, "baseline", ["x", "the answer is y"])
    assert exports.export_submission(db, tmp_path / "sub.json", run_id[:6]) == 2
    records = json.loads((tmp_path / "sub.json").read_text())
    assert records[0] == {**RECORDS[0], "condition": "full", "model_output": "x", "model_prediction": "x"}  # the original record, plus
    assert records[1]["model_output"] == "the answer is y"


def test_the_metrics_table_exports_as_json_and_csv(db, tmp_path):
    add_run(db, "baseline", ["x", "x", "y", "y"])
    add_run(db, "idk", ["x", "y", "y", "y"])
    db["items"].update(("toy", "id-0"), {"audio_path": "/clips/id-0.wav"})  # a human answer needs the clip
    store.add_human_answer(db, "toy", "id-0", "ann", "x")
    rows = report.metrics_rows(db, "toy", n_boot=50)
    assert {(r["method"], r["group"]) for r in rows} >= {("baseline", "total"), ("idk", "music"), ("human", "total")}
    assert {r["model"] for r in rows} == {"m", "-"}
    human = next(r for r in rows if r["method"] == "human" and r["group"] == "total")
    assert (human["n"], human["acc"], human["source"]) == (1, 1.0, "human")
    assert exports.export_table(rows, tmp_path / "m.json") == len(rows)
    written = json.loads((tmp_path / "m.json").read_text())  # strict JSON: ±inf become text
    assert [(r["method"], r["group"]) for r in written] == [(r["method"], r["group"]) for r in rows]
    assert {r["rgi"] for r in written if r["rgi_label"].startswith("-inf")} == {"-inf"}
    inf_row = [{"method": "x", "rgi": math.inf, "rgi_low": -math.inf}]
    exports.export_table(inf_row, tmp_path / "inf.csv", "csv")
    assert (tmp_path / "inf.csv").read_text().splitlines()[1] == "x,inf,-inf"
    exports.export_table(inf_row, tmp_path / "inf.json")
    assert json.loads((tmp_path / "inf.json").read_text()) == [{"method": "x", "rgi": "inf", "rgi_low": "-inf"}]


def test_export_errors_are_clear(db, tmp_path):
    with pytest.raises(ReliabilityError, match="unknown export format 'xml'"):
        exports.export_table([], tmp_path / "m.xml", "xml")
    with pytest.raises(ReliabilityError, match="cannot write"):
        exports.export_labels(db, tmp_path / "missing" / "l.csv")
    with pytest.raises(ReliabilityError, match="no runs of dataset 'toy'"):
        report.metrics_rows(db, "toy")


def test_metrics_rows_add_mmau_accuracy_and_leave_keyless_items_out(tmp_path):
    db = open_db(":memory:")
    path = tmp_path / "toy.json"
    path.write_text(json.dumps(RECORDS + [{**RECORDS[0], "id": "id-4", "answer": None}]))
    import_dataset(db, path)
    run_id = add_run(db, "baseline", ["x", "I think x", "y", "x", "x"])
    total = next(r for r in report.metrics_rows(db, "toy", n_boot=50) if r["group"] == "total")
    assert (total["n"], total["correct"], total["left_out"]) == (4, 2, 1)
    assert total["mmau_acc"] == 0.75 and total["mmau_n"] == 4  # MMAU's scorer reads "I think x" as x
    assert total["mmau_acc_low"] <= 0.75 <= total["mmau_acc_high"]
    store.add_label(db, store.content_id(run_id, "id-4"), "ann", "correct")
    total = next(r for r in report.metrics_rows(db, "toy", n_boot=50) if r["group"] == "total")
    assert (total["n"], total["correct"], total["left_out"]) == (5, 3, 0)  # a person judged the keyless item
    assert total["mmau_n"] == 4  # MMAU cannot score an item without a key


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_escaped(tmp_path):
    rows = [{"note": "=HYPERLINK(\"http://x\")", "a": "+1+1", "b": "@SUM(A1)", "c": "-2+3", "d": "-0.5", "e": "plain", "f": 3, "g": ["=x"]}]
    path = tmp_path / "rows.csv"
    exports.write_rows(rows, path, "csv", exports.ROW_FORMATS)
    (row,) = list(csv.DictReader(path.open()))
    assert row == {"note": "'=HYPERLINK(\"http://x\")", "a": "'+1+1", "b": "'@SUM(A1)", "c": "'-2+3", "d": "-0.5", "e": "plain", "f": "3", "g": '["=x"]'}
    exports.write_rows(rows, tmp_path / "rows.jsonl", "jsonl", exports.ROW_FORMATS)  # JSON lines are data, kept as given
    assert json.loads((tmp_path / "rows.jsonl").read_text())["note"] == rows[0]["note"]
