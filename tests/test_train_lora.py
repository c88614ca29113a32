"""LoRA SFT on the tiny Qwen2-Audio (float32 and bfloat16) and on the cascade's text-model path: targets, prompt, loss, saving, switching."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import soundfile as sf

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from reliability import prompts  # noqa: E402
from reliability.training.adapters import ensure_loaded, list_adapters, loaded_adapters  # noqa: E402
from reliability.audio import SAMPLE_RATE  # noqa: E402
from reliability.backends.scripted import ScriptedBackend  # noqa: E402
from reliability.errors import BackendError, ReliabilityError  # noqa: E402
from reliability.training.idk_dataset import TrainingExample  # noqa: E402
from reliability.methods import Baseline  # noqa: E402
from reliability.training.lora import IGNORE, TrainConfig, request_for, target_reply, train_lora, training_row  # noqa: E402
from reliability.types import Decoding, Item, Request  # noqa: E402

from tests.conftest import tone  # noqa: E402

GREEDY = Decoding(max_new_tokens=6)
# tiny models move visibly in one step; no autocast, so each model computes in its own dtype (autocast is tested on its own)
FAST = dict(dropout=0.0, learning_rate=2e-2, batch_size=1, grad_accum=1, precision="fp32")
DTYPES = ("float32", "bfloat16")  # the CPU default and the GPU default of the Qwen2-Audio backend
# the same logits from two models built alike: float32 agrees to rounding, bfloat16 to its 8 significant bits
ATOL = {"float32": 1e-5, "bfloat16": 0.1}


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "tone.wav"
    sf.write(path, tone(seconds=1.0), SAMPLE_RATE)
    return str(path)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    from tests.tiny import tiny_qwen2_audio

    return tiny_qwen2_audio(tmp_path_factory.mktemp("tiny"))


def qwen2_audio(tiny_path, dtype: str):
    from reliability.backends.qwen2_audio import Qwen2AudioBackend

    return Qwen2AudioBackend(str(tiny_path), dtype=dtype)


@pytest.fixture(scope="module")
def qwen_float32(tiny_path):
    return qwen2_audio(tiny_path, "float32")


@pytest.fixture(scope="module")
def qwen_bfloat16(tiny_path):
    return qwen2_audio(tiny_path, "bfloat16")


@pytest.fixture(params=DTYPES)
def qwen(request):
    return request.getfixturevalue(f"qwen_{request.param}")


def tiny_cascade():
    """The cascade backend with a tiny random Qwen2 text model in place of the 1.5B one: the same training code path."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reliability.backends.cascade import CascadeBackend
    from reliability.backends.cascade.evidence import Evidence
    from tests.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    tokenizer.padding_side = "left"
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # larger weights than the default init, so that prompts differ in their argmax
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.3)
    backend = CascadeBackend()
    backend.text_model, backend.tokenizer = model, tokenizer
    # the evidence step is the cascade's own business (tested with it); here a fixed reading of the clip
    backend.evidence = lambda samples, key=None, hotwords=(): Evidence(1.0, -12.0, -3.0, "other", {"other": 1.0}, [("Dog", 0.9)], "")
    return backend


@pytest.fixture(scope="module")
def cascade():
    return tiny_cascade()


@pytest.fixture(scope="module")
def cascade_bfloat16():
    backend = tiny_cascade()
    backend.text_model.to(torch.bfloat16)
    return backend


@pytest.fixture(params=["qwen_float32", "qwen_bfloat16", "cascade"])
def backend(request):
    return request.getfixturevalue(request.param)


def examples(clip_path: str, target: str | None = None, n: int = 2) -> list[TrainingExample]:
    items = [Item(f"i{i}", f"What is the main sound {i}?", ("dog", "cat"), "dog", "sound", clip_path, "toy") for i in range(n)]
    return [
        TrainingExample(item, Baseline().messages(item), target or ("dog" if i % 2 else prompts.IDK_REPLY), 5, 5, 5 * (i % 2), "full")
        for i, item in enumerate(items)
    ]


def base_state(backend) -> dict[str, torch.Tensor]:
    """The base model's weights by their plain names (a LoRA-wrapped layer keeps its weight under `base_layer`)."""
    return {k.replace(".base_layer", ""): v.detach().clone() for k, v in backend.training_model().named_parameters() if "lora_" not in k}


def answer(backend, clip_path) -> tuple[str, torch.Tensor]:
    """A free greedy reply (no choices: the cascade would pick among them) and the choices' scores."""
    request = request_for(examples(clip_path, n=1)[0])
    text = backend.generate([Request(request.messages, request.audio, GREEDY, (), request.audio_hash)])[0].text
    return text, first_logits(backend, request)


def first_logits(backend, request) -> torch.Tensor:
    """Logits of the reply's first token under whatever adapter is active (via generate's own scoring path)."""
    request = Request(request.messages, request.audio, Decoding(max_new_tokens=1), ("dog", "cat", "I don't know"), request.audio_hash)
    return torch.tensor(backend.generate([request])[0].option_logprobs)


def test_lora_targets_the_language_model_only(qwen):
    import re

    pattern = qwen.lora_targets()
    names = [n for n, _ in qwen.hf.named_modules()]
    matched = [n for n in names if re.fullmatch(pattern, n)]
    assert matched and all(".language_model." in n for n in matched), matched[:3]
    assert len(matched) == 2 * 7, "two layers × q, k, v, o, gate, up, down"
    assert any(re.search(r"audio_tower.*q_proj$", n) for n in names), "the encoder has q_proj too, which must stay untouched"


def test_the_training_prompt_is_the_inference_prompt(backend, clip_path):
    example = examples(clip_path, n=1)[0]
    request = request_for(example)
    tokenizer = backend.training_tokenizer()
    row = training_row(backend, request, example.target)
    if backend.name == "qwen2-audio":
        inputs, _ = backend.encode([request])
        prompt = inputs["input_ids"][0].cpu()
        assert torch.equal(row["input_features"], inputs["input_features"][0].cpu())
    else:
        prompt = tokenizer(backend.render(request), add_special_tokens=False, return_tensors="pt")["input_ids"][0]
        assert "Audio evidence" in backend.render(request)
    reply = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|im_end|>")]
    assert torch.equal(row["input_ids"], torch.cat([prompt, torch.tensor(reply)]))
    assert (row["labels"][: len(prompt)] == IGNORE).all(), "no loss on the prompt"
    assert row["labels"][len(prompt) :].tolist() == reply, "loss on the reply and its end of turn"


def test_the_target_is_said_as_the_backend_answers(qwen, cascade, clip_path):
    idk, gold = examples(clip_path, n=2)
    assert target_reply(qwen, gold) == "dog" and target_reply(qwen, idk) == prompts.IDK_REPLY
    # the cascade scores each choice's own text against "I don't know": it learns those replies
    assert target_reply(cascade, gold) == "dog"
    assert target_reply(cascade, idk) == prompts.IDK_REPLY


def test_one_step_lowers_the_loss_on_a_repeated_batch(backend, clip_path, tmp_path):
    batch = examples(clip_path, prompts.IDK_REPLY, n=1) * 2
    result = train_lora(backend, batch, TrainConfig(name="step", **FAST), tmp_path)
    assert len(result.losses) == 2
    assert result.losses[1] < result.losses[0], result.losses


def test_bf16_autocast_trains_too(cascade, clip_path, tmp_path):
    batch = examples(clip_path, prompts.IDK_REPLY, n=1) * 2
    result = train_lora(cascade, batch, TrainConfig(name="bf16", **{**FAST, "precision": "bf16"}), tmp_path)
    assert result.losses[1] < result.losses[0], result.losses
    assert result.card["hyperparameters"]["precision"] == "bf16"


def test_top_layers_wrap_only_those_layers_and_train_from_the_kept_frozen_part(cascade, clip_path, tmp_path):
    from safetensors.torch import load_file

    from reliability.training.lora import FrozenLayers, ReplyLoss, collate

    row = training_row(cascade, request_for(examples(clip_path, n=1)[0]), prompts.IDK_REPLY)
    batch = collate([row], cascade.tokenizer.pad_token_id)
    model = cascade.training_model()
    FrozenLayers.kept.clear()
    with torch.no_grad():
        full = ReplyLoss(model)(**batch)
        top = ReplyLoss(model, 1)(**batch)
        again = ReplyLoss(model, 1)(**batch)
    assert float(top) == pytest.approx(float(full), abs=1e-5)  # the same loss, the lower layer run once
    assert float(again) == float(top) and len(FrozenLayers.kept) == 1
    batch2 = examples(clip_path, prompts.IDK_REPLY, n=1) * 2
    result = train_lora(cascade, batch2, TrainConfig(name="top", layers=1, **FAST), tmp_path)
    assert result.losses[1] < result.losses[0], result.losses
    keys = load_file(str(tmp_path / "top" / "adapter_model.safetensors"))
    assert keys and all(".layers.1." in k for k in keys), sorted(keys)  # the tiny model's top layer of two only
    with pytest.raises(BackendError, match="has 2 layers"):
        cascade.lora_targets(3)


def test_only_lora_parameters_change_and_the_base_comes_back(backend, clip_path, tmp_path):
    before = base_state(backend)
    model = backend.training_model()
    checked = []

    def during(step, total, message):
        if step == 0:
            return
        params = {k.replace(".base_layer", ""): v for k, v in model.named_parameters()}
        lora = {k: v for k, v in params.items() if "lora_" in k}
        assert lora and all(v.requires_grad for v in lora.values())
        assert all(not v.requires_grad for k, v in params.items() if "lora_" not in k)
        assert all(torch.equal(params[k], v) for k, v in before.items()), "a frozen weight moved"
        assert any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k), "LoRA B starts at 0 and must move"
        checked.append(step)

    train_lora(backend, examples(clip_path), TrainConfig(name="frozen", **FAST), tmp_path, progress=during)
    assert checked == [1, 2]
    after = base_state(backend)
    assert after.keys() == before.keys(), "training left LoRA layers behind in the model"
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not model.training, "the model is back in eval mode"


def test_the_adapter_saves_reloads_changes_generations_and_switches_off(backend, clip_path, tmp_path):
    text_before, logits_before = answer(backend, clip_path)
    config = TrainConfig(name=f"idk-{backend.name}", rank=4, alpha=32, epochs=4, **FAST)
    result = train_lora(backend, examples(clip_path, prompts.IDK_REPLY, n=2), config, tmp_path)
    files = sorted(p.name for p in (tmp_path / config.name).iterdir())
    assert files == ["adapter_config.json", "adapter_model.safetensors", "card.json"]
    card = json.loads((tmp_path / config.name / "card.json").read_text())
    assert card["status"] == "complete" and card["final_loss"] == pytest.approx(result.losses[-1], abs=1e-5)
    assert card["dataset"]["k"] == 5 and card["hyperparameters"]["alpha"] == 32
    assert [a.name for a in list_adapters(tmp_path)] == [config.name]

    assert ensure_loaded(backend, [config.name], tmp_path) == [config.name]
    backend.set_adapter(config.name)
    text_lora, logits_lora = answer(backend, clip_path)
    assert not torch.allclose(logits_lora, logits_before), "the adapter changes the model's scores"
    assert text_lora != text_before, "the adapter changes the model's generation"
    # trained towards "I don't know": that reply (the third scored option) gains log-probability
    assert logits_lora[2] - logits_before[2] > 0.5, (logits_before, logits_lora)
    backend.set_adapter(None)
    text_off, logits_off = answer(backend, clip_path)
    assert text_off == text_before and torch.allclose(logits_off, logits_before), "switched off, the base model is unchanged"
    assert ensure_loaded(backend, [config.name], tmp_path) == [], "already loaded: not loaded twice"


def test_the_saved_adapter_is_standard_peft(qwen, clip_path, tmp_path):
    from peft import PeftModel
    from transformers import Qwen2AudioForConditionalGeneration

    result = train_lora(qwen, examples(clip_path), TrainConfig(name="std", **FAST), tmp_path)
    base = Qwen2AudioForConditionalGeneration.from_pretrained(qwen.model_id, dtype=qwen.dtype).to(qwen.device)
    fresh = PeftModel.from_pretrained(base, result.path).eval()
    ensure_loaded(qwen, ["std"], tmp_path)
    qwen.set_adapter("std")
    request = request_for(examples(clip_path, n=1)[0])
    inputs, _ = qwen.encode([request])
    with torch.inference_mode(), qwen._adapter_scope():
        expected = qwen.model(**inputs).logits
    qwen.set_adapter(None)
    with torch.inference_mode():
        assert torch.allclose(fresh(**inputs).logits, expected, atol=ATOL[str(qwen.dtype).removeprefix("torch.")])
    assert not any("audio_tower" in n and "lora_" in n for n, _ in fresh.named_parameters())


def test_a_second_adapter_trains_beside_a_loaded_one(backend, clip_path, tmp_path):
    train_lora(backend, examples(clip_path), TrainConfig(name="first", **FAST), tmp_path)
    ensure_loaded(backend, ["first"], tmp_path)
    backend.set_adapter("first")
    _, first_logits_before = answer(backend, clip_path)
    backend.set_adapter(None)
    train_lora(backend, examples(clip_path, prompts.IDK_REPLY), TrainConfig(name="second", **FAST), tmp_path)
    assert loaded_adapters(backend) >= {"first"} and "second" not in loaded_adapters(backend)
    assert backend.adapter is None
    ensure_loaded(backend, ["second"], tmp_path)
    backend.set_adapter("first")
    _, first_logits_after = answer(backend, clip_path)
    backend.set_adapter(None)
    assert torch.allclose(first_logits_before, first_logits_after), "training another adapter left this one as it was"


@pytest.mark.parametrize("name", ["qwen_bfloat16", "cascade_bfloat16"])
def test_lora_weights_train_in_float32_on_a_bfloat16_base(name, request, clip_path, tmp_path):
    """AdamW's updates are far below a bfloat16 weight's rounding step: the adapter must learn in float32,
    also when it is added beside an adapter already loaded (each backend holds loaded adapters its own way)."""
    backend = request.getfixturevalue(name)
    train_lora(backend, examples(clip_path), TrainConfig(name="first16", **FAST), tmp_path)
    ensure_loaded(backend, ["first16"], tmp_path)
    model = backend.training_model()
    seen = []

    def during(step, total, message):
        seen.extend(p.dtype for n, p in model.named_parameters() if p.requires_grad)

    result = train_lora(backend, examples(clip_path), TrainConfig(name="second16", **FAST), tmp_path, progress=during)
    assert seen and set(seen) == {torch.float32}, set(seen)
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16, "the base stays in bfloat16"
    assert np.isfinite(result.losses).all(), result.losses


def test_training_is_seeded(cascade, clip_path, tmp_path):
    from safetensors.torch import load_file

    runs = [train_lora(cascade, examples(clip_path, n=4), TrainConfig(name=f"seeded{i}", seed=7, grad_accum=2), tmp_path) for i in range(2)]
    assert runs[0].losses == runs[1].losses
    weights = [load_file(f"{r.path}/adapter_model.safetensors") for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other = train_lora(cascade, examples(clip_path, n=4), TrainConfig(name="seeded-other", seed=8, grad_accum=2), tmp_path)
    assert other.losses != runs[0].losses


def test_ctrl_c_saves_a_checkpoint_and_restores_the_model(cascade, clip_path, tmp_path):
    before = base_state(cascade)

    def interrupt(step, total, message):
        if step == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_lora(cascade, examples(clip_path, n=4), TrainConfig(name="cut", **FAST), tmp_path, progress=interrupt)
    card = json.loads((tmp_path / "cut" / "card.json").read_text())
    assert (card["status"], card["steps"]) == ("interrupted", 1)
    assert "cut" not in loaded_adapters(cascade)
    after = base_state(cascade)
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_a_stop_event_ends_after_the_step(qwen, clip_path, tmp_path):
    stop = threading.Event()
    result = train_lora(
        qwen, examples(clip_path, n=4), TrainConfig(name="halt", **FAST), tmp_path, progress=lambda s, t, m: s and stop.set(), stop=stop
    )
    assert (result.status, len(result.losses), result.card["status"]) == ("stopped", 1, "stopped")


def test_names_are_not_overwritten_unless_asked(cascade, clip_path, tmp_path):
    train_lora(cascade, examples(clip_path), TrainConfig(name="same", **FAST), tmp_path)
    with pytest.raises(ReliabilityError, match="already exists"):
        train_lora(cascade, examples(clip_path), TrainConfig(name="same", **FAST), tmp_path)
    again = train_lora(cascade, examples(clip_path), TrainConfig(name="same", overwrite=True, **FAST), tmp_path)
    assert again.status == "complete"
    ensure_loaded(cascade, ["same"], tmp_path)
    with pytest.raises(ReliabilityError, match="is loaded in the running backend"):
        train_lora(cascade, examples(clip_path), TrainConfig(name="same", overwrite=True, **FAST), tmp_path)
    with pytest.raises(ValueError, match="adapter name"):
        train_lora(cascade, examples(clip_path), TrainConfig(name="../escape", **FAST), tmp_path)


def test_default_name_says_what_it_was_trained_on(cascade, clip_path, tmp_path):
    result = train_lora(cascade, examples(clip_path), TrainConfig(rank=4, alpha=8, **FAST), tmp_path)
    assert result.name == "toy-5at5-sound-alpha8-r4"


def test_a_backend_without_a_model_cannot_be_trained(clip_path, tmp_path):
    with pytest.raises(BackendError, match=r"cannot be trained; trainable backends: cascade, qwen2-audio$"):
        train_lora(ScriptedBackend(), examples(clip_path), TrainConfig(name="x"), tmp_path)


@pytest.mark.parametrize("bad", [dict(rank=0), dict(grad_accum=0), dict(dropout=1.0), dict(alpha=0), dict(learning_rate=-1)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


@pytest.mark.slow
def test_one_step_on_the_real_default_text_model_lowers_the_loss(tmp_path):
    """The default backend's real 0.5B text model (no audio: its evidence needs no extractor), one example twice."""
    from reliability.backends.cascade import CascadeBackend
    from reliability.errors import BackendError as Missing
    from reliability.backends.cascade.text_model import load_text_model

    try:
        model, tokenizer = load_text_model()
    except Missing as exc:
        pytest.skip(str(exc))
    backend = CascadeBackend()
    backend.text_model, backend.tokenizer = model, tokenizer
    item = Item("r", "Which animal barks?", ("a dog", "a cat"), "a dog", "sound", None, "toy")
    example = TrainingExample(item, Baseline().messages(item), prompts.IDK_REPLY, 5, 5, 0, "none")
    before = base_state(backend)
    result = train_lora(backend, [example, example], TrainConfig(name="real", dropout=0.0, learning_rate=1e-3, grad_accum=1), tmp_path)
    assert result.losses[1] < result.losses[0], result.losses
    after = base_state(backend)
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert np.isfinite(result.card["final_loss"])
