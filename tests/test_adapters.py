"""Saved adapters: the shipped ones are found without flags (CLI, services), the user's shadow them, and an adapter
trained on another base model or prompt version is refused with one line. On the tiny cascade stand-in."""
from __future__ import annotations

import json
import logging
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from annotations import store  # noqa: E402
from annotations.db import open_db  # noqa: E402
from reliability import prompts  # noqa: E402
from reliability.errors import BackendError  # noqa: E402
from reliability.training import adapters  # noqa: E402
from reliability.training.adapters import check_compatible, ensure_loaded, get_adapter, list_adapters  # noqa: E402
from reliability.training.lora import TrainConfig, train_lora  # noqa: E402
from reliability.types import Item, Request  # noqa: E402

from tests.test_train_lora import FAST, examples, tiny_cascade  # noqa: E402

REPOSITORY_ADAPTERS = adapters.SHIPPED_DIR  # read before conftest's no_shipped_adapters empties it for each test


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny-cascade adapter named "default", trained towards "I don't know" (rebuilt per test by `shipped`)."""
    backend = tiny_cascade()
    clips = tmp_path_factory.mktemp("clips")
    import soundfile as sf

    from reliability.audio import SAMPLE_RATE
    from tests.conftest import tone

    sf.write(clips / "tone.wav", tone(), SAMPLE_RATE)
    folder = tmp_path_factory.mktemp("trained")
    config = TrainConfig(name="default", rank=4, alpha=32, epochs=12, **FAST)
    train_lora(backend, examples(str(clips / "tone.wav"), prompts.IDK_REPLY, n=2), config, folder)
    return folder / "default"


@pytest.fixture
def shipped(trained, tmp_path, monkeypatch):
    """The trained adapter as the lab's shipped "default", and an empty user adapters folder in $RELIABILITY_ADAPTERS."""
    ship = tmp_path / "shipped"
    shutil.copytree(trained, ship / "default")
    monkeypatch.setattr(adapters, "SHIPPED_DIR", ship)
    monkeypatch.setenv(adapters.ADAPTERS_ENV, str(tmp_path / "mine"))
    return ship / "default"


def rewrite_card(folder, **base):
    card = json.loads((folder / "card.json").read_text())
    card["base"].update(base)
    (folder / "card.json").write_text(json.dumps(card))


def test_the_card_records_what_the_adapter_depends_on(shipped):
    card = json.loads((shipped / "card.json").read_text())
    backend = tiny_cascade()
    assert card["base"] == backend.adapter_base()
    assert {"model_hash", "prompt_version", "evidence_version"} <= card["base"].keys()
    assert len(card["dataset"]["hash"]) == 12 and card["hyperparameters"]["seed"] == 0


def test_a_shipped_adapter_is_found_without_flags(shipped):
    found = get_adapter("default")
    assert found.shipped and found.path == str(shipped)
    backend = tiny_cascade()
    assert ensure_loaded(backend, ["default"]) == ["default"]
    assert "default" in backend.adapters()


def test_a_second_adapter_loads_without_a_false_alarm_and_a_truncated_one_is_refused(trained, tmp_path, caplog):
    from safetensors.torch import load_file, save_file

    backend = tiny_cascade()
    question = Request([{"role": "user", "content": "Which animal is it?"}], choices=("a dog", "a cat"))
    base = backend.generate([question])[0].option_logprobs
    with caplog.at_level(logging.WARNING):
        backend.load_adapter(str(trained), "first")
        backend.load_adapter(str(trained), "second")
    assert "MISSING" not in caplog.text, "the other adapter's weights are not this one's missing weights"
    cut = tmp_path / "cut"
    shutil.copytree(trained, cut)
    weights = load_file(str(cut / adapters.WEIGHTS_FILE))
    save_file(dict(list(weights.items())[1:]), str(cut / adapters.WEIGHTS_FILE), metadata={"format": "pt"})
    with pytest.raises(BackendError, match=r"adapter 'cut' in .* lacks 1 of its weights"):
        backend.load_adapter(str(cut), "cut")
    assert backend.adapters() == ["first", "second"], "the incomplete adapter is not left attached"
    assert backend.generate([question])[0].option_logprobs == pytest.approx(base), "and no adapter is switched on by it"


def test_a_users_adapter_of_the_same_name_wins(shipped, tmp_path):
    shutil.copytree(shipped, tmp_path / "mine" / "default")
    found = [a for a in list_adapters() if a.name == "default"]
    assert len(found) == 1 and not found[0].shipped


def test_cli_evaluate_runs_lora_default_without_flags(shipped, tmp_path, monkeypatch, capsys):
    from reliability.cli import main as cli

    db_path = tmp_path / "lab.db"
    db = open_db(str(db_path))
    items = [Item(f"q{i}", f"Which animal is it, number {i}?", ("a dog", "a cat"), "a dog", "sound", None, "toy") for i in range(3)]
    store.upsert_dataset(db, "toy", [store.StoredItem(item) for item in items])
    backend = tiny_cascade()
    monkeypatch.setattr(cli, "backend_from_args", lambda args: backend)
    status = cli.main(["evaluate", "--db", str(db_path), "--dataset", "toy", "--methods", "baseline,lora:default", "--no-audio"])
    assert status == 0, capsys.readouterr().err
    runs = {r.method: r for r in store.list_runs(db, "toy")}
    assert set(runs) == {"baseline", "lora:default"}
    answers = {m: [a["text"] for a in store.answer_rows(db, [runs[m].id])] for m in runs}
    assert answers["lora:default"] != answers["baseline"], "the adapter is live: it changes answers"


def test_a_rebuilt_adapter_of_the_same_name_is_asked_again_not_served_from_the_cache(shipped, tmp_path):
    from reliability.evaluate import evaluate

    db = open_db(str(tmp_path / "lab.db"))
    items = [Item("q", "Which animal is it?", ("a dog", "a cat"), "a dog", "sound", None, "toy")]
    store.upsert_dataset(db, "toy", [store.StoredItem(item) for item in items])
    first, second = tiny_cascade(), tiny_cascade()  # two runs of the lab: the adapter is rebuilt in between
    ensure_loaded(first, ["default"])
    before = evaluate(db, first, items, ["lora:default"], condition="none")
    again = evaluate(db, first, items, ["lora:default"], condition="none")
    assert again.cached == 1 and again.run_ids == before.run_ids, "the same weights: the cached answer"
    from safetensors.torch import load_file, save_file

    weights = str(shipped / adapters.WEIGHTS_FILE)
    save_file({k: v + 0.01 for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})  # other weights, same name
    ensure_loaded(second, ["default"])
    rebuilt = evaluate(db, second, items, ["lora:default"], condition="none")
    assert rebuilt.answered == 1 and rebuilt.run_ids != before.run_ids


@pytest.mark.parametrize(
    "base, why",
    [
        (dict(model_id="qwen2.5-coder-0.5b"), "was trained on qwen2.5-coder-0.5b (cascade-"),
        (dict(prompt_version="cascade-0"), "(cascade-0) but the backend runs qwen2.5-coder-1.5b (cascade-"),
        (dict(model_hash="0123456789ab"), "[weights 0123456789ab]"),
    ],
)
def test_a_mismatched_adapter_is_refused_with_one_line(shipped, base, why, tmp_path, monkeypatch, capsys):
    rewrite_card(shipped, **base)
    backend = tiny_cascade()
    with pytest.raises(BackendError) as refused:
        ensure_loaded(backend, ["default"])
    message = str(refused.value)
    assert message.startswith("adapter 'default' ") and why in message and "\n" not in message
    assert "retrain it with python -m reliability build-adapter" in message
    assert "default" not in backend.adapters(), "nothing was loaded"

    from reliability.cli import main as cli

    db_path = tmp_path / "lab.db"
    store.upsert_dataset(open_db(str(db_path)), "toy", [store.StoredItem(Item("q", "Which?", ("a", "b"), "a", "sound", None, "toy"))])
    monkeypatch.setattr(cli, "backend_from_args", lambda args: backend)
    assert cli.main(["evaluate", "--db", str(db_path), "--dataset", "toy", "--methods", "lora:default", "--no-audio"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {message}"], "one line in the terminal, no traceback"


def test_an_adapter_without_a_card_is_taken_on_trust(shipped):
    (shipped / "card.json").unlink()
    check_compatible(get_adapter("default"), tiny_cascade())


def test_the_app_offers_and_ticks_a_compatible_shipped_adapter_only(shipped, tmp_path):
    from reliability.methods import method_names
    from reliability.services import Services, Settings

    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path), backend="cascade", adapters_dir=str(tmp_path / "mine")))
    services.pool._backends["cascade"] = tiny_cascade()
    assert services.pool.method_names() == [*method_names(), "lora:default"]
    assert services.pool.default_methods() == [*method_names(), "lora:default"], "ticked from the first start"
    services.pool.warm()
    assert "default" in services.pool.get_backend().adapters(), "the app's start loads the shipped adapter with the model"
    rewrite_card(shipped, prompt_version="cascade-0")
    assert services.pool.method_names() == method_names(), "an adapter the backend would refuse is not offered"


@pytest.mark.slow
def test_the_shipped_default_loads_without_flags_and_changes_an_answer(monkeypatch):
    """The real lora:default on the real default backend is live, not a no-op: it changes at least one answer of the
    dev set where it is built (scripts/build_dev_set.py), else of the demo items."""
    from reliability.audio import load_audio
    from reliability.backends.cascade import CascadeBackend
    from reliability.methods import ask, get_method
    from tests.test_cascade import COMPONENTS, demo_items, missing

    absent = missing(COMPONENTS)
    if absent:
        pytest.skip(f"cascade components not installed: {', '.join(absent)} (pip install {' '.join(absent)})")
    monkeypatch.setattr(adapters, "SHIPPED_DIR", REPOSITORY_ADAPTERS)
    backend = CascadeBackend(threads=2).load()
    dev = REPOSITORY_ADAPTERS.parent.parent / "devset" / "devset.json"
    items = [i for i in (_dev_items(dev) if dev.is_file() else demo_items()) if i.choices]
    clips = [load_audio(i.audio_path) for i in items]
    assert ensure_loaded(backend, ["default"], user=False) == ["default"]
    baseline = ask(get_method("baseline"), backend, items, clips)
    lora = ask(get_method("lora:default"), backend, items, clips)
    assert any(a.text != b.text for a, b in zip(baseline, lora)), "the shipped adapter changes no answer"


def _dev_items(path) -> list[Item]:
    records = json.loads(path.read_text())
    return [Item(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["task"], str(path.parent / r["audio_id"]), "devset") for r in records]
