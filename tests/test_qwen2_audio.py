"""The Qwen2-Audio backend on a tiny random model, in float32 and bfloat16: audio arrives, batching holds, options score, LoRA switches."""
from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from reliability.audio import SAMPLE_RATE  # noqa: E402
from reliability.backends.base import lm_target_modules_regex  # noqa: E402
from reliability.backends.qwen2_audio import Qwen2AudioBackend  # noqa: E402
from reliability.errors import BackendError  # noqa: E402
from reliability.types import Decoding, Request  # noqa: E402
from tests.conftest import tone  # noqa: E402
from tests.tiny import tiny_qwen2_audio  # noqa: E402

GREEDY = Decoding(max_new_tokens=8)
QUESTION = [{"role": "user", "content": "What is the main sound in the audio?"}]
DTYPES = ("float32", "bfloat16")  # the CPU default and the GPU default
# log-probabilities from two computations of the same value (cached vs full forward, batched vs alone)
# agree to the dtype's rounding: bfloat16 keeps 8 significant bits, so a logit near 10 carries ~0.04 of error
TOLERANCE = {"float32": 1e-4, "bfloat16": 0.1}
CHOICES = ("a dog barking", "music", "rain is falling on the roof")


def noise(seconds: float, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory):
    return tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))


@pytest.fixture(scope="session", params=DTYPES)
def backend(tiny_path, request):
    return Qwen2AudioBackend(str(tiny_path), dtype=request.param, batch_size=8)


def tolerance(backend) -> float:
    return TOLERANCE[str(backend.dtype).removeprefix("torch.")]


def last_logits(backend, request) -> torch.Tensor:
    inputs, _ = backend.encode([request])
    with torch.inference_mode():
        return backend.hf(**inputs).logits[0, -1]  # (V,)


def test_audio_reaches_the_model(backend):
    inputs, _ = backend.encode([Request(QUESTION, tone(seconds=3.0))])
    audio_id = backend.hf.config.audio_token_id
    assert int((inputs["input_ids"] == audio_id).sum()) == 75, "3 s of audio is 75 <|AUDIO|> tokens"
    assert inputs["input_features"].shape == (1, 128, 3000)
    assert inputs["input_features"].dtype == backend.hf.dtype == backend.dtype, "features follow the model's dtype"
    assert inputs["input_features"].abs().sum() > 0
    with_tone = last_logits(backend, Request(QUESTION, tone(seconds=3.0)))
    with_noise = last_logits(backend, Request(QUESTION, noise(3.0, seed=0)))
    without = last_logits(backend, Request(QUESTION, None))
    assert not torch.allclose(with_tone, with_noise), "a different clip must change the logits"
    assert not torch.allclose(with_tone, without), "audio vs no audio must change the logits"


def test_no_audio_request_has_no_audio_slot(backend):
    request = Request(QUESTION, None)
    inputs, _ = backend.encode([request])
    assert "<|audio_bos|>" not in backend.prompt(request)
    assert "input_features" not in inputs
    assert int((inputs["input_ids"] == backend.hf.config.audio_token_id).sum()) == 0


def test_audio_opens_the_first_user_turn(backend):
    messages = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "And now?"},
    ]
    text = backend.prompt(Request(messages, tone()))
    assert text.count("<|AUDIO|>") == 1
    assert "<|im_start|>system\nYou are a helpful assistant.<|im_end|>" in text
    assert "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\nHello<|im_end|>" in text
    assert text.endswith("<|im_start|>assistant\n")


def greedy_steps(backend, requests, monkeypatch) -> list[tuple[list[int], torch.Tensor]]:
    """The backend's own greedy run over `requests` (its batching, padding and settings), recording each
    row's new token ids and the logits of every step: [(ids, (steps, V))], one per request."""
    rows = []
    original = backend.hf.generate

    def recording(**kwargs):
        out = original(**kwargs, output_scores=True, return_dict_in_generate=True)
        new = out.sequences[:, kwargs["input_ids"].shape[1] :]  # (batch, steps)
        scores = torch.stack(out.scores, dim=1).float()  # (batch, steps, V)
        rows.extend((new[r].tolist(), scores[r]) for r in range(len(new)))
        return out.sequences

    with monkeypatch.context() as patch:
        patch.setattr(backend.hf, "generate", recording)
        backend.generate(requests)
    return rows


LONGER = Decoding(max_new_tokens=24)
GREEDY_REQUESTS = [
    Request(QUESTION, tone(seconds=1.0), LONGER),
    Request([{"role": "user", "content": "Which instrument is playing? Answer with one word."}], None, LONGER),
    Request([{"role": "user", "content": "Describe the music."}], noise(2.5, seed=1), LONGER),
    Request(QUESTION, None, LONGER),
    Request([{"role": "user", "content": "Classify the audio as speech, sound or music."}], tone(220.0, seconds=0.5), LONGER),
]


def test_batched_greedy_equals_one_by_one(backend, monkeypatch):
    """Batched and one-at-a-time greedy decoding pick the same token at every step up to the first near-tie.

    Padding a row changes the shapes of its matmuls and so where they round. In float32 that is far
    below any gap between the two best logits, and the tokens are equal. bfloat16 rounds logits to 8
    significant bits, so exact ties occur within a few dozen tokens of the tiny model; a tie may break
    the other way in a batch, and the continuation then legitimately differs. What must hold in both:
    where a batched row first parts from the row run alone, the lone run rated the batched pick within
    the dtype's rounding of its own pick.
    """
    alone = [greedy_steps(backend, [r], monkeypatch)[0] for r in GREEDY_REQUESTS]
    texts = [backend.processor.tokenizer.decode(ids, skip_special_tokens=True) for ids, _ in alone]
    assert len(set(texts)) > 1, f"all replies equal, the check would be vacuous: {texts}"
    for batch_size in (8, 2):
        monkeypatch.setattr(backend, "batch_size", batch_size)
        batched = greedy_steps(backend, GREEDY_REQUESTS, monkeypatch)
        for (mine, _), (ids, logits) in zip(batched, alone):
            step = next((t for t, (a, b) in enumerate(zip(ids, mine)) if a != b), None)
            if step is None:
                continue  # the batched row continues past the lone row's end only with padding
            gap = float(logits[step, ids[step]] - logits[step, mine[step]])
            assert gap <= tolerance(backend), f"batch {batch_size}: step {step} picked token {mine[step]}, {gap:.3f} below the best"


def test_audio_changes_generation(backend):
    clips = (tone(seconds=2.0), noise(2.0, seed=2), None)
    texts = [backend.generate([Request(QUESTION, clip, GREEDY)])[0].text for clip in clips]
    assert len(set(texts)) == 3, texts


def test_sampling_returns_num_samples_texts(backend):
    decoding = Decoding(do_sample=True, temperature=1.0, num_samples=4, seed=7, max_new_tokens=8)
    request = Request(QUESTION, tone(), decoding)
    first = backend.generate([request])[0].texts
    assert len(first) == 4 and len(set(first)) > 1, first
    assert backend.generate([request])[0].texts == first, "a seeded draw must repeat"
    greedy = Request(QUESTION, tone(), Decoding(num_samples=3, max_new_tokens=8))
    greedy_texts = backend.generate([greedy])[0].texts
    assert len(greedy_texts) == 3 and len(set(greedy_texts)) == 1
    # one call with mixed decodings is grouped internally and answered in request order
    mixed = backend.generate([greedy, request, greedy])
    assert [g.texts for g in mixed] == [greedy_texts, first, greedy_texts]


def test_option_logprobs_match_a_full_forward(backend):
    request = Request(QUESTION, tone(seconds=1.5), GREEDY, CHOICES)
    scores = backend.generate([request])[0].option_logprobs
    assert len(scores) == len(CHOICES) and all(math.isfinite(s) and s < 0 for s in scores), scores
    # reference: the prompt and each choice in one sequence, without the shared cache
    inputs, _ = backend.encode([request])
    device = inputs["input_ids"].device
    for choice, score in zip(CHOICES, scores):
        ids = torch.tensor(backend.processor.tokenizer(choice, add_special_tokens=False)["input_ids"], device=device)  # (L,)
        full = torch.cat([inputs["input_ids"], ids[None]], dim=1)  # (1, P+L)
        features = {k: inputs[k] for k in ("input_features", "feature_attention_mask")}
        with torch.inference_mode():
            logits = backend.hf(input_ids=full, attention_mask=torch.ones_like(full), **features).logits  # (1, P+L, V)
        lp = logits[0, -len(ids) - 1 : -1].float().log_softmax(-1).gather(-1, ids[:, None])  # (L, 1)
        assert score == pytest.approx(lp.mean().item(), abs=tolerance(backend))
    other = backend.generate([Request(QUESTION, noise(1.5, seed=3), GREEDY, CHOICES)])[0].option_logprobs
    assert other != scores, "option scores must depend on the clip"


def test_batched_option_scores_equal_one_by_one(backend, monkeypatch):
    # clips and no clips, and different numbers of choices, in one batch: every row pads differently
    one = Decoding(max_new_tokens=1)  # the scores are under test, not the text
    requests = [
        Request(QUESTION, tone(seconds=1.0), one, CHOICES),
        Request([{"role": "user", "content": "Which instrument is playing?"}], None, one, ("piano", "guitar")),
        Request([{"role": "user", "content": "Describe the music."}], noise(2.5, seed=1), one, (*CHOICES, "I don't know")),
        Request(QUESTION, None, one, CHOICES),
        Request([{"role": "user", "content": "Classify the audio."}], tone(220.0, seconds=0.5), one, ("speech", "sound", "music")),
    ]
    alone = [backend.generate([r])[0].option_logprobs for r in requests]
    calls = []
    score = backend._option_logprobs
    monkeypatch.setattr(backend, "_option_logprobs", lambda batch: calls.append(len(batch)) or score(batch))
    batched = [g.option_logprobs for g in backend.generate(requests)]
    assert calls == [len(requests)], "one scoring pass for the whole batch"
    for mine, reference in zip(batched, alone):
        assert mine == pytest.approx(reference, abs=tolerance(backend))
        assert int(np.argmax(mine)) == int(np.argmax(reference)), "the chosen option is the same"
    assert len({int(np.argmax(s)) for s in alone}) > 1, f"every request picks the same option, the check would be vacuous: {alone}"


def test_long_clip_is_cut_and_flagged(backend):
    gen = backend.generate([Request(QUESTION, noise(31.0, seed=4), Decoding(max_new_tokens=2))])[0]
    assert gen.meta.get("audio_cut") is True
    inputs, _ = backend.encode([Request(QUESTION, noise(31.0, seed=4))])
    assert int((inputs["input_ids"] == backend.hf.config.audio_token_id).sum()) == 750
    assert "audio_cut" not in backend.generate([Request(QUESTION, tone(), Decoding(max_new_tokens=2))])[0].meta


@pytest.mark.parametrize("dtype", DTYPES)
def test_lora_targets_only_the_language_model(tiny_path, tmp_path, dtype):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2AudioForConditionalGeneration

    base = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_path)
    regex = lm_target_modules_regex(base, "qwen2-audio")
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=regex))
    wrapped = [name for name, module in peft_model.named_modules() if hasattr(module, "lora_A")]
    assert len(wrapped) == 2 * 7, wrapped  # 2 layers x (q, k, v, o, gate, up, down)
    assert all("language_model" in n and "audio_tower" not in n for n in wrapped), wrapped
    assert lm_target_modules_regex(peft_model, "qwen2-audio") == regex
    # lora_B starts at zero (a no-op); perturb it so that the adapter visibly changes replies
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen))
    peft_model.save_pretrained(tmp_path / "perturbed")

    backend = Qwen2AudioBackend(str(tiny_path), dtype=dtype)  # a float32 adapter on either base, as on a GPU
    requests = [Request(QUESTION, tone(seconds=1.0), GREEDY), Request(QUESTION, None, GREEDY)]
    plain = [g.text for g in backend.generate(requests)]
    backend.load_adapter(str(tmp_path / "perturbed"), "perturbed")
    assert [g.text for g in backend.generate(requests)] == plain, "loading must not activate the adapter"
    backend.set_adapter("perturbed")
    assert backend.describe()["adapter"] == "perturbed"
    adapted = [g.text for g in backend.generate(requests)]
    assert adapted != plain
    backend.set_adapter(None)
    assert [g.text for g in backend.generate(requests)] == plain, "switching off must restore the base exactly"
    with pytest.raises(KeyError, match="unknown adapter 'missing'"):
        backend.set_adapter("missing")

    preloaded = Qwen2AudioBackend(str(tiny_path), dtype=dtype, adapter=str(tmp_path / "perturbed"))
    assert preloaded.adapter == "perturbed"
    assert [g.text for g in preloaded.generate(requests)] == adapted


@pytest.mark.parametrize("model_id", ["/nonexistent/tiny-qwen2-audio", "nobody/no-such-audio-model"])
def test_bad_model_raises_backend_error(model_id):
    # the hub id fails because conftest sets HF_HUB_OFFLINE and the id is in no local cache
    with pytest.raises(BackendError, match="qwen2-audio") as err:
        Qwen2AudioBackend(model_id)
    assert "\n" not in str(err.value)


def test_bad_adapter_raises_backend_error(backend, tmp_path):
    with pytest.raises(BackendError, match="adapter_config.json"):
        backend.load_adapter(str(tmp_path), "nothing")
