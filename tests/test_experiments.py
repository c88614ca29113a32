"""Training experiments end to end on the tiny cascade path: K@N → LoRA → evaluate → ΔCon/ΔHum/RGI, the figures, the CLI, the app tab."""
from __future__ import annotations

import argparse
import json
import math

import pytest

torch = pytest.importorskip("torch")

from annotations import store  # noqa: E402
from annotations.db import open_db  # noqa: E402
from reliability.training import plots as experiment_plots  # noqa: E402
from reliability.training.adapters import list_adapters  # noqa: E402
from reliability.training.experiments import ExperimentConfig, alpha_sweep, format_result, split_items, train_and_compare, transfer_matrix  # noqa: E402
from reliability.training.idk_dataset import SamplingConfig  # noqa: E402
from reliability.training.lora import TrainConfig  # noqa: E402
from reliability.types import MODALITIES, Item  # noqa: E402

from tests.test_train_lora import tiny_cascade  # noqa: E402

SAMPLING = SamplingConfig(n=2, max_new_tokens=4, condition="none")  # text only: no clip, no evidence
TRAINING = TrainConfig(rank=2, grad_accum=2, learning_rate=1e-2)


@pytest.fixture(scope="module")
def backend():
    return tiny_cascade()


@pytest.fixture
def db(db):
    """conftest's empty lab database with dataset "toy": two text-only items per modality."""
    items = [
        Item(f"{m}{i}", f"Which {m} is it, number {i}?", ("a dog", "a cat", "I don't know"), "a dog", m, None, "toy")
        for m in MODALITIES
        for i in range(2)
    ]
    store.upsert_dataset(db, "toy", [store.StoredItem(item) for item in items])
    return db


def run(fn, db, backend, tmp_path, **config):
    messages = []
    result = fn(
        db, backend, ExperimentConfig(dataset="toy", k=1, batch_size=6, **config), SAMPLING, TRAINING,
        tmp_path / "adapters", tmp_path / "samples", lambda done, total, message: messages.append(message),
    )
    return result, messages


def test_transfer_matrix_trains_one_adapter_per_modality_and_evaluates_on_each(db, backend, tmp_path):
    result, messages = run(transfer_matrix, db, backend, tmp_path)
    assert [a.split("-")[2] for a in result.adapters] == list(MODALITIES), result.adapters
    assert {(r["train"], r["eval"]) for r in result.rows} == {(t, e) for t in MODALITIES for e in (*MODALITIES, "total")}
    for r in result.rows:
        assert r["n"] == (6 if r["eval"] == "total" else 2)
        assert r["rgi_label"], r
    assert result.in_sample and (result.train_items, result.eval_items) == (6, 6)
    assert [r["k"] for r in result.idk_ratios if r["group"] == "total"] == [1, 2]
    stages = {m.split(":")[0] for m in messages}
    assert {"sample 2 answers per item", "train on sound (1/3)", "evaluate baseline and adapters"} <= stages
    cards = {a.name: a.card for a in list_adapters(tmp_path / "adapters")}
    assert [cards[n]["dataset"]["modalities"] for n in result.adapters] == [{m: 2} for m in MODALITIES]
    runs = {r.method for r in store.list_runs(db, "toy")}
    assert runs == {"baseline", *(f"lora:{n}" for n in result.adapters)}, "every answer is in the notebook, for the dashboard"
    figure = experiment_plots.transfer_heatmap(result.rows)
    assert list(figure.data[0].y) == list(MODALITIES) and list(figure.data[0].x) == [*MODALITIES, "total"]
    assert "trained on 6 items" in format_result(result)


def test_alpha_sweep_then_rerun_reuses_everything(db, backend, tmp_path):
    result, _ = run(alpha_sweep, db, backend, tmp_path, alphas=(2.0, 64.0))
    assert [r["alpha"] for r in result.rows if r["group"] == "total"] == [2.0, 64.0]
    assert [list_adapters(tmp_path / "adapters")[i].card["hyperparameters"]["alpha"] for i in range(2)] == [2.0, 64.0]
    calls = []
    generate = backend.generate
    backend.generate = lambda requests: calls.append(len(requests)) or generate(requests)
    try:
        again, messages = run(alpha_sweep, db, backend, tmp_path, alphas=(2.0, 64.0))
    finally:
        backend.generate = generate
    assert calls == [], "samples, adapters and answers all come from their caches"
    assert any("reusing adapter" in m for m in messages)
    assert again.rows == result.rows
    assert len(experiment_plots.alpha_sweep_figure(result.rows).data) == 3


def test_train_and_compare_holds_out_items(db, backend, tmp_path):
    result, _ = run(train_and_compare, db, backend, tmp_path, holdout=0.5)
    assert not result.in_sample and result.train_items + result.eval_items == 6
    assert {r["group"] for r in result.rows} <= {*MODALITIES, "total"}
    assert result.adapters[0] == "toy-1at2-alpha16-r2", "a readable name"


def test_a_name_whose_answers_are_in_the_notebook_is_not_given_to_another_adapter(db, backend, tmp_path):
    import shutil

    first, _ = run(train_and_compare, db, backend, tmp_path)
    shutil.rmtree(tmp_path / "adapters")  # the adapter is gone, its answers stay cached under lora:<name>
    other = TrainConfig(rank=2, grad_accum=2, learning_rate=5e-3)
    second = train_and_compare(db, backend, ExperimentConfig(dataset="toy", k=1, batch_size=6), SAMPLING, other, tmp_path / "adapters", tmp_path / "samples")
    assert second.adapters != first.adapters and second.adapters[0].startswith("toy-1at2-alpha16-r2-"), (first.adapters, second.adapters)


def test_holdout_split_is_stable_and_disjoint(db):
    train, held, in_sample = split_items(db, ExperimentConfig(dataset="toy", holdout=0.5))
    again, held_again, _ = split_items(db, ExperimentConfig(dataset="toy", holdout=0.5))
    assert [i.id for i in train] == [i.id for i in again] and [i.id for i in held] == [i.id for i in held_again]
    assert not {i.id for i in train} & {i.id for i in held} and len(train) + len(held) == 6 and not in_sample
    only_sound, _, _ = split_items(db, ExperimentConfig(dataset="toy", modality="sound"))
    assert {i.modality for i in only_sound} == {"sound"}


def test_a_stop_ends_the_experiment_between_batches(db, backend, tmp_path):
    import threading

    from reliability.errors import ReliabilityError

    stop = threading.Event()
    stop.set()
    with pytest.raises(ReliabilityError, match="stopped"):
        alpha_sweep(db, backend, ExperimentConfig(dataset="toy", k=1), SAMPLING, TRAINING, tmp_path / "a", tmp_path / "s", stop=stop)


def test_heatmap_labels_the_edge_cases():
    rows = [
        {"train": "sound", "eval": "sound", "rgi": math.inf, "rgi_label": "+inf (no conservatism)", "delta_con": 0.0, "delta_hum": 0.5, "n": 2},
        {"train": "sound", "eval": "total", "rgi": None, "rgi_label": "undefined (no change)", "delta_con": 0.0, "delta_hum": 0.0, "n": 6},
        {"train": "music", "eval": "sound", "rgi": -math.inf, "rgi_label": "-inf (no humility)", "delta_con": 0.5, "delta_hum": 0.0, "n": 2},
        {"train": "music", "eval": "total", "rgi": 0.27, "rgi_label": "0.27", "delta_con": 0.1, "delta_hum": 0.2, "n": 6},
    ]
    heat = experiment_plots.transfer_heatmap(rows).data[0]
    assert [list(r) for r in heat.z] == [[1.0, None], [-1.0, 0.27]]
    assert [list(r) for r in heat.text] == [["+inf", "undefined"], ["-inf", "0.27"]]
    assert "no transfer result" in experiment_plots.transfer_heatmap([]).layout.annotations[0].text.lower()


def test_idk_ratio_figure_has_a_line_per_group():
    rows = [{"k": k, "n": 2, "group": g, "items": 3, "idk": k, "ratio": k / 3} for k in (1, 2) for g in ("sound", "total")]
    figure = experiment_plots.idk_ratio_figure(rows)
    assert [t.name for t in figure.data] == ["sound (n=3)", "total (n=3)"] and list(figure.data[0].x) == ["1@2", "2@2"]


# ---------------------------------------------------------------- command line


@pytest.fixture
def cli(tmp_path):
    """The training commands on a parser of their own (reliability.cli.main adds them with add_lora_commands)."""
    from reliability.cli.main import build_parser
    from reliability.cli.training import add_lora_commands

    def main(argv):
        parser = argparse.ArgumentParser()
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--db", default=str(tmp_path / "lab.db"))
        add_lora_commands(parser.add_subparsers(dest="command", required=True), common)
        args = parser.parse_args(argv)
        args.handler(args)

    assert build_parser  # the lab's own parser stays importable beside ours
    return main


def test_cli_idk_dataset_and_train_lora_on_the_tiny_qwen2_audio(tmp_path, capsys, cli):
    from tests.tiny import tiny_qwen2_audio

    db = open_db(tmp_path / "lab.db")
    items = [Item(f"s{i}", f"Which sound, number {i}?", ("dog", "cat"), "dog", "sound", None, "toy") for i in range(3)]
    store.upsert_dataset(db, "toy", [store.StoredItem(item) for item in items])
    model = str(tiny_qwen2_audio(tmp_path / "models"))
    backend = ["--backend", "qwen2-audio", "--backend-arg", f"model_id={model}", "--samples-dir", str(tmp_path / "samples")]
    sampling = ["--n", "3", "--condition", "none", "--sample-max-new-tokens", "4"]
    export = tmp_path / "k1.jsonl"
    cli(["idk-dataset", "--dataset", "toy", *backend, *sampling, "--k", "1", "--export", str(export)])
    out = capsys.readouterr().out
    assert "3 items (3 sampled now)" in out and "3@3" in out
    assert len(export.read_text().splitlines()) == 3
    adapters = ["--adapters-dir", str(tmp_path / "adapters")]
    cli(["train-lora", "--dataset", "toy", *backend, *sampling, *adapters, "--k", "1", "--rank", "2", "--alpha", "4", "--name", "cli-made"])
    out = capsys.readouterr().out
    assert "saved adapter cli-made (complete)" in out and "lora:cli-made" in out
    card = list_adapters(tmp_path / "adapters")[0].card
    assert card["dataset"]["samples_file"].endswith(".jsonl") and card["hyperparameters"]["rank"] == 2
    cli(["adapters", *adapters])
    assert "lora:cli-made  complete  qwen2-audio/" in capsys.readouterr().out
    cli(["adapters", *adapters, "--json"])
    assert json.loads(capsys.readouterr().out)[0]["name"] == "cli-made"


def test_cli_flags_map_to_every_config_field(cli, capsys):
    import dataclasses

    with pytest.raises(SystemExit):
        cli(["train-lora", "--help"])
    text = capsys.readouterr().out
    for cls in (SamplingConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
    for flag in ("--rank", "--alpha", "--dropout", "--learning-rate", "--epochs", "--grad-accum", "--seed", "--n", "--temperature", "--top-p", "--sample-seed"):
        assert flag in text, flag


# ---------------------------------------------------------------- the app tab


def test_the_experiments_tab_trains_and_shows_the_adapter(tmp_path):
    gr = pytest.importorskip("gradio")
    from reliability.ui.experiments_tab import ExperimentHandlers, build_experiments_tab
    from reliability.services import Services, Settings

    services = Services.build(Settings(db_path=str(tmp_path / "lab.db"), data_dir=str(tmp_path), backend="cascade", adapters_dir=str(tmp_path / "adapters")))
    engine, tiny = services.pool.get_backend("cascade"), tiny_cascade()  # the tiny text model stands in for the real one
    engine.text_model, engine.tokenizer, engine.evidence = tiny.text_model, tiny.tokenizer, tiny.evidence
    items = [Item(f"m{i}", f"Which music, number {i}?", ("a dog", "a cat"), "a dog", "music", None, "toy") for i in range(2)]
    store.upsert_dataset(services.pool.db(), "toy", [store.StoredItem(i) for i in items])
    with gr.Blocks():
        with gr.Tab("Experiments") as tab:
            build_experiments_tab(services, tab)
    ui = ExperimentHandlers(services)
    settings = ["toy", "cascade", "none", 0, 0.0, "(all)", 2, 1, 1.0, 0.9, 2, 8, 1e-2, 1, 1, "2, 8"]
    progress = []
    status, figure, ratios = ui.build(*settings, progress=lambda value, desc="": progress.append(desc))
    assert "2 items" in status and "1@2" in ratios and progress
    status, table, adapters, methods = ui.train(*settings, progress=lambda value, desc="": None)
    assert "ΔCon" in status and "RGI" in status
    assert table["data"] and table["data"][-1][2] == "total"
    assert adapters["data"][0][0] == "lora:toy-1at2-music-alpha8-r2", "a readable name"
    assert adapters["data"][0][0] in [value for _, value in methods["choices"]], "the Compare tab offers the new adapter"
    assert ui.datasets("gone")["value"] == "toy"
