"""The command line: help for every command, a full session, and errors as one clear line with a non-zero exit."""
from __future__ import annotations

import argparse
import json
from collections import Counter
import subprocess
import sys
from pathlib import Path

import pytest

from annotations import store
from annotations.db import open_db
from reliability.cli.main import build_parser, main
from reliability.datasets import MMAU_TEST_MINI

ROOT = Path(__file__).resolve().parents[1]
MMAU = MMAU_TEST_MINI
SCRIPTED = ["--backend", "scripted", "--backend-arg", "reply=A"]


def all_commands(parser: argparse.ArgumentParser, prefix=()) -> list[tuple[str, ...]]:
    """Every command path, e.g. ("import", "dataset"), found in the parser itself."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((*prefix, name))
                found += all_commands(sub, (*prefix, name))
    return found


def test_every_command_takes_db():
    def leaves(parser, prefix=()):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [(prefix, parser)]
        return [leaf for a in subs for name, sub in a.choices.items() for leaf in leaves(sub, (*prefix, name))]

    without = [" ".join(c) for c, p in leaves(build_parser()) if "--db" not in p._option_string_actions]
    assert not without, f"commands without --db: {without}"


@pytest.mark.parametrize("command", all_commands(build_parser()), ids=" ".join)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    assert exit.value.code == 0
    text = capsys.readouterr().out
    assert "usage: reliability" in text and len(text.splitlines()) > 3


@pytest.fixture
def lab(tmp_path, capsys):
    """A database path with MMAU test-mini imported."""
    db = str(tmp_path / "lab.db")
    assert main(["import", "dataset", str(MMAU), "--db", db]) == 0
    out, err = capsys.readouterr()
    assert "imported 1000 items" in out and err.count("duplicate choices merged") == 27
    return db


def test_a_session_import_evaluate_label_metrics_export(lab, tmp_path, capsys):
    assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--methods", "baseline,idk", "--limit", "9", "--no-audio", *SCRIPTED]) == 0
    assert "answered 18 new, 0 cached" in capsys.readouterr().out
    assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--methods", "baseline,idk", "--limit", "9", "--no-audio", *SCRIPTED]) == 0
    assert "answered 0 new, 18 cached" in capsys.readouterr().out

    db = open_db(lab)
    runs = store.list_runs(db)
    assert [r.method for r in runs] == ["baseline", "idk"] and {r.condition for r in runs} == {"none"}
    entry = store.label_queue(db, run_id=runs[1].id, limit=1)[0]
    store.add_label(db, entry.answer_id, "ann", "idk")

    assert main(["runs", "--db", lab]) == 0
    assert runs[0].id in capsys.readouterr().out
    assert main(["metrics", "--db", lab, "--dataset", "mmau-test-mini", "--n-boot", "50"]) == 0
    text = capsys.readouterr().out
    assert "baseline" in text and "total" in text and "mixed (1 human)" in text
    out = tmp_path / "m.json"
    assert main(["export", "metrics", "--db", lab, "--dataset", "mmau-test-mini", "--n-boot", "50", "--output", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {(r["method"], r["group"]) for r in rows} >= {("baseline", "total"), ("idk", "total"), ("idk", "sound")}
    assert main(["rejudge", "--db", lab]) == 0
    assert "re-judged 0 answers" in capsys.readouterr().out
    assert main(["agreement", "--db", lab]) == 0
    assert "parser agrees with humans" in capsys.readouterr().out
    for kind, extra in (("answers", ["--dataset", "mmau-test-mini"]), ("labels", []), ("submission", ["--run", runs[0].id[:8]])):
        assert main(["export", kind, "--db", lab, *extra, "--output", str(tmp_path / kind)]) == 0
    assert "wrote 9 records" in capsys.readouterr().out


def test_imported_predictions_can_be_scored(lab, tmp_path, capsys):
    preds = tmp_path / "preds.jsonl"
    first = store.get_items(open_db(lab), "mmau-test-mini", limit=2)
    preds.write_text("\n".join(json.dumps({"id": i.id, "model_output": i.answer}) for i in first))
    assert main(["import", "predictions", str(preds), "--db", lab, "--dataset", "mmau-test-mini", "--model", "qwen"]) == 0
    assert "imported 2 answers" in capsys.readouterr().out
    assert main(["metrics", "--db", lab, "--dataset", "mmau-test-mini", "--format", "csv", "--n-boot", "20"]) == 0
    assert "external,qwen,full,baseline,total,parser,2,2,0,0,1.0" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "--dataset", "nope"], "error: no dataset 'nope'"),
        (["evaluate", "--dataset", "mmau-test-mini", "--methods", "vibes", *SCRIPTED], "error: unknown method 'vibes'"),
        (["evaluate", "--dataset", "mmau-test-mini", "--backend", "gpt-audio"], "error: unknown backend 'gpt-audio'"),
        (["evaluate", "--dataset", "mmau-test-mini", "--backend", "scripted", "--backend-arg", "colour=red"], "error: backend 'scripted' does not take"),
        (["evaluate", "--dataset", "mmau-test-mini", "--backend-arg", "oops"], "error: --backend-arg 'oops'"),
        (["export", "submission", "--run", "zzz", "--output", "x.json"], "error: no run matches 'zzz'"),
        (["export", "answers", "--output", "x.csv"], "error: no runs yet"),
        (["metrics", "--dataset", "mmau-test-mini"], "error: no runs of dataset"),
        (["import", "dataset", "/no/such/file.json"], "error: no such file"),
    ],
)
def test_errors_are_one_line_and_exit_1(lab, args, message, capsys):
    assert main([*args, "--db", lab]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err and "Traceback" not in err


def test_a_broken_database_path_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["runs", "--db", str(tmp_path / "file" / "lab.db")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "cannot create the folder" in err and "\n" not in err


def test_a_malformed_dataset_lists_each_bad_record_then_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "a", "question": "q", "choices": ["x", "y"], "answer": "z", "task": "sound"}, {"id": "b"}]))
    assert main(["import", "dataset", str(bad), "--db", str(tmp_path / "lab.db")]) == 1
    lines = capsys.readouterr().err.rstrip().splitlines()
    assert lines[0].startswith("  record 1 (id a): answer 'z' is not among the choices")
    assert lines[1] == "  record 2 (id b): missing fields 'question', 'choices', 'task' or 'modality'"  # every one at once
    assert lines[-1].startswith("error: ") and "2 bad record(s) of 2; nothing imported" in lines[-1]


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exit:
        main(["evaluate", "--batch-size", "many"])
    assert exit.value.code == 2


def test_python_dash_m_runs_the_cli(tmp_path):
    result = subprocess.run([sys.executable, "-m", "reliability", "runs", "--db", str(tmp_path / "lab.db")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""


def test_metrics_and_submission_pick_the_obvious_run_or_say_what_to_add(lab, tmp_path, capsys):
    assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--limit", "3", "--no-audio", *SCRIPTED]) == 0
    assert main(["metrics", "--db", lab, "--n-boot", "20"]) == 0  # the only dataset with runs
    assert "baseline" in capsys.readouterr().out
    out = tmp_path / "preds.json"
    assert main(["export", "submission", "--db", lab, "--dataset", "mmau-test-mini", "--output", str(out)]) == 0
    assert [r["condition"] for r in json.loads(out.read_text())] == ["none"] * 3
    assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--methods", "idk", "--limit", "3", "--no-audio", *SCRIPTED]) == 0
    capsys.readouterr()
    assert main(["export", "submission", "--db", lab, "--dataset", "mmau-test-mini", "--output", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: dataset 'mmau-test-mini' has 2 runs; add --method") and "(idk, none)" in err and "\n" not in err
    assert main(["export", "submission", "--db", lab, "--dataset", "mmau-test-mini", "--method", "idk", "--output", str(out)]) == 0
    assert main(["export", "submission", "--db", lab, "--output", str(out)]) == 1  # the only dataset, but two runs
    assert capsys.readouterr().err.startswith("error: dataset 'mmau-test-mini' has 2 runs; add --method or --run")
    # another idk run under the same condition: the error never asks for the --method it was given
    assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--methods", "idk", "--limit", "3", "--no-audio", "--max-new-tokens", "32", *SCRIPTED]) == 0
    capsys.readouterr()
    assert main(["export", "submission", "--db", lab, "--method", "idk", "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: dataset 'mmau-test-mini' has 2 runs with method 'idk'; add --run: ") and "--method" not in err


def test_export_answers_and_labels_pick_the_only_dataset_with_runs(lab, tmp_path, capsys):
    assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--limit", "3", "--no-audio", *SCRIPTED]) == 0
    assert main(["export", "answers", "--db", lab, "--output", str(tmp_path / "a.csv")]) == 0
    assert main(["export", "labels", "--db", lab, "--output", str(tmp_path / "l.csv")]) == 0
    assert "wrote 3 answers" in capsys.readouterr().out


def test_a_limit_is_a_seeded_sample_stratified_by_modality_unless_in_file_order(lab, capsys):
    def modalities(*flags):
        assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--limit", "30", "--no-audio", *flags, *SCRIPTED]) == 0
        run = capsys.readouterr().out.rsplit("runs: ", 1)[1].split()[0]
        return [r["modality"] for r in store.answer_rows(open_db(lab), [store.get_run(open_db(lab), run).id])]

    assert Counter(modalities()) == {"sound": 10, "music": 10, "speech": 10}
    assert set(modalities("--file-order", "--max-new-tokens", "32")) == {"sound"}  # MMAU's file starts with its sound questions


def test_a_command_that_can_answer_nothing_says_why_in_one_line_and_stores_no_run(lab, capsys):
    assert main(["evaluate", "--db", lab, "--dataset", "mmau-test-mini", "--limit", "4", *SCRIPTED]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: nothing to ask: 4 item(s) skipped (4 × no audio file") and err.count("\n") == 1
    assert main(["diagnose", "--db", lab, "--dataset", "mmau-test-mini", "--limit", "2", "--conditions", "all", *SCRIPTED]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "%|" not in line]  # the progress bar aside
    assert len(lines) == 1 and "under 15 condition(s)" in lines[0] and "2 item(s) skipped (2 × no audio file" in lines[0]
    assert {r.condition for r in store.list_runs(open_db(lab))} == {"none"}  # no empty runs for full and the fragments
    assert all(r.n_answers == 2 for r in store.list_runs(open_db(lab)))


def test_metrics_without_runs_or_with_several_datasets_says_what_to_add(tmp_path, capsys):
    db = str(tmp_path / "lab.db")
    assert main(["metrics", "--db", db]) == 1
    assert capsys.readouterr().err.strip() == "error: no runs yet: run `evaluate --dataset NAME` first"
    for name in ("one", "two"):
        assert main(["import", "dataset", str(MMAU), "--name", name, "--db", db]) == 0
        assert main(["evaluate", "--db", db, "--dataset", name, "--limit", "1", "--no-audio", *SCRIPTED]) == 0
    capsys.readouterr()
    assert main(["metrics", "--db", db]) == 1
    assert capsys.readouterr().err.strip() == "error: several datasets have runs; add --dataset with one of: one, two"


def test_missing_audio_is_one_line_with_a_count_and_the_first_paths(tmp_path, capsys):
    db = str(tmp_path / "lab.db")
    assert main(["import", "dataset", str(MMAU), "--db", db, "--audio-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "1000 items skipped: audio file not found, e.g. " in err and "\n" not in err
    assert main(["import", "dataset", str(MMAU), "--db", db, "--audio-dir", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.strip().startswith("error: audio folder not found: ")
    assert main(["import", "dataset", str(MMAU), "--db", db, "--audio-dir", str(tmp_path), "--keep-missing-audio"]) == 0
    out, err = capsys.readouterr()
    assert "warning: 1000 items kept without audio: audio file not found, e.g. " in err and "1000 without audio" in out
    assert len(err.splitlines()) == 1 + 27  # that line and the merged duplicate choices


def test_keep_missing_audio_without_an_audio_folder_says_what_it_means(tmp_path, capsys):
    assert main(["import", "dataset", str(MMAU), "--db", str(tmp_path / "lab.db"), "--keep-missing-audio"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: --keep-missing-audio only matters with --audio-dir; without it every item is imported without audio")
