"""The openai backend against the real `serve` in a subprocess on 127.0.0.1: answers, option scores, n samples,
no-audio requests, errors in words, several servers, and a server killed mid-run then resumed."""
from __future__ import annotations

import base64
import io
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from annotations.db import open_db
from reliability.backends.openai_backend import OpenAIBackend, _NoScores, tail_mean_logprob, wav_base64
from reliability.errors import BackendError
from reliability.types import Decoding, Request
from tests.conftest import tone
from tests.test_serve import KEY, free_port, running_serve

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "reliability" / "demo"
QUESTION = [{"role": "user", "content": "What is the main sound in the audio?"}]
GREEDY = Decoding(max_new_tokens=8)


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * 16_000))).astype(np.float32)


@pytest.fixture(scope="module")
def scripted_server():
    with running_serve("--backend", "scripted", "--backend-arg", "reply=(A) a bell", "--api-key", KEY) as server:
        yield server


@pytest.fixture
def with_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


# -- without a server --------------------------------------------------------------------------


def test_the_clip_travels_losslessly_as_an_audio_part_and_no_audio_sends_none():
    samples = noise(0.5, 1)
    backend = OpenAIBackend("http://127.0.0.1:1/v1")
    turns = backend.messages(Request(QUESTION, samples, audio_hash="h"))
    part, text = turns[0]["content"]
    assert part["type"] == "input_audio" and text == {"type": "text", "text": QUESTION[0]["content"]}
    decoded, sr = sf.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])), dtype="float32")
    assert sr == 16_000 and np.array_equal(decoded, samples)
    url = OpenAIBackend("http://127.0.0.1:1/v1", audio_format="audio_url").messages(Request(QUESTION, samples))[0]["content"][0]
    assert url["audio_url"]["url"] == f"data:audio/wav;base64,{wav_base64(samples)}"
    assert backend.messages(Request(QUESTION)) == QUESTION


def test_vllm_prompt_logprobs_score_the_option_tokens_at_the_end_of_the_prompt():
    def entry(token: str, logprob: float) -> dict:
        return {"7": {"logprob": logprob, "rank": 1, "decoded_token": token}}

    entries = [None, entry("<|im_start|>", -9.0), entry("assistant", -1.0), entry("\n", -0.5), entry(" a", -0.2), entry(" dog", -0.4)]
    assert math.isclose(tail_mean_logprob(entries, "a dog"), -0.3)
    with pytest.raises(_NoScores, match="not the option"):
        tail_mean_logprob(entries, "a cat")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"base_url": "127.0.0.1:8000"}, "not an http"),
        ({"base_url": ""}, "base_url=http"),
        ({"audio_format": "mp3"}, "known: input_audio, audio_url"),
        ({"option_scores": "maybe"}, "known: auto"),
        ({"concurrency": 0}, "at least 1"),
    ],
)
def test_bad_arguments_are_refused_in_words(kwargs, message):
    with pytest.raises(BackendError, match=message):
        OpenAIBackend(**kwargs)


# -- against serve (scripted backend) ----------------------------------------------------------


def test_identity_names_the_server_the_model_and_the_served_weights(scripted_server, with_key):
    backend = OpenAIBackend(scripted_server.url)
    assert backend.describe() == {
        "backend": "openai", "model_id": f"scripted@127.0.0.1:{scripted_server.port} [scripted:scripted]", "adapter": None,
    }


def test_no_audio_requests_and_answers_without_scores_say_why(scripted_server, with_key):
    backend = OpenAIBackend(scripted_server.url, model="scripted")
    gens = backend.generate([Request(QUESTION, None, GREEDY, ("a bell", "a dog")), Request(QUESTION, tone(seconds=0.3), Decoding(num_samples=3))])
    assert [g.texts for g in gens] == [["(A) a bell"], ["(A) a bell"] * 3]
    assert gens[0].option_logprobs is None and "no option log-probabilities" in gens[0].meta["no_confidence"]
    assert gens[0].meta["server"] == f"127.0.0.1:{scripted_server.port}"


def test_a_wrong_key_an_unknown_model_and_a_dead_server_are_one_clear_line(scripted_server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    with pytest.raises(BackendError, match=r"refused the API key \(401\).*\$OPENAI_API_KEY"):
        OpenAIBackend(scripted_server.url).describe()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(BackendError, match="model 'Qwen/Qwen2-Audio-7B-Instruct' is not served .* it serves: scripted"):
        OpenAIBackend(scripted_server.url, model="Qwen/Qwen2-Audio-7B-Instruct").describe()
    with pytest.raises(BackendError, match="not reachable.*is it running"):
        OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", max_retries=0).describe()


def test_several_servers_share_the_load(scripted_server, with_key):
    with running_serve("--backend", "scripted", "--backend-arg", "reply=(A) a bell", "--api-key", KEY) as second:
        backend = OpenAIBackend(f"{scripted_server.url},{second.url}", concurrency=4)
        gens = backend.generate([Request(QUESTION, None, GREEDY) for _ in range(8)])
        assert {g.meta["server"] for g in gens} == {f"127.0.0.1:{scripted_server.port}", f"127.0.0.1:{second.port}"}
        assert ",".join(sorted([f"127.0.0.1:{scripted_server.port}", f"127.0.0.1:{second.port}"])) in backend.describe()["model_id"]


def demo_dataset(tmp_path: Path) -> Path:
    """The demo items in MMAU's layout (task = modality), importable with --audio-dir demo."""
    records = [
        {"id": r["id"], "audio_id": r["audio"], "question": r["question"], "choices": r["choices"], "answer": r["answer"], "task": r["modality"]}
        for r in json.loads((DEMO / "items.json").read_text())
    ]
    path = tmp_path / "demo.json"
    path.write_text(json.dumps(records))
    return path


def test_a_server_killed_mid_run_then_restarted_answers_every_item_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    db_path = tmp_path / "lab.db"
    cli = [sys.executable, "-m", "reliability"]
    subprocess.run([*cli, "import", "dataset", str(demo_dataset(tmp_path)), "--name", "demo", "--audio-dir", str(DEMO), "--db", str(db_path)], cwd=ROOT, check=True, capture_output=True)
    with running_serve("--backend", "scripted", "--backend-arg", "reply=(A) x", "--backend-arg", "delay_s=0.3", "--api-key", KEY) as server:
        command = [
            *cli, "evaluate", "--db", str(db_path), "--dataset", "demo", "--methods", "baseline,idk", "--batch-size", "2",
            "--backend", "openai", "--backend-arg", f"base_url={server.url}", "--backend-arg", "max_retries=0",
        ]
        run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        watcher = open_db(db_path)
        deadline = time.monotonic() + 120
        while watcher["answers"].count < 4:
            assert run.poll() is None, run.stderr.read()
            assert time.monotonic() < deadline, "the run never saved two batches"
            time.sleep(0.05)
        server.kill()
        _, stderr = run.communicate(timeout=60)
        assert run.returncode == 1 and "not reachable" in stderr.splitlines()[-1] and "Traceback" not in stderr
        saved = watcher["answers"].count
        assert 4 <= saved < 18

        server.start()
        rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"answered {18 - saved} new, {saved} cached" in rerun.stdout
    rows = list(watcher.query("SELECT run_id, item_id, count(*) AS n FROM answers GROUP BY run_id, item_id"))
    assert len(rows) == 18 and {r["n"] for r in rows} == {1}
    assert watcher["runs"].count == 2


# -- against serve (the tiny Qwen2-Audio): the same answers and option scores as in process ----


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    pytest.importorskip("transformers")
    from tests.tiny import tiny_qwen2_audio

    return tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))


@pytest.fixture(scope="module")
def tiny_server(tiny_path):
    with running_serve("--backend", "qwen2-audio", "--backend-arg", f"model_id={tiny_path}", "--model-name", "tiny") as server:
        yield server


def test_answers_and_option_scores_equal_the_in_process_backend(tiny_path, tiny_server):
    from reliability.backends.qwen2_audio import Qwen2AudioBackend

    requests = [
        Request(QUESTION, noise(1.0, 0), GREEDY, ("a dog", "rain", "a violin")),
        Request(QUESTION, tone(seconds=2.0), GREEDY, ("a dog", "rain")),
        Request(QUESTION, None, GREEDY, ("yes", "no")),
    ]
    local = Qwen2AudioBackend(str(tiny_path)).generate(requests)
    remote = OpenAIBackend(tiny_server.url, model="tiny", concurrency=2).generate(requests)
    assert [g.texts for g in remote] == [g.texts for g in local]
    for r, l in zip(remote, local):
        assert np.allclose(r.option_logprobs, l.option_logprobs, atol=1e-4), (r.option_logprobs, l.option_logprobs)


def test_n_samples_come_back_from_one_request(tiny_server):
    sampled = Decoding(do_sample=True, temperature=1.5, max_new_tokens=6, num_samples=4, seed=7)
    (gen,) = OpenAIBackend(tiny_server.url).generate([Request(QUESTION, tone(seconds=0.5), sampled)])
    assert len(gen.texts) == 4 and len(set(gen.texts)) > 1


# -- the app ------------------------------------------------------------------------------------


def test_the_app_menu_offers_openai_only_when_the_command_line_gives_it(tmp_path):
    from reliability.ui.app import make_services, parse_args

    chosen = make_services(parse_args(["--backend", "openai", "--backend-arg", "base_url=http://127.0.0.1:8000/v1", "--db", str(tmp_path / "a.db")])).pool
    assert chosen.backend_names()[0] == "openai" and chosen.settings.backend_kwargs == {"base_url": "http://127.0.0.1:8000/v1"}
    assert "openai" not in make_services(parse_args(["--db", str(tmp_path / "b.db")])).pool.backend_names()


def test_an_answer_without_a_confidence_says_why_on_its_card():
    from reliability.services.compare import MethodResult
    from reliability.ui.render import result_cards

    why = "no option log-probabilities from m: the server returned none"
    result = MethodResult("baseline", text="A", outcome="correct", key="a", steps=[{"name": "answer", "messages": [], "text": "A", "meta": {"no_confidence": why}}])
    assert f"n/a ({why})" in result_cards(["baseline"], {"baseline": result})


@pytest.mark.slow
def test_the_cascade_through_serve_answers_the_demo_items_as_in_process():
    from tests.test_cascade import COMPONENTS, demo_items
    from tests.test_evidence import missing

    absent = missing(COMPONENTS)
    if absent:
        pytest.skip(f"the cascade needs {', '.join(absent)}")
    from reliability.audio import load_audio
    from reliability.backends.cascade import CascadeBackend
    from reliability.methods import ask, get_method

    items = demo_items()
    clips = [load_audio(item.audio_path) for item in items]
    with running_serve("--backend-arg", "threads=2") as server:
        remote = ask(get_method("baseline"), OpenAIBackend(server.url), items, clips)
    local = ask(get_method("baseline"), CascadeBackend(threads=2), items, clips)
    assert [a.text for a in remote] == [a.text for a in local]
    assert [r.confidence is None for r in remote] == [l.confidence is None for l in local]
    # bfloat16 sums over whole replies differ a little between batch compositions (serve batches whatever
    # arrives together): up to 0.06 in confidence measured on these items, where the best two choices are close
    assert all(abs(r.confidence - l.confidence) < 0.1 for r, l in zip(remote, local) if r.confidence is not None)
