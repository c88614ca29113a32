"""The one rebuild command of a shipped adapter, end to end on the tiny cascade stand-in and a tiny generated dataset."""
from __future__ import annotations

import json

import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from reliability.audio import SAMPLE_RATE  # noqa: E402
from reliability.training import adapters  # noqa: E402
from reliability.training.build import ship  # noqa: E402
from reliability.types import MODALITIES  # noqa: E402

from tests.conftest import tone  # noqa: E402
from tests.test_train_lora import tiny_cascade  # noqa: E402


def write_set(folder, name: str, base_hz: float) -> str:
    """A dataset JSON of two questions per modality, each on its own generated clip under folder/audio/."""
    (folder / "audio").mkdir(parents=True)
    records = []
    for m, modality in enumerate(MODALITIES):
        for i in range(2):
            clip = f"audio/{name}-{modality}{i}.wav"
            sf.write(folder / clip, tone(base_hz + 50 * (2 * m + i), seconds=0.5), SAMPLE_RATE)
            records.append({
                "id": f"{name}-{modality}{i}", "audio_id": clip, "question": f"Which {modality} is it, number {i}?",
                "choices": ["a dog", "a cat"], "answer": "a dog", "task": modality,
            })
    path = folder / f"{name}.json"
    path.write_text(json.dumps(records))
    return str(path)


def test_build_adapter_sweeps_picks_by_dev_rgi_and_ships_with_its_card(tmp_path, monkeypatch, capsys):
    from reliability.cli import main as cli
    from reliability.cli import training as cli_training

    train = write_set(tmp_path / "trainset", "trainset", 300)
    dev = write_set(tmp_path / "devset", "devset", 700)
    backend = tiny_cascade()
    monkeypatch.setattr(cli_training, "backend_from_args", lambda args: backend)
    out = tmp_path / "shipped"
    argv = [
        "build-adapter", "--db", str(tmp_path / "lab.db"), "--train", train, "--dev", dev, "--alphas", "2,64", "--k", "1", "--n", "2",
        "--sample-max-new-tokens", "4", "--rank", "2", "--grad-accum", "2", "--learning-rate", "1e-2", "--transfer",
        "--out", str(out), "--adapters-dir", str(tmp_path / "work"), "--samples-dir", str(tmp_path / "samples"),
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "1@2" in printed and "2@2" in printed, "the IDK share at every K"
    for method in ("idk", "agent"):
        assert f"\n{method} " in printed, f"{method} is evaluated beside the adapters"
    assert "chosen: alpha" in printed and "cross-modal transfer" in printed

    folder = out / "default"
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors", "card.json"]
    card = json.loads((folder / "card.json").read_text())
    build = card["build"]
    assert build["alpha"] in (2.0, 64.0) and build["chosen_by"] == "total RGI on the dev set"
    totals = {r["alpha"]: r["rgi"] for r in build["dev_set"]["alpha_sweep"] if r["group"] == "total"}
    assert set(totals) == {2.0, 64.0}
    assert {r["method"] for r in build["dev_set"]["methods"]} == {"idk", "agent"}
    assert {(r["train"], r["eval"]) for r in build["transfer"]} == {(t, e) for t in MODALITIES for e in (*MODALITIES, "total")}
    assert len(build["train"]["sha256"]) == 64 and len(card["dataset"]["hash"]) == 12
    assert card["base"] == backend.adapter_base() and card["hyperparameters"]["seed"] == 0
    assert card["name"] == "default" and card["hyperparameters"]["alpha"] == build["alpha"]

    monkeypatch.setattr(adapters, "SHIPPED_DIR", out)
    monkeypatch.setenv(adapters.ADAPTERS_ENV, str(tmp_path / "mine"))
    assert adapters.ensure_loaded(backend, ["default"]) == ["default"], "the rebuilt adapter loads as lora:default"

    # a second run trains and asks nothing again: every stage comes from its cache
    calls = []
    generate = backend.generate
    backend.generate = lambda requests: calls.append(len(requests)) or generate(requests)
    assert cli.main(argv) == 0
    assert calls == []


def test_weights_over_the_size_limit_are_shipped_in_bfloat16(tmp_path):
    from safetensors.torch import load_file, save_file

    source = tmp_path / "trained"
    source.mkdir()
    save_file({"w": torch.randn(64, 64)}, str(source / "adapter_model.safetensors"))
    (source / "adapter_config.json").write_text("{}")
    size = (source / "adapter_model.safetensors").stat().st_size
    path = ship(source, tmp_path / "out", "small", {}, max_mb=0.75 * size / 1e6)
    assert load_file(str(path / "adapter_model.safetensors"))["w"].dtype == torch.bfloat16
    assert json.loads((path / "card.json").read_text())["weights_dtype"] == "bfloat16"
    kept = ship(source, tmp_path / "out", "big", {}, max_mb=20)
    assert load_file(str(kept / "adapter_model.safetensors"))["w"].dtype == torch.float32


def test_a_clip_in_both_sets_is_refused(tmp_path, monkeypatch, capsys):
    from reliability.cli import main as cli

    train = write_set(tmp_path / "trainset", "trainset", 300)
    dev = tmp_path / "trainset" / "devset.json"
    dev.write_text((tmp_path / "trainset" / "trainset.json").read_text().replace('"trainset-', '"devset-'))
    assert cli.main(["build-adapter", "--db", str(tmp_path / "lab.db"), "--train", train, "--dev", str(dev), "--out", str(tmp_path / "o")]) == 1
    assert "clip(s) are in both the training set and the dev set" in capsys.readouterr().err
