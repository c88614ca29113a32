"""The metrics report: one declared column list drives the CLI table, the exports and the dashboard table."""
from __future__ import annotations

import csv
import html
import dataclasses
import json

import pytest

from annotations import store
from annotations.db import open_db
from reliability import metrics, report
from reliability.ui import render as ui_render
from reliability.cli.main import main
from reliability.datasets import import_dataset
from reliability.services import Services, Settings
from reliability.services.dashboard import Dashboard, DashboardFilters
from reliability.types import Answer, Decoding, Judgement, Outcome

RECORDS = [
    {"id": f"id-{i}", "audio_id": f"./a/id-{i}.wav", "question": f"Q{i}?", "choices": ["x", "y"], "answer": "x",
     "task": ["sound", "music"][i % 2], "category": "Reasoning"}
    for i in range(6)
]


@pytest.fixture
def db_path(tmp_path):
    path = tmp_path / "lab.db"
    db = open_db(str(path))
    (tmp_path / "toy.json").write_text(json.dumps(RECORDS))
    import_dataset(db, tmp_path / "toy.json")
    for method, texts in (("baseline", "xxyyxy"), ("idk", "xyyyxx")):
        run = store.get_or_create_run(db, "toy", {"backend": "scripted", "model_id": "m"}, {"method": method}, Decoding())
        answers = [
            Answer(f"id-{i}", method, t, Judgement("x", Outcome.CORRECT if t == "x" else Outcome.WRONG, True, "t"), [], Decoding(), 0.5)
            for i, t in enumerate(texts)
        ]
        store.save_answers(db, run.id, answers, [None] * len(answers), "j")
    db.conn.close()
    return str(path)


def test_the_column_list_drives_the_cli_table_the_exports_and_the_dashboard(db_path, tmp_path, capsys):
    labels = [c.label for c in report.COLUMNS]
    assert main(["metrics", "--db", db_path, "--n-boot", "20"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert all(label in header for label in labels)
    assert main(["export", "metrics", "--db", db_path, "--n-boot", "20", "--format", "csv", "--output", str(tmp_path / "m.csv")]) == 0
    with open(tmp_path / "m.csv", newline="") as f:
        fields = next(csv.reader(f))
    # the files carry every column under its key, with its interval bounds where it is a figure
    assert {c.key for c in report.COLUMNS} <= set(fields)
    assert {f"{c.key}_{end}" for c in report.COLUMNS if c.stat for end in ("low", "high")} <= set(fields)
    rows = report.metrics_rows(open_db(db_path), "toy", n_boot=20)
    board = Dashboard(DashboardFilters(), "toy", [{"model_id": r["model"], **r} for r in rows], [], {}, {}, {})
    table = ui_render.table_html(board, all_columns=True)  # the dashboard's: its compact default hides some
    assert all(f">{html.escape(label)}</th>" in table for label in labels) and table.count("<tr") == len(board.rows) + 1


def test_the_cli_table_has_tru(db_path, capsys):
    assert main(["metrics", "--db", db_path, "--n-boot", "20"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    at = header.index("Tru ")
    total = next(line for line in lines if " baseline " in line and " total " in line)
    assert total[at:].startswith("50.0 [")  # 3 correct, 3 wrong, no abstention


def test_every_figure_column_is_computed_by_metrics():
    for column in report.COLUMNS:
        assert column.better in (report.HIGHER, report.LOWER, report.NONE) and column.help
        if column.stat is not None:
            computed = metrics.ComparisonIntervals if column.of == report.OUTCOMES else metrics.ScoreIntervals
            assert column.format in (report.PERCENT, report.RGI)
            assert column.stat in {f.name for f in dataclasses.fields(computed)}


def test_the_dashboard_and_the_cli_render_the_same_report(db_path, tmp_path):
    db = open_db(db_path)
    run = next(r for r in store.list_runs(db, "toy") if r.method == "idk")
    store.add_label(db, store.content_id(run.id, "id-1"), "ann", "idk")
    services = Services.build(Settings(db_path, str(tmp_path / "data"), backend="scripted", n_boot=20))
    board = {(r["method"], r["group"]): r for r in services.dashboard.metrics(DashboardFilters(dataset="toy")).rows}
    cli = {(r["method"], r["group"]): r for r in report.metrics_rows(db, "toy", n_boot=20)}
    assert board.keys() == cli.keys()
    for key, row in cli.items():
        assert board[key]["source"] == row["source"]
        assert all(board[key][c.key] == row[c.key] for c in report.COLUMNS if c.stat)
    assert cli["idk", "total"]["source"] == "mixed (1 human)" and cli["idk", "total"]["rej"] == 1 / 6
