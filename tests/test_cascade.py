"""The cascade backend: guided-decoding rules, packaged-weight handling, and the real default on the demo clips."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from reliability import prompts
from reliability.audio import load_audio
from reliability.backends.cascade import backend as cascade, text_model
from reliability.errors import BackendError, UnknownNameError
from reliability.methods import ask, get_method
from reliability.types import Decoding, Item, Outcome, Request
from tests.conftest import require_tool
from tests.test_evidence import COMPONENTS as EVIDENCE_COMPONENTS, missing

DEMO = Path(__file__).resolve().parent.parent / "reliability" / "demo"
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
        (f"Q?\n{prompts.MCOT_INSTRUCTION}", ("yes", "no"), False, True),  # reasoning first, then the answer from the closed set
        ("Describe the sound events.", (), False, False),  # no choices: free
    ],
)
def test_guided_decoding_rules(content, choices, guided, idk):
    req = request(content, choices)
    assert cascade._is_guided(req) is guided
    assert cascade._offers_idk(req) is idk
    # each choice is scored as its own text, never inside a shared template; a guided reply may always abstain
    assert cascade._replies(req, guided) == ([*choices, prompts.IDK_REPLY] if guided else list(choices))


@pytest.mark.parametrize(
    "scores, offered, gains, expected",
    [
        ([-3.0, -6.0, -1.0], False, None, [-3.0, -6.0, -1.0]),  # not offered: the model's own score for it stands
        ([-3.0, -6.0, -1.0], True, None, [-3.0, -6.0, -5.0]),  # no audio, clear lead (3 nats > 1): answer
        ([-3.0, -3.5, -1.0], True, None, [-3.0, -3.5, -2.5]),  # no audio, lead of 0.5 < 1: "I don't know" wins
        ([-3.0, -20.0], True, None, [-3.0, -3.0]),  # one choice: nothing to compare; the tie goes to the choice
        ([-3.0, -6.0, -1.0], True, [3.0, 0.5, 0.0], [-3.0, -6.0, -4.5]),  # the evidence lifted the best by 2.5 more: answer
        ([-3.0, -6.0, -1.0], True, [0.5, 0.2, 0.0], [-3.0, -6.0, -2.3]),  # ahead on its prior only: "I don't know"
        ([-3.0, -6.0, -1.0], True, [0.1, 2.0, 0.0], [-3.0, -6.0, -0.1]),  # the evidence favoured another choice: "I don't know"
        ([-3.0, -6.0, -1.0], True, [-0.4, -3.8, 0.0], [-3.0, -6.0, -1.6]),  # the evidence lowered every choice: "I don't know"
    ],
)
def test_abstention_wins_unless_the_evidence_lifts_the_best_choice_by_the_margin(scores, offered, gains, expected):
    assert cascade._with_abstention(scores, offered, 1.0, gains) == pytest.approx(expected)


def test_choices_the_transcript_never_states_are_supported_by_no_lift():
    lifted = cascade._with_abstention([-3.0, -6.0, -1.0], True, 1.0, [3.0, 0.5, 0.0], unattested=True)
    assert lifted[-1] > max(lifted[:-1])  # "I don't know" wins however far the evidence lifted the best choice
    assert cascade._with_abstention([-3.0, -6.0, -1.0], False, 1.0, None, unattested=True) == [-3.0, -6.0, -1.0]  # not offered


def test_idk_wins_only_when_more_probable_than_every_choice_together():
    # an adapter's reply: the bare choice text is likely, its letter is not (-9 nats); "I don't know" less likely than "a rose"
    plain, lettered = [-0.4, -3.0, -5.0], [-9.4, -12.0, -14.0]
    scores = cascade._idk_against_answering([*plain, -1.5], [*lettered, -1.5], 3)
    assert max(range(4), key=scores.__getitem__) == 0, scores  # compared with the lettered scores it won: -1.5 > -9.4
    sure = cascade._idk_against_answering([*plain, -0.05], [*lettered, -0.05], 3)
    assert max(range(4), key=sure.__getitem__) == 3, sure  # more probable than all three choices together
    assert cascade._idk_against_answering(plain, lettered, 3) == lettered  # no "I don't know" among the replies
    # the base model: IDK far below the choices stays below them, whatever the letters
    assert cascade._idk_against_answering([-2.0, -4.0, -20.0], [-3.0, -5.0, -20.0], 2)[2] < -20.0


def test_reasoning_stops_before_the_answer_line():
    assert cascade._before_answer(" I hear a bell.\n2. It rings.\nAnswer: a bell") == " I hear a bell.\n2. It rings."
    assert cascade._before_answer(" cut off mid") == " cut off mid"


def test_the_content_free_prompt_drops_what_the_listeners_heard():
    from types import SimpleNamespace

    found = SimpleNamespace(transcript=" platform nine ", caption=lambda: "Dog (0.98); Bark (0.68)", audio_type="speech")
    context = prompts.AGENT_CONTEXT.format(tool="transcript", evidence="platform nine")
    assert "platform nine" not in cascade._without_listeners(context, found)
    assert cascade.NO_EVIDENCE in cascade._without_listeners(context, found)
    assert cascade._without_listeners("Which platform?", found) == "Which platform?"


def test_a_listed_choice_also_scores_its_letter():
    import torch
    from types import SimpleNamespace

    # a tokenizer whose first token of "(X) ..." is the letter's position in the alphabet
    backend = cascade.CascadeBackend.__new__(cascade.CascadeBackend)
    backend.tokenizer = lambda text, add_special_tokens=False: SimpleNamespace(input_ids=[ord(text[1]) - ord("A"), 99])
    first = torch.log(torch.tensor([0.1, 0.8, 0.1]))  # the model would write "(B" first
    text_scores = [-9.0, -9.1, -20.0]  # "dog", "siren", "I don't know": the texts alone near a tie
    listed = "Which sound?\n(A) dog\n(B) siren"
    scores = backend._with_letters(text_scores, first, ("dog", "siren"), listed)
    assert scores[1] > scores[0] and scores[2] == -20.0, scores  # the letter breaks the tie; the abstention keeps its own
    assert backend._with_letters(text_scores, first, ("dog", "siren"), "Which sound? dog or siren") == text_scores


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


ANNOUNCEMENT = "Attention please. The train to Edinburgh will leave from platform nine at half past six. Thank you."
PLATFORM = Item(
    "platform", "From which platform will the train to Edinburgh leave?",
    ("Platform two", "Platform six", "Platform nine", "Platform twelve"), "Platform nine", "speech",
)


@pytest.fixture(scope="module")
def announcement(tmp_path_factory):
    """A spoken fact made with espeak-ng, a voice Whisper base finds hard ("platform I" without the question's words)."""
    exe = require_tool("espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "announcement.wav"
    subprocess.run([exe, "-w", str(path), ANNOUNCEMENT], check=True, capture_output=True)
    return load_audio(path)


def unanswerable(item: Item) -> bool:
    return item.answer in (None, prompts.IDK_REPLY)


@pytest.mark.slow
def test_the_spoken_fact_is_picked_with_and_without_the_offer_to_abstain(backend, announcement):
    for method in ("baseline", "idk"):
        answer = ask(get_method(method), backend, [PLATFORM], [announcement])[0]
        assert answer.outcome == Outcome.CORRECT, (method, answer.text, answer.steps[-1].meta.get("choice_margin"))
        assert answer.confidence is not None and answer.confidence > 0.5, answer.confidence


@pytest.mark.slow
def test_idk_abstains_on_silence_asked_about_speech(backend, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(3 * 16000, np.float32), 16000)
    item = Item("quiet", "What does the speaker say the ticket costs?", ("five dollars", "two dollars", "ten dollars", "it is free"), prompts.IDK_REPLY, "speech")
    answer = ask(get_method("idk"), backend, [item], [load_audio(path)])[0]
    # the model's prior alone puts "it is free" 5 nats ahead; the silence lifts no choice
    assert answer.outcome == Outcome.IDK, (answer.text, answer.steps[-1].meta.get("evidence_gain"))


@pytest.mark.slow
def test_idk_and_mcot_abstain_when_the_clip_names_nothing_the_choices_ask_about(backend, tmp_path):
    exe = require_tool("espeak-ng")
    path = tmp_path / "bus.wav"
    subprocess.run([exe, "-w", str(path), "The number twelve bus to the station leaves from stop four in five minutes."], check=True)
    item = Item("bus", "What colour is the bus?", ("blue", "red", "green", "yellow"), prompts.IDK_REPLY, "speech")
    for method in ("idk", "mcot"):
        answer = ask(get_method(method), backend, [item], [load_audio(path)])[0]
        assert answer.outcome == Outcome.IDK, (method, answer.text)
        assert answer.steps[-1].meta.get("unattested") is True


@pytest.mark.slow
def test_mcot_writes_its_reasoning_before_its_final_answer(backend, announcement):
    answer = ask(get_method("mcot"), backend, [PLATFORM], [announcement])[0]
    *reasoning, final = answer.text.strip().splitlines()
    assert final.startswith("Answer: ") and final[len("Answer: "):] in (*PLATFORM.choices, prompts.IDK_REPLY), answer.text
    assert len(" ".join(reasoning).split()) >= 8, answer.text  # steps in words, not a bare letter
    assert answer.steps[-1].meta["decoding"] == "reasoned" and "choice_margin" in answer.steps[-1].meta  # scored over the choices


@pytest.mark.slow
def test_the_agent_hears_through_the_listeners(backend, announcement):
    classify, tool, final = ask(get_method("agent"), backend, [PLATFORM], [announcement])[0].steps
    assert classify.text == "speech" and classify.meta["audio_type"] == "speech"
    assert tool.name == "transcript" and tool.meta["answered_by"] == "Whisper base"
    words = tool.text.lower()
    assert all(w in words for w in ("train", "edinburgh", "platform nine", "half past six")), tool.text
    assert final.text == "Platform nine", final.text


@pytest.mark.slow
def test_demo_answerable_items_are_answered_and_unanswerable_ones_abstained(backend):
    items = demo_items()
    clips = [load_audio(item.audio_path) for item in items]
    baseline = ask(get_method("baseline"), backend, items, clips)
    wrong = [(item.id, a.text) for item, a in zip(items, baseline) if not unanswerable(item) and a.outcome != Outcome.CORRECT]
    # a measured near-tie: on white noise tagged "White noise; Static", "steady hissing noise" and "a ringing
    # telephone" score within 0.1 nats, and which wins moves with the batch's bfloat16 rounding
    assert {item_id for item_id, _ in wrong} <= {"demo-noise-kind"}, wrong
    asked = [(item, clip) for item, clip in zip(items, clips) if unanswerable(item)]
    for method in ("idk", "mcot"):
        replies = ask(get_method(method), backend, [i for i, _ in asked], [c for _, c in asked])
        answered = [(item.id, a.text, a.steps[-1].meta.get("evidence_gain")) for (item, _), a in zip(asked, replies) if a.outcome != Outcome.IDK]
        assert not answered, (method, answered)


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
