"""The cascade backend: guided-decoding rules, packaged-weight handling, and the real default on the demo clips."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reliability import prompts, text_model
from reliability.audio import load_audio
from reliability.backends import cascade
from reliability.errors import BackendError, UnknownNameError
from reliability.methods import ask, get_method
from reliability.types import Decoding, Item, Outcome, Request
from tests.test_evidence import COMPONENTS as EVIDENCE_COMPONENTS, missing

DEMO = Path(__file__).resolve().parent.parent / "demo"
COMPONENTS = EVIDENCE_COMPONENTS + [
    ("torch", "torch"),
    ("transformers", "transformers"),
    ("gguf", "gguf"),
    ("peft", "peft"),
] + [(dist.replace("-", "_"), dist) for dist in text_model.TEXT_MODELS[text_model.DEFAULT_TEXT_MODEL].packages]
QUESTION = [{"role": "user", "content": "Is the sky blue?\nChoices:\n(A) yes\n(B) no\nAnswer with the text of the correct choice."}]


def demo_items() -> list[Item]:
    raw = json.loads((DEMO / "items.json").read_text())
    return [Item(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["modality"], str(DEMO / r["audio"]), "demo") for r in raw]


@pytest.fixture(scope="module")
def backend():
    """The real default backend, loaded once (the first run on a machine also converts the GGUF, about a minute)."""
    absent = missing(COMPONENTS)
    if absent:
        pytest.skip(f"cascade components not installed: {', '.join(absent)} (pip install {' '.join(absent)})")
    return cascade.CascadeBackend(threads=2).load(progress=print)


# -- rules, without any model --------------------------------------------------------------------


def request(content: str, choices=("yes", "no"), **kw) -> Request:
    return Request([{"role": "user", "content": content}], choices=choices, **kw)


@pytest.mark.parametrize(
    "content, choices, guided, idk",
    [
        ("Q?\nAnswer with the text of the correct choice.", ("yes", "no"), True, False),
        (f"Q?\n{prompts.IDK_INSTRUCTION}", ("yes", "no"), True, True),
        (f"Q?\n{prompts.MCOT_INSTRUCTION}", ("yes", "no"), False, False),  # reasoning first: free
        ("Describe the sound events.", (), False, False),  # no choices: free
    ],
)
def test_guided_decoding_rules(content, choices, guided, idk):
    req = request(content, choices)
    assert cascade._is_guided(req) is guided
    replies = cascade._replies(req, guided)
    assert replies[: len(choices)] == [cascade.ANSWER_TEMPLATE.format(letter=prompts.letter(k), choice=c) for k, c in enumerate(choices)]
    assert (prompts.IDK_REPLY in replies) is idk


def test_pick_is_greedy_or_seeded_sampling():
    import torch

    replies, scores = ["a", "b", "c"], [-2.0, -0.5, -1.0]
    assert cascade._pick(replies, scores, Decoding(num_samples=2), None) == ["b", "b"]
    sampled = Decoding(do_sample=True, num_samples=20, seed=1)
    draws = cascade._pick(replies, scores, sampled, torch.Generator().manual_seed(1))
    assert draws == cascade._pick(replies, scores, sampled, torch.Generator().manual_seed(1))
    assert set(draws) > {"b"}, draws  # sampling reaches beyond the best reply
    top = cascade._pick(replies, scores, Decoding(do_sample=True, top_p=0.01, num_samples=5), None)
    assert top == ["b"] * 5  # top-p keeps only the best


def test_unknown_text_model_lists_known_ones():
    with pytest.raises(UnknownNameError, match="qwen2.5-coder-0.5b"):
        cascade.CascadeBackend(model_id="gpt-17")


def test_missing_weight_package_is_named(monkeypatch):
    spec = text_model.TextModelSpec("fake", ("no-such-weights-part1",), "data/*.bin", "nowhere", "none")
    monkeypatch.setitem(text_model.TEXT_MODELS, "fake", spec)
    with pytest.raises(BackendError, match="no-such-weights-part1"):
        text_model.ensure_converted(spec)


def test_join_files_is_atomic_and_done_once(tmp_path):
    parts = []
    for i, data in enumerate([b"GGUF", b"-body-", b"end"]):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(data)
    messages = []
    dest = text_model.join_files(parts, tmp_path / "out" / "model.gguf", messages.append)
    assert dest.read_bytes() == b"GGUF-body-end" and len(messages) == 1
    text_model.join_files(parts, dest, messages.append)
    assert len(messages) == 1  # already whole: not joined again
    assert [p.name for p in dest.parent.iterdir()] == ["model.gguf"]  # no temporary left behind


def test_cache_dir_can_be_overridden(monkeypatch, tmp_path):
    monkeypatch.setenv(text_model.CACHE_ENV, str(tmp_path))
    assert text_model.cache_dir() == tmp_path


# -- the real default components -----------------------------------------------------------------


@pytest.mark.slow
def test_demo_baseline_answers_and_idk_abstains(backend):
    items = demo_items()
    clips = [load_audio(item.audio_path) for item in items]
    baseline = ask(get_method("baseline"), backend, items, clips)
    for item, answer in zip(items, baseline):
        print(f"baseline {item.id}: {answer.outcome} {answer.text!r}")
    answerable = [a for item, a in zip(items, baseline) if item.answer != prompts.IDK_REPLY]
    correct = sum(a.outcome == Outcome.CORRECT for a in answerable)
    assert correct * 2 >= len(answerable), f"baseline got {correct} of {len(answerable)} answerable demo questions"
    assert all(a.confidence is not None for a in answerable)  # option log-probs give every answer a confidence
    unanswerable = [(item, clip) for item, clip in zip(items, clips) if item.answer == prompts.IDK_REPLY]
    idk = ask(get_method("idk"), backend, [i for i, _ in unanswerable], [c for _, c in unanswerable])
    for (item, _), answer in zip(unanswerable, idk):
        assert answer.outcome == Outcome.IDK, (item.id, answer.text)


@pytest.mark.slow
def test_evidence_goes_to_meta_and_only_with_audio(backend, speech_wav):
    clip = load_audio(speech_wav)
    with_audio, without = backend.generate(
        [request(QUESTION[0]["content"], audio=clip.samples, audio_hash=clip.hash), request(QUESTION[0]["content"])]
    )
    evidence = with_audio.meta["evidence"]
    assert "train" in evidence["transcript"].lower() and json.loads(json.dumps(with_audio.meta)) == with_audio.meta
    assert "evidence" not in without.meta and "Audio evidence" not in backend.render(request(QUESTION[0]["content"]))
    assert len(with_audio.option_logprobs) == 2 and all(np.isfinite(with_audio.option_logprobs))


@pytest.mark.slow
def test_batched_equals_one_by_one_and_samples_are_seeded(backend):
    free = [Request([{"role": "user", "content": q}], decoding=Decoding(max_new_tokens=4)) for q in ("Name a colour.", "Say hello in French.")]
    batched = [g.text for g in backend.generate(free)]
    assert batched == [backend.generate([r])[0].text for r in free]
    sampled = Decoding(do_sample=True, num_samples=3, seed=7, max_new_tokens=4)
    runs = [backend.generate([Request(free[0].messages, decoding=sampled)])[0].texts for _ in range(2)]
    assert len(runs[0]) == 3 and runs[0] == runs[1]


@pytest.mark.slow
def test_adapter_loads_switches_and_unloads(backend, tmp_path):
    from peft import LoraConfig

    scored = request(QUESTION[0]["content"])
    base = backend.generate([scored])[0].option_logprobs
    # make a small adapter on the same model, save it, and drop it, as the LoRA trainer would hand one over
    model = backend.text_model
    model.add_adapter(LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False), adapter_name="made")
    model.save_pretrained(tmp_path, selected_adapters=["made"])
    model.delete_adapter("made")
    backend.load_adapter(str(next(tmp_path.rglob("adapter_config.json")).parent), "t1")
    assert backend.adapter is None and backend.generate([scored])[0].option_logprobs == pytest.approx(base)
    backend.set_adapter("t1")
    assert backend.generate([scored])[0].option_logprobs != pytest.approx(base)
    backend.set_adapter(None)
    assert backend.generate([scored])[0].option_logprobs == pytest.approx(base)
    with pytest.raises(BackendError, match="not loaded"):
        backend.set_adapter("t2")
