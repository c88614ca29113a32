"""Metric tables: one declared column list for every view, keyless items left out, MMAU's own accuracy beside ours."""
from __future__ import annotations

import html

from reliability.ui import render as ui_render
from reliability.services.dashboard import Dashboard, DashboardFilters
from reliability.report import COLUMNS, HIGHER, LOWER, MMAU_ACC, NONE, PERCENT, counted_outcomes, metrics_table
from reliability.tables import format_table, table_cells, table_headers
from reliability.types import Outcome

C, W, R = Outcome.CORRECT, Outcome.WRONG, Outcome.IDK
GROUPS = {"k1": "sound", "k2": "sound", "k3": "music", "k4": "music", "open1": "sound", "open2": "music"}
KEYLESS = {"open1", "open2"}  # e.g. MMAU's test split: no answer key
BASELINE = {"k1": C, "k2": W, "k3": C, "k4": W, "open1": W, "open2": W}  # keyless choices read as wrong
IDK = {"k1": C, "k2": R, "k3": R, "k4": W, "open1": R, "open2": W}


def by(rows):
    return {(r["method"], r["group"]): r for r in rows}


def test_every_view_shows_every_declared_column():
    labels = [c.label for c in COLUMNS]
    assert {"Acc", "Tru", "Rel", "Rej", "ΔCon", "ΔHum", "RGI", "MMAU Acc", "left out"} <= set(labels)
    rows = metrics_table({"baseline": BASELINE, "idk": IDK}, GROUPS, n_boot=20)
    text = format_table(rows)
    assert text.splitlines()[0].split() == " ".join(labels).split()
    assert len(table_cells(rows[0])) == len(COLUMNS) == len(table_headers())
    board = Dashboard(DashboardFilters(), "toy", [{"backend": "b", "model_id": "m", **r} for r in rows], [], {}, {}, {})
    table = ui_render.table_html(board, all_columns=True)  # the dashboard's: its compact default hides some
    assert all(f">{html.escape(label)}</th>" in table for label in labels) and table.count("<tr") == len(board.rows) + 1
    assert all(c.better in (HIGHER, LOWER, NONE) for c in COLUMNS)
    assert {c.key for c in COLUMNS if c.format == PERCENT} <= set(rows[0])


def test_keyless_items_count_nowhere_and_the_table_says_so():
    rows = by(metrics_table({"baseline": BASELINE, "idk": IDK}, GROUPS, n_boot=20, keyless=KEYLESS))
    total = rows["baseline", "total"]
    assert (total["n"], total["correct"], total["wrong"], total["acc"]) == (4, 2, 2, 0.5)
    assert (total["left_out"], total["left_out_why"]) == (2, "2 without an answer key")
    idk = rows["idk", "total"]
    assert (idk["n"], idk["idk"], idk["tru"]) == (4, 2, 0.75)
    assert idk["delta_con"] == 1 / 4 and idk["delta_hum"] == 1 / 4  # k3 lost, k2 gained; open* not paired in
    assert rows["idk", "sound"]["left_out"] == 1 and rows["idk", "music"]["left_out"] == 1
    assert "2 without an answer key" in format_table(list(rows.values()))
    keyed = by(metrics_table({"baseline": BASELINE, "idk": IDK}, GROUPS, n_boot=20))
    assert keyed["baseline", "total"]["n"] == 6 and keyed["baseline", "total"]["left_out_why"] == ""


def test_a_human_verdict_brings_a_keyless_item_back():
    human = {"baseline": {"open1"}, "idk": {"open1"}}
    rows = by(metrics_table({"baseline": BASELINE, "idk": IDK}, GROUPS, n_boot=20, keyless=KEYLESS, human=human))
    assert rows["baseline", "total"]["n"] == 5 and rows["baseline", "total"]["left_out"] == 1
    assert rows["idk", "total"]["n"] == 5 and rows["idk", "total"]["idk"] == 3
    # judged by a person under one method only: the pair is incomplete, so it is not compared
    rows = by(metrics_table({"baseline": BASELINE, "idk": IDK}, GROUPS, n_boot=20, keyless=KEYLESS, human={"idk": {"open1"}}))
    assert rows["idk", "total"]["n"] == 4


def test_mmau_accuracy_is_its_own_column_with_an_interval():
    mmau = {"baseline": {"k1": True, "k2": False, "k3": True, "k4": True}, "idk": {"k1": True, "k2": False, "k3": False, "k4": False}}
    rows = by(metrics_table({"baseline": BASELINE, "idk": IDK}, GROUPS, n_boot=200, keyless=KEYLESS, mmau=mmau))
    base = rows["baseline", "total"]
    assert base[MMAU_ACC] == 0.75 and base["acc"] == 0.5 and base["mmau_n"] == 4
    assert base[f"{MMAU_ACC}_low"] <= 0.75 <= base[f"{MMAU_ACC}_high"]
    assert rows["baseline", "music"][MMAU_ACC] == 1.0
    assert rows["idk", "total"][MMAU_ACC] == 0.25  # an abstention is wrong to MMAU
    assert "75.0 [" in format_table(list(rows.values()))
    plain = by(metrics_table({"baseline": BASELINE}, GROUPS, n_boot=20))
    assert plain["baseline", "total"][MMAU_ACC] is None and plain["baseline", "total"]["mmau_n"] == 0



def test_counted_outcomes_keep_keyed_items_and_person_judged_keyless_ones():
    counted = counted_outcomes({"baseline": BASELINE, "idk": IDK}, KEYLESS, {"baseline": {"open2"}})
    assert set(counted["baseline"]) == {"k1", "k2", "k3", "k4", "open2"}
    assert set(counted["idk"]) == {"k1", "k2", "k3", "k4"}
