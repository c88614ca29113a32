"""Batch evaluation on the scripted backend: end to end, the cache, changed clips, re-judging, crash and Ctrl-C."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotations import store
from annotations.db import open_db
from reliability import evaluate as evaluate_module
from reliability.audio import load_audio
from reliability.backends.scripted import ScriptedBackend
from reliability.datasets import MMAU_TEST_MINI, import_dataset
from reliability.errors import ItemError, NothingToAskError, UnknownNameError
from reliability.evaluate import evaluate, rejudge
from reliability.types import Answer, Decoding, Item, Judgement, Outcome
from tests.conftest import tone

ROOT = Path(__file__).resolve().parents[1]
MMAU = MMAU_TEST_MINI


def first_choice(request):
    """Answers every question with its first option; the Task Agent's helper steps get a word."""
    return request.choices[0] if request.choices else "speech"


@pytest.fixture
def mmau(db):
    import_dataset(db, MMAU)
    return store.get_items(db, "mmau-test-mini", limit=12)


@pytest.fixture
def clips(db, make_wav):
    """Three items in dataset "clips", each with its own wav file."""
    items = [
        Item(f"c{i}", f"Which tone is clip {i}?", ("low", "high"), "low", "sound", str(make_wav(tone(200 + 100 * i), name=f"c{i}.wav")), "clips")
        for i in range(3)
    ]
    store.upsert_dataset(db, "clips", [store.StoredItem(i) for i in items])
    return items


def test_a_no_audio_run_over_a_slice_of_mmau_works_end_to_end(db, mmau):
    backend = ScriptedBackend(responder=first_choice)
    calls = []
    result = evaluate(db, backend, mmau, ["baseline", "idk"], batch_size=5, condition="none", progress=lambda *a: calls.append(a))
    assert (result.answered, result.cached, result.skipped) == (24, 0, [])
    assert all(request.audio is None for request in backend.seen)
    assert calls[-1][:2] == (24, 24) and all(done <= total for done, total, _ in calls)
    outcomes = store.run_outcomes(db, result.run_ids)
    for run_id in result.run_ids:
        assert outcomes[run_id].run.condition == "none"
        assert outcomes[run_id].outcomes == {
            item.id: Outcome.CORRECT if item.answer == item.choices[0] else Outcome.WRONG for item in mmau
        }
    steps = store.answer_rows(db, result.run_ids[:1])[0]["steps"]
    assert steps[0]["name"] == "answer" and steps[0]["with_audio"] is False


def test_a_re_run_is_served_from_the_store_without_calling_the_backend(db, mmau):
    backend = ScriptedBackend(responder=first_choice)
    first = evaluate(db, backend, mmau, ["baseline", "agent"], condition="none")
    calls = len(backend.seen)
    again = evaluate(db, backend, mmau, ["baseline", "agent"], condition="none")
    assert len(backend.seen) == calls
    assert again.run_ids == first.run_ids and (again.answered, again.cached) == (0, 24)
    assert db["answers"].count == 24
    other = evaluate(db, backend, mmau, ["baseline"], Decoding(max_new_tokens=9), condition="none")
    assert other.answered == 12 and other.run_ids != first.run_ids[:1]  # other decoding settings: another run


def test_audio_runs_record_the_clip_hash_and_a_changed_clip_is_asked_again(db, clips, make_wav, monkeypatch):
    backend = ScriptedBackend(responder=first_choice)
    result = evaluate(db, backend, clips, ["baseline"], batch_size=2)
    assert result.answered == 3 and all(r.audio is not None for r in backend.seen)
    assert store.answered(db, result.run_ids[0]) == {i.id: load_audio(i.audio_path).hash for i in clips}

    def no_decoding(path):
        raise AssertionError("an unchanged file must not be decoded again")

    monkeypatch.setattr(evaluate_module, "load_audio", no_decoding)
    assert evaluate(db, backend, clips, ["baseline"]).cached == 3 and len(backend.seen) == 3
    monkeypatch.undo()
    make_wav(tone(1000), name="c1.wav")  # new content in the same file
    again = evaluate(db, backend, clips, ["baseline"])
    assert (again.answered, again.cached) == (1, 2) and len(backend.seen) == 4
    assert store.answered(db, result.run_ids[0])["c1"] == load_audio(clips[1].audio_path).hash
    assert db["answers"].count == 3


def test_a_fragment_condition_asks_one_piece_and_records_the_whole_clip_hash(db, clips):
    backend = ScriptedBackend(responder=first_choice)
    result = evaluate(db, backend, clips, ["baseline"], condition="n2_chunk2")
    assert result.answered == 3 and store.get_run(db, result.run_ids[0]).condition == "n2_chunk2"
    whole = load_audio(clips[0].audio_path)
    assert len(backend.seen[0].audio) == len(whole.samples) - len(whole.samples) // 2
    assert store.answered(db, result.run_ids[0])["c0"] == whole.hash
    assert evaluate(db, backend, clips, ["baseline"], condition="n2_chunk2").cached == 3


def test_items_that_cannot_be_asked_are_skipped_with_the_reason(db, clips, tmp_path):
    no_file = Item("gone", "Which?", ("a", "b"), "a", "sound", str(tmp_path / "gone.wav"), "clips")
    no_audio = Item("text", "Which?", ("a", "b"), "a", "sound", None, "clips")
    store.upsert_dataset(db, "clips", [store.StoredItem(no_file), store.StoredItem(no_audio)])
    result = evaluate(db, ScriptedBackend(responder=first_choice), [*clips, no_file, no_audio], ["baseline"])
    reasons = dict(result.skipped)
    assert result.answered == 3 and set(reasons) == {"gone", "text"}
    assert "No such file" in reasons["gone"] and "no audio file" in reasons["text"]


def test_a_run_is_stored_with_its_first_answer_and_nothing_askable_stores_none(db, tmp_path):
    no_file = Item("gone", "Which?", ("a", "b"), "a", "sound", str(tmp_path / "gone.wav"), "clips")
    no_audio = Item("text", "Which?", ("a", "b"), "a", "sound", None, "clips")
    store.upsert_dataset(db, "clips", [store.StoredItem(no_file), store.StoredItem(no_audio)])
    with pytest.raises(NothingToAskError, match=r"^nothing to ask: 1 item\(s\) skipped \(1 × no audio file"):
        evaluate(db, ScriptedBackend(responder=first_choice), [no_audio], ["baseline", "idk"])
    with pytest.raises(NothingToAskError, match=r"^nothing answered: 2 item\(s\) skipped"):
        evaluate(db, ScriptedBackend(responder=first_choice), [no_file, no_audio], ["baseline"])
    assert store.list_runs(db) == []


def test_rejudge_updates_stored_outcomes_without_asking_any_model(db, clips, monkeypatch):
    run = store.get_or_create_run(db, "clips", ScriptedBackend().describe(), {"method": "baseline"}, Decoding(), judge_version="judge-0")
    stale = Judgement("high", Outcome.WRONG, True, "an older rule")
    store.save_answers(
        db,
        run.id,
        [
            Answer("c0", "baseline", "low", stale, [], Decoding(), confidence=0.9),  # now read as "low": correct
            Answer("c1", "baseline", "high", stale, [], Decoding(), confidence=0.7),  # same option read again
            Answer("c2", "baseline", "I don't know", stale, [], Decoding(), confidence=0.5),
        ],
        ["h0", "h1", "h2"],
        "judge-0",
    )
    backend = ScriptedBackend()  # no replies: any generation would fail
    assert rejudge(db) == 3
    rows = {r["item_id"]: r for r in store.answer_rows(db, [run.id])}
    assert {k: r["outcome"] for k, r in rows.items()} == {"c0": "correct", "c1": "wrong", "c2": "idk"}
    assert {k: r["confidence"] for k, r in rows.items()} == {"c0": None, "c1": 0.7, "c2": None}
    assert store.get_run(db, run.id).judge_version == evaluate_module.JUDGE_VERSION
    assert rejudge(db) == 0 and backend.seen == []
    monkeypatch.setattr(evaluate_module, "JUDGE_VERSION", "judge-next")
    assert rejudge(db, [run.id]) == 3 and store.get_run(db, run.id).judge_version == "judge-next"


def test_ctrl_c_keeps_the_finished_batches_and_a_re_run_finishes_the_rest(db, mmau):
    calls = []

    def interrupted_on_third_batch(request):
        calls.append(request)
        if len(calls) > 8:  # batches of 4: the third batch is cut short
            raise KeyboardInterrupt
        return first_choice(request)

    with pytest.raises(KeyboardInterrupt):
        evaluate(db, ScriptedBackend(responder=interrupted_on_third_batch), mmau, ["baseline"], batch_size=4, condition="none")
    assert db["answers"].count == 8 and not db.conn.in_transaction
    backend = ScriptedBackend(responder=first_choice)
    result = evaluate(db, backend, mmau, ["baseline"], batch_size=4, condition="none")
    assert (result.answered, result.cached, len(backend.seen)) == (4, 8, 4)
    assert store.answered_item_ids(db, result.run_ids[0]) == {i.id for i in mmau}


def test_sigkill_mid_batch_then_the_same_command_answers_every_item_exactly_once(tmp_path):
    path = tmp_path / "lab.db"
    with open_db(path) as db:
        import_dataset(db, MMAU)
        wanted = [i.id for i in store.get_items(db, "mmau-test-mini", limit=24)]
    command = [
        sys.executable, "-m", "reliability", "evaluate", "--db", str(path), "--dataset", "mmau-test-mini",
        "--methods", "baseline", "--limit", "24", "--file-order", "--batch-size", "4", "--no-audio",
        "--backend", "scripted", "--backend-arg", "reply=A",
    ]
    slow = subprocess.Popen([*command, "--backend-arg", "delay_s=0.4"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = open_db(path)
    deadline = time.monotonic() + 120
    while watcher["answers"].count < 8:
        assert slow.poll() is None, slow.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never saved two batches"
        time.sleep(0.02)
    slow.send_signal(signal.SIGKILL)  # now sleeping inside a backend call: mid-batch
    slow.wait(timeout=30)
    assert slow.returncode == -signal.SIGKILL
    saved = watcher["answers"].count
    assert 8 <= saved < 24 and saved % 4 == 0  # whole batches only, nothing half-written

    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"answered {24 - saved} new, {saved} cached" in rerun.stdout
    rows = list(watcher.query("SELECT item_id, count(*) AS n FROM answers GROUP BY item_id"))
    assert sorted(r["item_id"] for r in rows) == sorted(wanted) and {r["n"] for r in rows} == {1}
    assert watcher["runs"].count == 1


def test_bad_calls_are_refused(db, mmau, clips):
    backend = ScriptedBackend(responder=first_choice)
    with pytest.raises(UnknownNameError, match="condition 'half'"):
        evaluate(db, backend, mmau, ["baseline"], condition="half")
    with pytest.raises(ItemError, match="one dataset"):
        evaluate(db, backend, [*mmau, *clips], ["baseline"])
    with pytest.raises(UnknownNameError, match="method 'nope'"):
        evaluate(db, backend, mmau, ["nope"])
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(db, backend, mmau, ["baseline"], batch_size=0)
