"""K@N IDK datasets on a scripted backend with known answers: counts, targets, ratios, one request per item, resume, export."""
from __future__ import annotations

import json

import pytest
import soundfile as sf

from reliability import prompts
from reliability.audio import SAMPLE_RATE
from reliability.backends.scripted import ScriptedBackend
from reliability.errors import ReliabilityError
from reliability.training.idk_dataset import (
    SampledItem,
    SamplingConfig,
    export_jsonl,
    format_ratios,
    idk_ratios,
    kn_dataset,
    load_samples,
    sample_items,
    samples_path,
)
from reliability.methods import Baseline
from reliability.types import Item

from tests.conftest import tone

CHOICES = ("dog", "cat", "bird", "cow")
# item index -> how many of its 5 samples are right; modality by index: sound, music, speech, ...
CORRECT = [0, 1, 2, 3, 4, 5, 5, 0, 3]


def make_items(n: int = len(CORRECT), audio_path: str | None = None) -> list[Item]:
    modalities = ("sound", "music", "speech")
    return [Item(f"q{i}", f"Which animal is it, number {i}?", CHOICES, "dog", modalities[i % 3], audio_path, "toy") for i in range(n)]


def known_answers(request) -> list[str]:
    """Five replies for the item named in the prompt: the first CORRECT[i] right, then a wrong one and an abstention."""
    index = int(request.messages[-1]["content"].split("number ")[1].split("?")[0])
    right = CORRECT[index]
    wrong = ["cat", "I don't know"] * 3
    return ["dog"] * right + wrong[: request.decoding.num_samples - right]


@pytest.fixture
def backend():
    return ScriptedBackend(responder=known_answers)


def test_counts_are_right_and_one_request_carries_n_samples(backend):
    config = SamplingConfig(n=5, temperature=0.7, top_p=0.8, batch_size=4, condition="none")
    result = sample_items(backend, make_items(), config)
    assert [r.n_correct for r in result.records] == CORRECT
    assert [r.outcomes.count("idk") for r in result.records] == [(5 - c) // 2 for c in CORRECT]
    # one request per item, N samples sharing its prefill: never N separate calls
    assert len(backend.seen) == len(CORRECT)
    for request in backend.seen:
        d = request.decoding
        assert (d.do_sample, d.num_samples, d.temperature, d.top_p, d.seed) == (True, 5, 0.7, 0.8, 0)
        assert request.audio is None and request.choices == CHOICES, "the baseline's own request"
    assert result.records[0].messages == Baseline().messages(make_items()[0]), "the samples use the baseline prompt"


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_every_k_from_one_pass(backend, k):
    records = sample_items(backend, make_items(), SamplingConfig(condition="none")).records
    examples = kn_dataset(records, k)
    for example, right in zip(examples, CORRECT):
        assert example.target == ("dog" if right >= k else prompts.IDK_REPLY)
        assert (example.k, example.n, example.n_correct, example.is_idk) == (k, 5, right, right < k)


def test_idk_ratio_per_k_and_modality(backend):
    rows = idk_ratios(sample_items(backend, make_items(), SamplingConfig(condition="none")).records)
    ratio = {(r["k"], r["group"]): r["ratio"] for r in rows}
    # sound items q0,q3,q6 have 0,3,5 right; music q1,q4,q7: 1,4,0; speech q2,q5,q8: 2,5,3
    assert ratio[(1, "sound")] == pytest.approx(1 / 3)
    assert ratio[(4, "sound")] == pytest.approx(2 / 3)
    assert ratio[(1, "music")] == pytest.approx(1 / 3)
    assert ratio[(2, "music")] == pytest.approx(2 / 3)
    assert ratio[(5, "speech")] == pytest.approx(2 / 3)
    assert ratio[(1, "total")] == pytest.approx(2 / 9)
    assert ratio[(5, "total")] == pytest.approx(7 / 9)
    totals = [ratio[(k, "total")] for k in range(1, 6)]
    assert totals == sorted(totals), "the IDK ratio never falls as K grows"
    assert [r["group"] for r in rows[:4]] == ["sound", "music", "speech", "total"]
    assert "5@5" in format_ratios(rows) and "77.8 %" in format_ratios(rows)


def test_samples_persist_and_resume_without_asking_again(backend, tmp_path):
    config = SamplingConfig(condition="none", batch_size=2)
    path = samples_path(tmp_path, "toy", backend, config)
    first = sample_items(backend, make_items(5), config, path)
    assert first.sampled == 5 and len(load_samples(path)) == 5
    asked = len(backend.seen)
    again = sample_items(backend, make_items(), config, path)
    assert again.sampled == len(CORRECT) - 5, "only the new items are asked"
    assert len(backend.seen) == asked + len(CORRECT) - 5
    assert [r.n_correct for r in again.records] == CORRECT
    other = samples_path(tmp_path, "toy", backend, SamplingConfig(condition="none", temperature=0.5))
    assert other != path, "other decoding settings get their own file"


def test_a_torn_last_line_is_ignored(backend, tmp_path):
    config = SamplingConfig(condition="none")
    path = tmp_path / "s.jsonl"
    sample_items(backend, make_items(3), config, path)
    with open(path, "a") as f:
        f.write('{"item": {"id": "q3"')  # the process died while writing
    assert [r.item.id for r in load_samples(path)] == ["q0", "q1", "q2"]
    path.write_text('{"broken": 1}\n' + path.read_text())
    with pytest.raises(ReliabilityError, match=":1:"):
        load_samples(path)


def test_items_that_cannot_be_sampled_are_skipped_with_a_reason(backend, tmp_path):
    items = make_items(2) + [Item("nokey", "Which animal, number 0?", CHOICES, None, "sound", None, "toy")]
    result = sample_items(backend, items, SamplingConfig(condition="full"))
    reasons = dict(result.skipped)
    assert set(reasons) == {"q0", "q1", "nokey"}
    assert "no answer key" in reasons["nokey"] and "no audio" in reasons["q0"]
    assert result.records == [] and backend.seen == []


def test_the_clip_goes_with_each_request_under_full(backend, tmp_path):
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(seconds=0.5), SAMPLE_RATE)
    missing = Item("gone", "Which animal, number 1?", CHOICES, "dog", "sound", str(tmp_path / "gone.wav"), "toy")
    result = sample_items(backend, make_items(2, str(wav)) + [missing], SamplingConfig())
    assert [r.item.id for r in result.records] == ["q0", "q1"]
    assert all(r.audio is not None and r.audio_hash for r in backend.seen)
    assert "gone" in dict(result.skipped)


def test_the_bare_model_answers_and_the_adapter_comes_back(backend):
    backend.load_adapter("/nowhere", "mine")
    backend.set_adapter("mine")
    seen_adapter = []
    backend.responder = lambda request: seen_adapter.append(backend.adapter) or known_answers(request)
    sample_items(backend, make_items(2), SamplingConfig(condition="none"))
    assert seen_adapter == [None, None]
    assert backend.adapter == "mine"


def test_a_backend_returning_the_wrong_number_of_samples_is_refused():
    backend = ScriptedBackend(responder=lambda request: ["dog"] * 3)
    with pytest.raises(ReliabilityError, match="3 samples, not 5"):
        sample_items(backend, make_items(1), SamplingConfig(condition="none"))


def test_jsonl_export_is_chat_examples(backend, tmp_path):
    records = sample_items(backend, make_items(), SamplingConfig(condition="none")).records
    path = tmp_path / "out" / "5at5.jsonl"
    assert export_jsonl(kn_dataset(records, 5), path) == len(CORRECT)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [m["role"] for m in lines[0]["messages"]] == ["user", "assistant"]
    assert lines[0]["messages"][-1]["content"] == prompts.IDK_REPLY and lines[5]["messages"][-1]["content"] == "dog"
    assert (lines[0]["item_id"], lines[0]["modality"], lines[0]["k"], lines[0]["n"], lines[0]["idk"]) == ("q0", "sound", 5, 5, True)


def test_records_round_trip_through_json(backend):
    record = sample_items(backend, make_items(1), SamplingConfig(condition="none")).records[0]
    again = SampledItem.from_json(json.loads(json.dumps(record.as_json())))
    assert again == record and again.item.choices == CHOICES


@pytest.mark.parametrize("bad", [dict(n=0), dict(batch_size=0), dict(condition="fragments")])
def test_bad_sampling_settings_are_refused(bad):
    with pytest.raises((ValueError, KeyError)):
        SamplingConfig(**bad)


def test_k_outside_one_to_n_is_refused(backend):
    records = sample_items(backend, make_items(1), SamplingConfig(condition="none")).records
    with pytest.raises(ValueError, match="between 1 and N=5"):
        kn_dataset(records, 6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sampling_on_the_tiny_qwen2_audio_is_reproducible(dtype, tmp_path):
    """The real sampling path in the CPU and the GPU dtype: N texts per item with the clip, the same again for the same seed."""
    pytest.importorskip("transformers")
    from reliability.backends.qwen2_audio import Qwen2AudioBackend
    from tests.tiny import tiny_qwen2_audio

    backend = Qwen2AudioBackend(str(tiny_qwen2_audio(tmp_path / "tiny")), dtype=dtype)
    wav = tmp_path / "tone.wav"
    sf.write(wav, tone(seconds=0.5), SAMPLE_RATE)
    config = SamplingConfig(n=3, max_new_tokens=4, batch_size=2)
    first = sample_items(backend, make_items(2, str(wav)), config).records
    assert [len(r.texts) for r in first] == [3, 3]
    assert any(len(set(r.texts)) > 1 for r in first), "sampled answers vary"
    again = sample_items(backend, make_items(2, str(wav)), config).records
    assert [r.texts for r in again] == [r.texts for r in first], "the same seed draws the same dataset"
