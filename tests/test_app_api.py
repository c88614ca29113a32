"""The app end to end through gradio_client: launched in a subprocess on the scripted backend, driven by API name.

Also holds the helpers the other app tests import: `running_app` (a subprocess with a free port) and
`seed_lab` (a notebook filled with varied answers, made in-process with the same backend setup).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

import httpx
import numpy as np
import pytest
import soundfile as sf

from reliability.audio import SAMPLE_RATE
from reliability.services import Services, Settings
from reliability.types import Request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP_REPLY = "B"  # what the app's scripted backend answers: option B, or a stray word for the agent's helper steps
STARTUP_S = 90  # importing gradio, torch-free, on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(db: os.PathLike, *args: str, reply: str = APP_REPLY) -> Iterator[str]:
    """`python app.py --backend scripted` on a free port; yields its URL and stops it afterwards."""
    port = free_port()
    log_path = f"{db}.app.log"
    cmd = [
        sys.executable, "app.py", "--backend", "scripted", "--backend-arg", f"reply={reply}", "--db", os.fspath(db),
        "--port", str(port), "--adapters-dir", f"{db}.adapters", "--no-preload", *args,
    ]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}:\n{_tail(log_path)}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not start within {STARTUP_S} s:\n{_tail(log_path)}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _tail(path: str, n: int = 40) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-n:])


def seeded_responder(keys: dict[str, tuple[str, str]]):
    """Replies shaped like the paper's: the baseline right on most items; a method allowed to say "I don't know"
    abstains mostly where the baseline is wrong (humility) and sometimes where it is right (conservatism)."""

    def respond(request: Request) -> str:
        text = request.messages[-1]["content"]
        question = next((q for q in keys if q in text), None)
        if question is None:
            return "sound"  # the Task Agent's helper steps
        right, wrong = keys[question]
        knows = _draw(question) < 65  # the same for every method: what the model "knows"
        if "I don't know" in text and _draw(text) < (15 if knows else 55):
            return "I don't know"
        return right if knows else wrong

    return respond


def _draw(text: str) -> int:
    """A stable pseudo-random number in 0..99."""
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 100


def seed_lab(db: os.PathLike, data_dir: os.PathLike, n_items: int = 24, methods: Sequence[str] = ("baseline", "idk", "agent")) -> list[str]:
    """Fill a notebook with `n_items` compared items (modalities in turn) answered by `methods`; returns the
    answer ids. The backend is the scripted one the app runs, so the app's runs are the same runs."""
    clip = os.path.join(os.fspath(data_dir), "seed.wav")
    os.makedirs(os.fspath(data_dir), exist_ok=True)
    sf.write(clip, (0.3 * np.sin(2 * np.pi * 330 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32), SAMPLE_RATE)
    choices = ["a tone", "street noise", "a voice", "a piano"]
    questions = {f"Seed question {i}: what is heard?": i % len(choices) for i in range(n_items)}
    keys = {q: ("ABCD"[k], "ABCD"[(k + 1) % 4]) for q, k in questions.items()}
    services = Services.build(Settings(os.fspath(db), os.fspath(data_dir), backend="scripted", backend_kwargs={"responder": seeded_responder(keys)}))
    answer_ids = []
    for i, (question, key) in enumerate(questions.items()):
        modality = ("sound", "music", "speech")[i % 3]
        for result in services.compare.compare(clip, question, choices, choices[key], list(methods), modality=modality):
            assert result.error is None, result.error
            answer_ids.append(result.answer_id)
    return answer_ids


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """A running app on a fresh notebook: (url, db path)."""
    folder = tmp_path_factory.mktemp("app")
    db = folder / "lab.db"
    with running_app(db) as url:
        yield url, db


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app[0], verbose=False)


def test_the_api_lists_its_stable_names(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/compare", "/label", "/human_answer", "/queue", "/metrics"} == names


def test_compare_label_metrics_round_trip(client, tone_wav):
    from gradio_client import handle_file

    methods = ["baseline", "idk", "mcot", "agent"]
    options = ["a dog barking", "a steady tone", "a car horn"]
    results = client.predict(handle_file(str(tone_wav)), "What is heard?", options, "a steady tone", methods, "", "sound", api_name="/compare")
    assert [r["method"] for r in results] == methods
    assert all(r["error"] is None and r["outcome"] == "correct" and not r["cached"] for r in results), results
    agent = results[3]
    assert agent["audio_type"] == "sound" and agent["tool"]["name"] == "sound caption"
    assert len(agent["steps"]) == 3

    again = client.predict(handle_file(str(tone_wav)), "What is heard?", options, "B", methods, "", "sound", api_name="/compare")
    assert all(r["cached"] for r in again)  # the same request, answered from the notebook
    assert [r["answer_id"] for r in again] == [r["answer_id"] for r in results]

    before = client.predict(api_name="/metrics")
    idk = results[1]
    label = client.predict(idk["answer_id"], "wrong", "ana", api_name="/label")
    assert label["annotator"] == "ana" and label["verdict"] == "wrong"
    after = client.predict(api_name="/metrics")
    assert after["counts"]["labels"] == before["counts"]["labels"] + 1
    assert after["agreement"]["labels_by_annotator"] == {"ana": 1}
    idk_total = next(r for r in after["rows"] if r["method"] == "idk" and r["group"] == "total")
    assert idk_total["source"] == "human" and idk_total["wrong"] == 1
    point = next(p for p in after["points"] if p["method"] == "idk" and p["group"] == "total")
    assert point["lost_correct"] == 1 and point["delta_con"] == 1.0
    parser_only = client.predict("parser", api_name="/metrics")
    assert next(r for r in parser_only["rows"] if r["method"] == "idk" and r["group"] == "total")["correct"] == 1

    queue = client.predict("ana", api_name="/queue")
    assert (queue["done"], queue["total"]) == (1, 4)
    assert next(t for t in queue["tasks"] if t["answer_id"] == idk["answer_id"])["mine"] == "wrong"
    todo = client.predict("ana", unlabelled_only=True, api_name="/queue")
    assert todo["total"] == 3 and idk["answer_id"] not in {t["answer_id"] for t in todo["tasks"]}


def test_bad_requests_are_refused_with_one_line(app, client, tone_wav, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    cases = [
        ((handle_file(str(tone_wav)), "  ", ["a", "b"], "a"), "no question"),
        ((handle_file(str(tone_wav)), "Which?", [], "a"), "no options"),
        ((handle_file(str(tone_wav)), "Which?", ["a", "b"], "c"), "not one of the options"),
        (("/etc/passwd", "Which?", ["a", "b"], "a"), "handle_file"),
    ]
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF not really a wave file")
    cases.append(((handle_file(str(corrupt)), "Which?", ["a", "b"], "a"), "not a readable audio file"))
    for args, message in cases:
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/compare")
    with pytest.raises(AppError, match="not one of"):
        client.predict("no-such-answer", "maybe", "ana", api_name="/label")
    with pytest.raises(AppError, match="no answer"):
        client.predict("no-such-answer", "wrong", "ana", api_name="/label")
    assert "counts" in client.predict(api_name="/metrics")  # the server still serves
    log = _tail(f"{app[1]}.app.log", 400)
    # the terminal: one warning line per mistake, no traceback, no line per HTTP request
    assert "Traceback" not in log and "WARNING reliability.ui.handlers: compare: no question" in log
    assert "HTTP Request:" not in log


def test_a_huge_upload_is_refused_before_it_reaches_the_lab(client, tmp_path):
    from gradio_client import handle_file

    huge = tmp_path / "huge.wav"
    with open(huge, "wb") as f:
        f.truncate(51 * 1024 * 1024)  # over the app's 50 MB upload limit
    with pytest.raises(Exception, match="(?i)too large|413|maximum"):
        client.predict(handle_file(str(huge)), "What?", ["a", "b"], "a", ["baseline"], api_name="/compare")
    assert "counts" in client.predict(api_name="/metrics")  # the server still serves


def test_a_missing_adapter_fails_that_method_only(client, tone_wav):
    from gradio_client import handle_file

    results = client.predict(handle_file(str(tone_wav)), "Adapter?", ["x", "y"], "x", ["baseline", "lora:nope"], api_name="/compare")
    assert results[0]["error"] is None
    assert results[1]["error"].startswith("unknown adapter 'nope'")


def test_only_the_apps_own_files_are_served(app):
    url, db = app
    for path in (db, "/etc/passwd", os.path.join(REPO, "app.py"), os.path.join(os.path.dirname(db), "uploads")):
        response = httpx.get(f"{url}gradio_api/file={path}")
        assert response.status_code in (403, 404), (path, response.status_code)
    clip = os.path.join(REPO, "reliability", "demo", "clips", "speech.flac")
    assert httpx.get(f"{url}gradio_api/file={clip}").status_code == 200


def test_a_read_only_database_is_reported_and_the_server_keeps_serving(tmp_path, tone_wav):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    db = tmp_path / "lab.db"
    Services.build(Settings(str(db), str(tmp_path))).pool.db()  # create it, then make it read-only
    db.chmod(0o444)
    try:
        with running_app(db) as url:
            client = Client(url, verbose=False)
            for _ in range(2):
                with pytest.raises(AppError, match="read-only"):
                    client.predict(handle_file(str(tone_wav)), "What?", ["a", "b"], "a", ["baseline"], api_name="/compare")
            with pytest.raises(AppError, match="read-only"):
                client.predict(api_name="/metrics")
    finally:
        db.chmod(0o644)


def test_with_logins_the_annotator_is_the_signed_in_user(tmp_path, tone_wav):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    with running_app(tmp_path / "lab.db", "--auth", "ana:pw1", "--auth", "ben:pw2") as url:
        client = Client(url, auth=("ben", "pw2"), verbose=False)
        results = client.predict(handle_file(str(tone_wav)), "Which?", ["a", "b"], "a", ["baseline"], api_name="/compare")
        label = client.predict(results[0]["answer_id"], "correct", api_name="/label")
        assert label["annotator"] == "ben"
        with pytest.raises(AppError, match="signed in as 'ben'"):
            client.predict(results[0]["answer_id"], "correct", "ana", api_name="/label")


def test_the_human_baseline_api_needs_the_clip_and_a_blind_annotator(app, client, tmp_path):
    from gradio_client.exceptions import AppError

    from annotations import store
    from annotations.db import open_db
    from reliability.types import Answer, Decoding, Item, Judgement, Outcome

    clip = tmp_path / "clip.wav"
    sf.write(clip, np.zeros(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    items = [Item(i, f"{i}?", ("x", "y"), "x", "sound", None if i == "mute" else str(clip), "api-mmau") for i in ("heard", "mute", "judged")]
    con = open_db(app[1])
    store.upsert_dataset(con, "api-mmau", [store.StoredItem(i) for i in items])
    run = store.get_or_create_run(con, "api-mmau", {"backend": "scripted", "model_id": "m"}, {"method": "baseline"}, Decoding())
    store.save_answers(con, run.id, [Answer("judged", "baseline", "y", Judgement("y", Outcome.WRONG, True, "t"), [], Decoding())], [None], "j")

    queue = client.predict("dee", "human", "api-mmau", api_name="/queue")
    assert {t["item_id"] for t in queue["tasks"]} == {"heard", "judged"} and all(t["has_audio"] for t in queue["tasks"])
    assert queue["left_out"] == {"no audio": 1} and "answer_key" not in queue["tasks"][0]
    judging = client.predict("dee", "verdict", "api-mmau", api_name="/queue")
    assert judging["tasks"][0]["answer_key"] == "x"  # dee now knows the key of "judged"
    with pytest.raises(AppError, match="'mute' has no audio"):
        client.predict("api-mmau", "mute", "x", "dee", api_name="/human_answer")
    with pytest.raises(AppError, match="dee saw the answer key of item 'judged' in the API"):
        client.predict("api-mmau", "judged", "x", "dee", api_name="/human_answer")
    client.predict("api-mmau", "heard", "y", "dee", api_name="/human_answer")
    board = client.predict("human", "api-mmau", api_name="/metrics")
    human = next(r for r in board["rows"] if r["method"] == "human" and r["group"] == "total")
    assert (human["n"], human["wrong"]) == (1, 1) and board["counts"]["human_used"] == 1
    assert client.predict("dee", "human", "api-mmau", api_name="/queue")["left_out"] == {"no audio": 1, "you saw the key": 1}


def test_a_file_path_outside_the_uploads_is_refused_with_one_line(app):
    """A client that names a server file instead of uploading one hears why, not `{"error": null}`."""
    outside = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}
    started = httpx.post(f"{app[0]}gradio_api/call/compare", json={"data": [outside, "Which?", ["a", "b"], "a", ["baseline"], "", "sound"]}, timeout=30)
    events = httpx.get(f"{app[0]}gradio_api/call/compare/{started.json()['event_id']}", timeout=60).text
    error = events.split("event: error\ndata: ", 1)[1].splitlines()[0]
    assert "not uploaded by a user" in error and error != "null", events


def test_compare_without_methods_asks_the_ticked_ones_with_the_shipped_adapter(tmp_path, tone_wav, monkeypatch):
    """The API's default is the Compare tab's: the four training-free methods and lora:default when it is shipped
    and the backend can load it; an adapter trained by the user is offered but not asked unless named."""
    from reliability.methods import method_names
    from reliability.training import adapters
    from reliability.ui.api import Api

    shipped, mine = tmp_path / "shipped", tmp_path / "mine"
    for folder in (shipped / "default", mine / "extra"):
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text("{}")
        (folder / "card.json").write_text(json.dumps({"base": {"backend": "scripted", "model_id": "scripted"}}))
    monkeypatch.setattr(adapters, "SHIPPED_DIR", shipped)
    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path), backend="scripted", backend_kwargs={"reply": "a"}, adapters_dir=str(mine)))
    assert services.pool.method_names() == [*method_names(), "lora:default", "lora:extra"]
    *_, results = Api(services).compare({"path": str(tone_wav)}, "Which?", ["a", "b"], "a")
    assert [r["method"] for r in results] == [*method_names(), "lora:default"]
    assert not any(r["error"] for r in results), results
