"""The method registry: one class registered in a test is offered, run and stored by the CLI, the app and its API."""
from __future__ import annotations

import json

import gradio as gr
import pytest

from annotations import store
from annotations.db import open_db
from reliability.cli.main import main
from reliability.errors import UnknownNameError
from reliability.services import Services, Settings
from reliability.methods import METHODS, SinglePrompt, get_method, method_names, register_method
from reliability.types import Request
from reliability.ui.api import Api

ECHO = "echo-test"
ECHO_SUFFIX = "Repeat the second option, word for word."
OPTIONS = ["a dog", "a steady tone"]


@pytest.fixture
def echo():
    """A test-only method registered for one test; the registry is restored afterwards for every other test."""
    saved = dict(METHODS)

    class Echo(SinglePrompt):
        name = ECHO
        title = "Echo (test)"
        suffix = ECHO_SUFFIX

    register_method(Echo)
    yield Echo
    METHODS.clear()
    METHODS.update(saved)


def reply(request: Request) -> str:
    """Option B where the echo method's own instruction was sent, A otherwise: shows which prompt ran."""
    return "B" if request.messages[-1]["content"].endswith(ECHO_SUFFIX) else "A"


def test_registration_appends_in_order_and_refuses_a_taken_name(echo):
    assert method_names() == ["baseline", "idk", "mcot", "agent", ECHO]
    assert isinstance(get_method(ECHO), echo)
    with pytest.raises(ValueError, match=f"{ECHO!r} is taken.*registered: baseline, idk, mcot, agent, {ECHO}"):
        register_method(echo)

    class Lora(SinglePrompt):
        name = "lora:mine"

    with pytest.raises(ValueError, match=r"taken by the lora:<adapter> methods"):
        register_method(Lora)
    with pytest.raises(UnknownNameError, match=ECHO):
        get_method("echo")


def test_the_registry_is_restored_after_a_test():
    assert ECHO not in method_names()


def test_the_cli_lists_runs_and_stores_a_registered_method(echo, tmp_path, tone_wav, capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert f"{ECHO},lora:<adapter>" in capsys.readouterr().out.replace("\n", "").replace(" ", "")

    data = tmp_path / "toy.json"
    record = {"id": "t1", "audio_id": tone_wav.name, "question": "What is heard?", "choices": OPTIONS, "answer": OPTIONS[1], "task": "sound"}
    data.write_text(json.dumps([record]))
    db = str(tmp_path / "lab.db")
    assert main(["import", "dataset", str(data), "--db", db, "--audio-dir", str(tone_wav.parent)]) == 0
    scripted = ["--backend", "scripted", "--backend-arg", "reply=B"]
    assert main(["evaluate", "--db", db, "--dataset", "toy", "--methods", f"baseline,{ECHO}", *scripted]) == 0
    assert "answered 2 new" in capsys.readouterr().out

    lab_db = open_db(db)
    runs = {run.method: run.id for run in store.list_runs(lab_db)}
    assert set(runs) == {"baseline", ECHO}
    [row] = store.answer_rows(lab_db, [runs[ECHO]])
    assert row["method"] == ECHO and row["choice"] == OPTIONS[1] and row["audio_hash"]
    assert row["steps"][0]["messages"][-1]["content"].endswith(ECHO_SUFFIX)


def test_the_app_and_its_api_offer_and_run_a_registered_method(echo, tmp_path, tone_wav):
    from reliability.ui.app import build_demo

    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path / "data"), backend="scripted", backend_kwargs={"responder": reply}))
    assert services.pool.method_names()[-1] == ECHO

    demo = build_demo(services)
    [menu] = [b for b in demo.blocks.values() if isinstance(b, gr.CheckboxGroup) and b.label.startswith("Methods")]
    assert ("Echo (test)", ECHO) in menu.choices and ECHO in menu.value

    *_, results = Api(services).compare({"path": str(tone_wav)}, "What is heard?", OPTIONS, OPTIONS[1])
    by_method = {r["method"]: r for r in results}
    assert list(by_method) == method_names()
    assert by_method[ECHO]["choice"] == OPTIONS[1] and by_method[ECHO]["outcome"] == "correct"
    assert by_method["baseline"]["choice"] == OPTIONS[0], "the other methods did not get the echo instruction"
