"""The lab's services and the app's handlers without a browser or a server: compare, cache, labels, queue, dashboard."""
from __future__ import annotations

import html
import json
import os
from types import SimpleNamespace

import gradio as gr
import numpy as np
import pytest

from annotations import store
from reliability.errors import AudioError, ItemError, StoreError
from reliability.services import Services, Settings
from reliability.services.compare import LAB_DATASET, MethodResult, Waiting, resolve_key
from reliability.services.dashboard import PARSER, DashboardFilters
from reliability.services.labelling import HUMAN_MODE, KEY_SEEN, NO_AUDIO
from reliability.types import Answer, Decoding, Item, Judgement, Outcome, Request
from reliability.ui.api import Api
from reliability.ui.compare_tab import CompareHandlers
from reliability.ui.dashboard_tab import DashboardHandlers
from reliability.ui.label_tab import LabelHandlers
from reliability.ui.render import agreement_text, audio_figure, progress_text, result_cards, summary_text, table_html

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPTIONS = ["a dog barking", "a steady tone", "a car horn"]
KEY = "a steady tone"


def reply(request: Request) -> str:
    """B for every method, but MCoT hedges unreadably, so the parser is unsure of it."""
    text = request.messages[-1]["content"]
    return "Hmm, maybe one of them." if "step by step" in text else "B"


@pytest.fixture
def services(tmp_path):
    return Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path / "data"), backend="scripted", backend_kwargs={"responder": reply}, n_boot=200))


def ask(services, clip, methods=("baseline", "idk", "mcot", "agent"), question="What is heard?", **kwargs):
    return list(services.compare.compare(str(clip), question, OPTIONS, kwargs.pop("answer", KEY), list(methods), **kwargs))


def test_compare_yields_every_method_and_a_repeat_comes_from_the_store(services, tone_wav):
    first = ask(services, tone_wav)
    assert [r.method for r in first] == ["baseline", "idk", "mcot", "agent"]
    assert [r.outcome for r in first] == ["correct", "correct", "wrong", "correct"]
    assert not any(r.cached or r.error for r in first)
    mcot = first[2]
    assert not mcot.parsed and mcot.rule.startswith("unparsed")
    agent = first[3]
    assert agent.audio_type == "sound" and agent.tool_output == ("sound caption", "B")
    seen = len(services.pool.get_backend().seen)
    again = ask(services, tone_wav)
    assert all(r.cached for r in again) and len(services.pool.get_backend().seen) == seen  # no model call
    assert [r.answer_id for r in again] == [r.answer_id for r in first]
    kept = os.listdir(services.pool.uploads_dir)
    assert len(kept) == 1 and kept[0].endswith(".wav")  # the clip outlives the browser's temporary copy


def test_cached_answers_come_first_and_new_methods_follow(services, tone_wav):
    ask(services, tone_wav, methods=["idk"])
    results = ask(services, tone_wav, methods=["baseline", "idk"])
    assert [(r.method, r.cached) for r in results] == [("idk", True), ("baseline", False)]


def test_a_request_waiting_for_the_model_says_how_many_are_ahead(services, tone_wav):
    gate = services.pool.model_lock()
    with gate:  # another user's question (or a training run) holds the model
        stream = services.compare.compare(str(tone_wav), "What is heard?", OPTIONS, KEY, ["baseline"], report_waits=True)
        first = next(stream)
    assert first == Waiting("baseline", 1)
    [result] = list(stream)
    assert result.method == "baseline" and result.outcome == "correct" and gate.queued == 0


def test_a_cut_clip_says_so_on_its_card(services, make_wav):
    long_clip = make_wav(np.zeros(16000 * 45, dtype=np.float32) + 0.01, name="long.wav")
    [result] = list(services.compare.compare(str(long_clip), "What is heard?", OPTIONS, KEY, ["baseline"]))
    card = result_cards(["baseline"], {"baseline": result})
    assert "cut to the model's 30 s limit: the last 15.0 s of 45.0 s were not heard" in card
    short = ask(services, make_wav(np.zeros(16000, dtype=np.float32) + 0.01, name="short.wav"), methods=["baseline"])[0]
    assert "lab-cut" not in result_cards(["baseline"], {"baseline": short})


@pytest.mark.parametrize(
    "outcome, choice, key, says, badge",
    [
        ("idk", None, "I don't know", "Right to abstain:</b> the clip does not say", "✓ right to abstain"),
        ("wrong", "Anna", "I don't know", "answered “Anna”, but the clip does not say", "✗ wrong"),
        ("wrong", "b", "c", "Wrong:</b> answered “b”; the key is “c”.", "✗ wrong"),
        ("correct", "c", "c", "Right:</b> answered “c”, which is the key.", "✓ correct"),
        ("idk", None, "c", "Abstained</b> although the clip answers it: the key is “c”", "? I don't know"),
    ],
)
def test_a_card_says_its_outcome_in_plain_words(outcome, choice, key, says, badge):
    result = MethodResult("idk", text="x", choice=choice, key=key, outcome=outcome, rule="unanswerable; final answer, exact text")
    card = html.unescape(result_cards(["idk"], {"idk": result}))
    assert says in card and badge in card
    assert "in its final answer line, the reply is that option's text" in card  # the rule, not its code name


@pytest.mark.parametrize(
    "change, message",
    [
        ({"audio": None}, "no audio"),
        ({"question": "   "}, "no question"),
        ({"choices": [], "answer": "a dog barking"}, "no options"),
        ({"answer": "a cat"}, "not one of the options"),
        ({"modality": "video"}, "modality 'video'"),
        ({"methods": []}, "no method selected"),
    ],
)
def test_bad_requests_raise_one_clear_line(services, tone_wav, change, message):
    request = dict(audio=str(tone_wav), question="What?", choices=OPTIONS, answer=KEY, methods=["baseline"], modality="sound")
    request.update(change)
    with pytest.raises((AudioError, ItemError), match=message):
        services.compare.compare(request["audio"], request["question"], request["choices"], request["answer"], request["methods"], modality=request["modality"])


def test_corrupt_and_over_long_uploads_are_refused(services, tmp_path, make_wav):
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"\x00" * 1000)
    with pytest.raises(AudioError, match="corrupt.mp3"):
        ask(services, corrupt)
    services.pool.settings.max_seconds = 1.0
    long = make_wav(np.zeros(3 * 16_000, dtype=np.float32), name="long.wav")
    with pytest.raises(AudioError, match="longer than"):
        ask(services, long)


@pytest.mark.parametrize("typed, key", [("b", KEY), ("(B)", KEY), ("A STEADY TONE", KEY), ("", None), ("c.", "a car horn")])
def test_the_answer_key_may_be_an_options_text_or_letter(typed, key):
    assert resolve_key(typed, OPTIONS) == key


def test_a_failing_method_or_adapter_leaves_the_others_running(tmp_path, tone_wav):
    def responder(request):
        if "step by step" in request.messages[-1]["content"]:
            raise RuntimeError("the model ran out of memory")
        return "B"

    adapters = tmp_path / "adapters"
    (adapters / "small").mkdir(parents=True)
    (adapters / "small" / "adapter_config.json").write_text("{}")
    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path), backend="scripted", backend_kwargs={"responder": responder}, adapters_dir=str(adapters)))
    assert services.pool.method_names()[-1] == "lora:small"
    results = ask(services, tone_wav, methods=["baseline", "mcot", "nope", "lora:small", "lora:missing"])
    errors = {r.method: r.error for r in results}
    assert errors["baseline"] is None and errors["lora:small"] is None
    assert errors["mcot"] == "RuntimeError: the model ran out of memory"
    assert errors["nope"].startswith("unknown method 'nope'")
    assert errors["lora:missing"] == "unknown adapter 'missing'; known: small"
    backend = services.pool.get_backend()
    assert backend.adapters == {"small": str(adapters / "small")} and backend.adapter is None  # switched back
    assert "error" in result_cards([r.method for r in results], {r.method: r for r in results})


def test_labels_override_the_parser_in_the_dashboard(services, tone_wav):
    results = {r.method: r for r in ask(services, tone_wav)}
    services.labels.label(results["idk"].answer_id, "ana", "idk")
    board = services.dashboard.metrics()
    assert board.dataset == LAB_DATASET
    rows = {(r["method"], r["group"]): r for r in board.rows}
    assert rows[("idk", "total")]["idk"] == 1 and rows[("idk", "total")]["source"] == "human"
    assert rows[("baseline", "total")]["source"] == PARSER
    point = next(p for p in board.points if p.method == "idk" and p.group == "total")
    assert point.comparison.lost_correct == 1 and point.intervals.delta_con.estimate == 1.0
    assert board.agreement["parser_rate"] == 0.0 and board.agreement["labels_by_annotator"] == {"ana": 1}
    parser_only = services.dashboard.metrics(DashboardFilters(source=PARSER))
    assert {(r["method"], r["group"]): r for r in parser_only.rows}[("idk", "total")]["correct"] == 1
    data = board.as_dict()
    json.dumps(data, allow_nan=False)  # strict JSON: ±inf RGI is None with its label
    assert {p["rgi_label"] for p in data["points"] if p["method"] == "agent"} == {"undefined (no change)"}


def test_the_annotator_filter_and_agreement(services, tone_wav):
    answer = ask(services, tone_wav, methods=["baseline", "idk"])[1].answer_id
    services.labels.label(answer, "ana", "wrong")
    services.labels.label(answer, "ben", "idk")
    services.labels.label(answer, "ana", "correct")  # a change of mind replaces the label, never adds one
    by = {name: services.dashboard.metrics(DashboardFilters(annotator=name)) for name in ("ana", "ben")}
    outcome = {name: next(r for r in b.rows if r["method"] == "idk" and r["group"] == "total") for name, b in by.items()}
    assert (outcome["ana"]["correct"], outcome["ben"]["idk"]) == (1, 1)
    agreement = services.dashboard.metrics().agreement
    assert agreement["annotators"] == ["ana", "ben"] and agreement["kappas"][0]["n"] == 1
    assert agreement["labels_by_annotator"] == {"ana": 1, "ben": 1}


def test_the_queue_resumes_and_filters(services, tone_wav):
    ask(services, tone_wav)
    queue = services.labels.queue("ana")
    assert (len(queue.tasks), queue.done, queue.position) == (4, 0, 0)
    first, second = queue.tasks[0], queue.tasks[1]
    services.labels.label(first.answer_id, "ana", "correct")
    resumed = services.labels.queue("ana")
    assert resumed.done == 1 and resumed.position == 1 and resumed.tasks[1].key == second.key
    assert [t.answer_id for t in services.labels.queue("ana", unlabelled_only=True).tasks] == [t.answer_id for t in queue.tasks[1:]]
    assert [t.method for t in services.labels.queue("ana", unsure_only=True).tasks] == ["mcot"]
    assert [t.method for t in services.labels.queue("ana", method="idk").tasks] == ["idk"]
    assert services.labels.queue("ben").done == 0
    with pytest.raises(StoreError, match="annotator name"):
        services.labels.queue("  ")


def test_the_human_baseline_hides_the_key_and_scores_the_person(services, tone_wav):
    ask(services, tone_wav, methods=["baseline"])
    ask(services, tone_wav, methods=["baseline"], question="No key here?", answer="")
    queue = services.labels.queue("ana", HUMAN_MODE)
    assert [t.item.question for t in queue.tasks] == ["What is heard?"]  # an item without a key cannot be scored
    task = queue.tasks[0].as_dict()
    assert "answer_key" not in task and task["choices"] == OPTIONS
    services.labels.human_answer(LAB_DATASET, queue.tasks[0].item.id, "ana", "a dog barking")
    assert services.labels.queue("ana", HUMAN_MODE).tasks[0].mine == "a dog barking"
    human = [r for r in services.dashboard.metrics().rows if r["method"] == "human"]
    assert human and human[-1]["group"] == "total" and human[-1]["wrong"] == 1


def test_an_empty_notebook_explains_what_to_do(services):
    board = services.dashboard.metrics()
    assert board.dataset is None and board.empty
    assert "Compare" in summary_text(board)


def test_a_read_only_database_is_reported(tmp_path, tone_wav):
    db = tmp_path / "lab.db"
    Services.build(Settings(str(db), str(tmp_path))).pool.db()
    db.chmod(0o444)
    try:
        services = Services.build(Settings(str(db), str(tmp_path), backend="scripted", backend_kwargs={"reply": "B"}))
        assert "read-only" in services.pool.check()[0]
        with pytest.raises(StoreError, match="read-only"):
            ask(services, tone_wav)
    finally:
        db.chmod(0o644)


def test_examples_point_at_the_repositorys_clips(tmp_path):
    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path), examples_path=os.path.join(REPO, "reliability", "demo", "items.json")))
    rows = CompareHandlers(services).example_rows()
    assert rows and all(os.path.isfile(row[0]) for row in rows)
    # no modality column: a clip's modality is detected, never carried over from the example clicked before
    assert all(len(row) == 4 for row in rows)


def test_audio_figure_draws_waveform_and_spectrogram():
    samples = np.random.default_rng(0).standard_normal(16_000 * 30).astype(np.float32) * 0.1
    fig = audio_figure(samples)
    waveform, _, spectrogram = fig.data
    assert len(waveform.x) == 1200  # an envelope, not 480 000 points
    assert spectrogram.z.shape[0] == 64 and spectrogram.z.shape[1] <= 601


# ---------------------------------------------------------------- handlers


def test_the_compare_handler_streams_cards_then_a_summary(services, tone_wav):
    ui = CompareHandlers(services)
    steps = list(ui.compare(str(tone_wav), "What is heard?", "\n".join(OPTIONS), "B", "sound", ["baseline", "idk"], "scripted"))
    first_status, first_cards, _ = steps[0]
    assert "waiting" in first_cards or "running" in first_cards
    status, cards, raw = steps[-1]
    assert status.startswith("Done: 2 answer(s)") and [r["method"] for r in raw] == ["baseline", "idk"]
    assert cards.count('class="lab-card lab-correct"') == 2 and "why? the exact prompts sent" in cards
    with pytest.raises(gr.Error, match="no question"):
        list(ui.compare(str(tone_wav), "", "a\nb", "", "sound", ["baseline"], "scripted"))


def test_a_user_error_is_one_warning_line_and_its_traceback_only_at_debug_level(services, tone_wav, caplog):
    ui = CompareHandlers(services)
    caplog.set_level("INFO", logger="reliability")
    with pytest.raises(gr.Error) as error:
        list(ui.compare(str(tone_wav), "", "a\nb", "", "sound", ["baseline"], "scripted"))
    assert error.value.print_exception is False  # Gradio prints no traceback for it
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [("WARNING", "compare: no question: type the question to ask about the clip", None)]
    caplog.clear()
    caplog.set_level("DEBUG", logger="reliability")
    with pytest.raises(gr.Error):
        list(ui.compare(str(tone_wav), "", "a\nb", "", "sound", ["baseline"], "scripted"))
    assert [r.levelname for r in caplog.records] == ["WARNING", "DEBUG"] and caplog.records[1].exc_info is not None


def test_annotating_by_handler_saves_and_moves_on(services, tone_wav):
    ask(services, tone_wav, methods=["baseline", "idk"])
    ui = LabelHandlers(services)
    state, progress, *_ = ui.load_queue("ana", "verdict", "(all)", "(all)", "(all)", False, False, None)
    assert "Item **1** of **2**" in progress
    state, progress, audio, _, task, *_ = ui.verdict(state, "wrong")
    assert state["pos"] == 1 and "**1** labelled" in progress and audio[0] == 16_000
    state, *_ = ui.move(state, -1)
    assert state["tasks"][state["pos"]].mine == "wrong"
    with pytest.warns(UserWarning, match="other annotation mode"):
        ui.choose(state, 0)
    assert services.pool.db()["labels"].count == 1


def test_the_human_baseline_by_handler_offers_the_options_as_buttons(services, tone_wav):
    ask(services, tone_wav, methods=["baseline"])
    ui = LabelHandlers(services)
    state, progress, _, _, task, verdict_row, choice_col, *buttons = ui.load_queue("ana", HUMAN_MODE, "lab", "(all)", "(all)", False, False, None)
    assert "answer key" not in task and verdict_row["visible"] is False and choice_col["visible"] is True
    assert [b["value"] for b in buttons if b["visible"]] == [f"{'ABC'[i]} · {o}  [{'ABC'[i]} / {i + 1}]" for i, o in enumerate(OPTIONS)]
    state, progress, *_ = ui.choose(state, -1)  # "I don't know"
    assert state["tasks"][0].mine == "I don't know" and "All **1** labelled" in progress
    with pytest.warns(UserWarning, match="other annotation mode"):
        ui.verdict(state, "correct")


def test_with_a_login_the_name_field_is_the_user(services):
    class SignedIn:
        username = "ben"

    assert LabelHandlers(services).whoami("ana", "", SignedIn())["value"] == "ben"
    assert LabelHandlers(services).whoami("ana", "", None)["value"] == "ana"
    assert "value" not in LabelHandlers(services).whoami("ana", "zoe", None), "a name typed while the page loaded stays"


def test_the_dashboard_handlers_refresh_skip_and_export(services, tone_wav):
    ask(services, tone_wav)
    ui = DashboardHandlers(services)
    outputs = ui.refresh("human", "(all)", "(all)", "(all)", "total")
    summary, plane, *_, signature = outputs
    assert "Dataset **lab**" in summary and {t.name for t in plane.data} >= {"idk", "mcot", "agent"}
    assert all(isinstance(o, type(gr.skip())) for o in ui.tick("human", "(all)", "(all)", "(all)", "total", False, signature))
    table, page = ui.export("human", "lab", "(all)", "(all)", "total")
    assert table.startswith(services.pool.exports_dir) and open(table).readline().startswith("backend,model_id,method,group")
    assert "plotly" in open(page).read(5000).lower()


def test_the_api_reads_only_uploaded_files_and_signed_in_names(services):
    api = Api(services)
    with pytest.raises(gr.Error, match="handle_file"):
        list(api.compare("/etc/passwd", "What?", OPTIONS, KEY))

    class SignedIn:
        username = "ben"

    with pytest.raises(gr.Error, match="signed in as 'ben'"):
        api.label("some-answer", "wrong", "ana", SignedIn())


def test_build_demo_registers_the_stable_api_names_without_launching(services):
    from reliability.ui.app import build_demo

    demo = build_demo(services)
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"compare", "label", "human_answer", "queue", "metrics"}


# ---------------------------------------------------------------- a human baseline science can use


def add_dataset(services, clip, n=30, audio=lambda i: True):
    """Dataset "mmau": n items, modalities in import order (all sound first), the clip where `audio(i)`."""
    modality = ["sound", "music", "speech"]
    items = [
        Item(f"m{i}", f"Question {i}?", tuple(OPTIONS), KEY, modality[i * 3 // n], str(clip) if audio(i) else None, "mmau")
        for i in range(n)
    ]
    store.upsert_dataset(services.pool.db(), "mmau", [store.StoredItem(i) for i in items])
    return items


def test_human_tasks_are_the_items_with_their_clip(services, tone_wav, tmp_path):
    gone = tmp_path / "gone.wav"
    add_dataset(services, tone_wav, n=6, audio=lambda i: i % 2 == 0)
    store.upsert_dataset(services.pool.db(), "mmau", [store.StoredItem(Item("lost", "Q?", tuple(OPTIONS), KEY, "music", str(gone), "mmau"))])
    queue = services.labels.queue("ana", HUMAN_MODE, "mmau")
    assert {t.item.id for t in queue.tasks} == {"m0", "m2", "m4"}
    assert queue.left_out == {NO_AUDIO: 4}
    assert queue.as_dict()["left_out"] == {"no audio": 4}
    with pytest.raises(StoreError, match="'m1' has no audio"):
        services.labels.human_answer("mmau", "m1", "ana", KEY)
    with pytest.raises(ItemError, match="the clip of item 'lost' is missing"):
        services.labels.human_answer("mmau", "lost", "ana", KEY)
    assert services.pool.db()["labels"].count == 0


def test_every_annotators_queue_is_shuffled_and_balanced(services, tone_wav):
    add_dataset(services, tone_wav, n=30)
    ana, bob = (services.labels.queue(name, HUMAN_MODE, "mmau") for name in ("ana", "bob"))
    assert [t.key for t in ana.tasks] != [t.key for t in bob.tasks]
    assert [t.key for t in ana.tasks] == [t.key for t in services.labels.queue("ana", HUMAN_MODE, "mmau").tasks]  # resumable
    first = [t.item.modality for t in ana.tasks[:6]]
    assert {m: first.count(m) for m in set(first)} == {"sound": 2, "music": 2, "speech": 2}
    assert ana.by_modality == {m: (0, 10) for m in ("sound", "music", "speech")}
    assert "sound 0/10" in progress_text(0, 30, 0, "ana", ana.by_modality, {})


def test_seeing_the_key_takes_the_item_out_of_that_annotators_human_baseline(services, tone_wav):
    ask(services, tone_wav, methods=["baseline"])
    ui = LabelHandlers(services)
    services.labels.human_answer(LAB_DATASET, services.labels.queue("ana", HUMAN_MODE).tasks[0].item.id, "ana", KEY)  # blind, before judging
    state, _, _, _, task, *_ = ui.load_queue("ana", "verdict", "(all)", "(all)", "(all)", False, False, None)
    assert "no longer counts in the human baseline" in task  # said before the key is used
    ui.load_queue("bob", "verdict", "(all)", "(all)", "(all)", False, False, None)  # bob sees the key too
    queue = services.labels.queue("bob", HUMAN_MODE)
    assert queue.tasks == [] and queue.left_out == {KEY_SEEN: 1}
    with pytest.raises(StoreError, match="bob saw the answer key"):
        services.labels.human_answer(LAB_DATASET, state["tasks"][0].item.id, "bob", KEY)
    mine = services.labels.queue("ana", HUMAN_MODE).tasks[0]
    assert mine.mine == KEY and mine.key_seen  # ana's blind answer stands, and can no longer change
    board = services.dashboard.metrics()
    assert (board.counts["human_used"], board.counts["human_excluded"]) == (1, 0)


def test_every_press_is_stored_in_order_and_a_change_takes_two(services, tone_wav):
    ask(services, tone_wav, methods=["baseline", "idk"])
    ui = LabelHandlers(services)
    state, *_ = ui.load_queue("ana", "verdict", "(all)", "(all)", "(all)", False, False, None)
    first, second = (t.answer_id for t in state["tasks"])
    state, *_ = ui.verdict(state, "wrong")
    state, progress, *_ = ui.verdict(state, "wrong")  # the next task, not the same one again
    assert "All **2** labelled" in progress and state["pos"] == 1
    stored = lambda: {r["answer_id"]: r["verdict"] for r in store.label_rows(services.pool.db())}
    assert stored() == {first: "wrong", second: "wrong"}
    with pytest.warns(UserWarning, match="again to change it"):
        state, *_ = ui.verdict(state, "idk")  # a stray key after "all labelled" changes nothing
    assert stored()[second] == "wrong"
    state, *_ = ui.verdict(state, "idk")  # the same key again: the change is meant
    assert stored()[second] == "idk" and state["pos"] == 1
    acks = state["ack"]
    state, _, _, _, task, *_ = ui.verdict(state, "idk")
    assert state["ack"] == acks + 1 and f'data-ack="{acks + 1}"' in task  # a repeat is answered, and unchanged
    assert stored()[second] == "idk" and len(stored()) == 2


def test_switching_mode_shows_only_that_modes_buttons_at_once(services, tone_wav):
    ask(services, tone_wav, methods=["baseline"])
    ui = LabelHandlers(services)
    _, _, _, _, _, verdict_row, choice_col, *_ = ui.switch_mode("", HUMAN_MODE, "(all)", "(all)", "(all)", False, False, None)
    assert (verdict_row["visible"], choice_col["visible"]) == (False, True)
    state, _, _, _, _, verdict_row, choice_col, *_ = ui.switch_mode("ana", "verdict", "(all)", "(all)", "(all)", False, False, None)
    assert (verdict_row["visible"], choice_col["visible"]) == (True, False) and len(state["tasks"]) == 1
    with pytest.warns(UserWarning, match="has no tasks"):
        ui.move({**state, "tasks": []}, 1)


def test_compare_with_a_key_counts_as_seeing_it(services, tone_wav):
    results = ask(services, tone_wav, methods=["baseline"])
    LabelHandlers(services).note_compare_keys("ana", [r.as_dict() for r in results], None)
    assert services.labels.queue("ana", HUMAN_MODE).left_out == {KEY_SEEN: 1}


def test_agreement_is_pooled_over_datasets_and_the_human_row_leads_the_table(services, tone_wav):
    results = ask(services, tone_wav, methods=["baseline"])
    add_dataset(services, tone_wav, n=3)
    run = store.get_or_create_run(services.pool.db(), "mmau", {"backend": "scripted", "model_id": "m"}, {"method": "baseline"}, Decoding(), "full")
    store.save_answers(services.pool.db(), run.id, [Answer("m0", "baseline", "A", Judgement("a dog barking", Outcome.WRONG, True, "t"), [], Decoding())], [None], "j")
    for name in ("ana", "bob"):
        services.labels.label(store.content_id(run.id, "m0"), name, "wrong")
    services.labels.label(results[0].answer_id, "ana", "correct")
    services.labels.human_answer("mmau", "m1", "cy", KEY)
    services.pool.db()["key_views"].insert({"dataset": "mmau", "item_id": "m1", "annotator": "cy", "via": "judge mode", "seen_at": "2000-01-01"})
    services.labels.human_answer("mmau", "m2", "cy", KEY)
    board = services.dashboard.metrics(DashboardFilters(dataset=LAB_DATASET))
    assert board.agreement["parser_n"] == 1 and board.agreement["pooled"]["parser_n"] == 3
    assert board.agreement["pooled"]["annotators"] == ["ana", "bob"]
    text = agreement_text(board)
    assert "all datasets pooled" in text and "Krippendorff" in text
    mmau = services.dashboard.metrics(DashboardFilters(dataset="mmau"))
    assert (mmau.counts["human_used"], mmau.counts["human_excluded"]) == (1, 1)
    table = table_html(mmau, all_columns=True)
    assert table.index("<td>human</td>") < table.index("<td>baseline</td>") and "human · 1 excluded" in table
    assert "1 human answers used, 1 excluded (1 key seen first)" in agreement_text(mmau)


def test_a_press_for_a_missing_option_or_without_a_queue_says_why(services, tone_wav):
    ask(services, tone_wav, methods=["baseline"])
    ui = LabelHandlers(services)
    with pytest.warns(UserWarning, match="Load the queue first"):
        state, *_ = ui.verdict(None, "wrong")
    state, *_ = ui.load_queue("ana", HUMAN_MODE, "(all)", "(all)", "(all)", False, False, None)
    with pytest.warns(UserWarning, match="no option 9"):
        after, *_ = ui.choose(state, 8)
    assert after["ack"] == state["ack"] + 1 and services.pool.db()["labels"].count == 0


def test_keyless_items_stay_out_of_the_risk_coverage_curve_too(services, tone_wav):
    from reliability.backends import get_backend
    from reliability.evaluate import evaluate
    from reliability.types import Generation

    # two items of MMAU's test split kind (no key): their choice would read as wrong and raise the curve's risk
    items = [Item(f"k{i}", "What is heard?", tuple(OPTIONS), KEY, "sound", str(tone_wav), "mmau") for i in range(3)]
    items += [Item(f"open{i}", "What is heard?", tuple(OPTIONS), None, "sound", str(tone_wav), "mmau") for i in range(2)]
    store.upsert_dataset(services.pool.db(), "mmau", [store.StoredItem(i) for i in items])
    confident = get_backend("scripted", responder=lambda request: Generation(["B"], [-3.0, -0.1, -4.0]))
    evaluate(services.pool.db(), confident, items, ["baseline"])
    curve = services.dashboard.metrics(DashboardFilters(dataset="mmau", source=PARSER)).curves["baseline"]
    assert len(curve.coverage) == 3 and curve.risk[-1] == 0.0, curve


def test_compare_refuses_too_many_or_too_long_options_and_backends_the_menu_hides(services, tone_wav):
    from reliability.errors import BackendError

    for options, message in (([f"o{i}" for i in range(1000)], "1000 options; the limit is 26"), (["x" * (1 << 20), "y"], "the limit is 500")):
        with pytest.raises(ItemError, match=message):
            services.compare.compare(str(tone_wav), "Which?", options, "", ["baseline"])
    with pytest.raises(BackendError, match="'openai' is not offered by this app.*--allow-backend"):
        services.compare.compare(str(tone_wav), "Which?", OPTIONS, KEY, ["baseline"], backend="openai")
    with pytest.raises(StoreError, match="at most 64 characters"):
        services.labels.queue("a" * 10_000)


def test_without_auth_one_api_queue_call_shows_and_marks_only_the_key_to_label_next(services, tone_wav):
    add_dataset(services, tone_wav, n=3)
    run = store.get_or_create_run(services.pool.db(), "mmau", {"backend": "scripted", "model_id": "m"}, {"method": "baseline"}, Decoding(), "full")
    store.save_answers(
        services.pool.db(), run.id, [Answer(f"m{i}", "baseline", "A", Judgement("A", Outcome.WRONG, True, "t"), [], Decoding()) for i in range(3)],
        [None] * 3, "j",
    )
    data = Api(services).queue("victim", "verdict", "mmau", limit=10_000)
    assert sum(t["answer_key"] is not None for t in data["tasks"]) == 1 and len(data["tasks"]) == 3
    assert len(store.key_views(services.pool.db(), "victim")) == 1
    signed_in = Api(services).queue("ana", "verdict", "mmau", request=SimpleNamespace(username="ana"))  # her own name: every key
    assert all(t["answer_key"] == KEY for t in signed_in["tasks"]) and len(store.key_views(services.pool.db(), "ana")) == 3


def test_a_browser_that_saw_a_key_in_compare_unnamed_stays_non_blind_once_named(services, tone_wav):
    results = ask(services, tone_wav, methods=["baseline"])
    ui = LabelHandlers(services)
    kept = ui.note_compare_keys("", [r.as_dict() for r in results], None, [])  # no name typed yet
    assert kept == [[LAB_DATASET, results[0].item_id]] and store.key_views(services.pool.db(), "ana") == {}
    state, *_ = ui.load_queue("ana", HUMAN_MODE, "(all)", "(all)", "(all)", False, False, None, kept)
    assert state["tasks"] == [] and state["left_out"] == {KEY_SEEN: 1}
    with pytest.raises(StoreError, match="saw the answer key"):
        services.labels.human_answer(LAB_DATASET, results[0].item_id, "ana", KEY)


def test_requests_keeping_the_same_clip_at_once_all_succeed(services, tone_wav):
    """Each keeps the upload through its own part file; a shared one was lost to the other's rename."""
    import threading

    errors = []

    def keep(i):
        for j in range(5):
            try:
                services.compare.prepare(str(tone_wav), f"Question {i}-{j}?", OPTIONS, KEY)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(repr(exc))

    threads = [threading.Thread(target=keep, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(os.listdir(services.pool.uploads_dir)) == 1


def test_a_key_seen_under_a_refused_name_is_still_kept_by_the_browser(services, tone_wav):
    results = ask(services, tone_wav, methods=["baseline"])
    with pytest.warns(UserWarning, match="at most 64 characters"):
        kept = LabelHandlers(services).note_compare_keys("x" * 100, [r.as_dict() for r in results], None, [])
    assert kept == [[LAB_DATASET, results[0].item_id]]
