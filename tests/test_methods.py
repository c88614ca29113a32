"""Methods: what each sends to the backend, how replies are judged, and bad items refused."""
from __future__ import annotations

import numpy as np
import pytest

from reliability import prompts
from reliability.audio import SAMPLE_RATE, from_array
from reliability.errors import ItemError, UnknownNameError
from reliability.methods import METHODS, ask, get_method
from reliability.types import Decoding, Generation, Item, Outcome
from tests.conftest import tone

ITEM = Item("q1", "What animal is heard?", ("dog", "cat", "cow"), "dog", "sound")


@pytest.fixture
def clip():
    return from_array(tone(), SAMPLE_RATE, source="tone")


def user_text(request) -> str:
    return request.messages[-1]["content"]


def test_baseline_sends_question_with_choices_and_audio(scripted, clip):
    scripted.enqueue("dog")
    [answer] = ask(get_method("baseline"), scripted, [ITEM], [clip])
    [request] = scripted.seen
    assert "What animal is heard?" in user_text(request) and "(B) cat" in user_text(request)
    assert request.audio is not None and request.audio_hash == clip.hash
    assert request.choices == ITEM.choices
    assert answer.outcome is Outcome.CORRECT and answer.judgement.choice == "dog"
    assert answer.steps[0].messages == request.messages


def test_idk_appends_abstention_instruction_and_judges_idk(scripted, clip):
    scripted.enqueue("I don't know.")
    [answer] = ask(get_method("idk"), scripted, [ITEM], [clip])
    assert user_text(scripted.seen[0]).endswith(prompts.IDK_INSTRUCTION)
    assert answer.outcome is Outcome.IDK


def test_mcot_has_few_shot_turns_and_reads_final_answer(scripted, clip):
    scripted.enqueue("1. I hear barking.\n2. A cat would meow.\n3. Clear.\nAnswer: dog")
    [answer] = ask(get_method("mcot"), scripted, [ITEM], [clip], Decoding(max_new_tokens=16))
    request = scripted.seen[0]
    assert [m["role"] for m in request.messages] == ["user", "assistant"] * len(prompts.MCOT_EXAMPLES) + ["user"]
    assert request.decoding.max_new_tokens == 256, "chain of thought gets its own budget"
    assert answer.outcome is Outcome.CORRECT


@pytest.mark.parametrize(
    "kind_reply, tool_prompt",
    [("Speech.", "Transcribe"), ("This is music", "music"), ("sound", "sound events"), ("no idea", "sound events")],
)
def test_agent_three_steps_routes_tool_by_detected_type(scripted, clip, kind_reply, tool_prompt):
    scripted.enqueue(kind_reply, "a dog barks twice", "dog")
    [answer] = ask(get_method("agent"), scripted, [ITEM], [clip])
    classify, tool, final = scripted.seen
    assert tool_prompt in user_text(tool)
    assert "a dog barks twice" in user_text(final) and "What animal is heard?" in user_text(final)
    assert all(r.audio is not None for r in (classify, tool, final))
    assert [s.name for s in answer.steps][0] == "classify" and len(answer.steps) == 3
    assert answer.outcome is Outcome.CORRECT


def test_agent_batches_each_step(scripted, clip):
    items = [ITEM, Item("q2", "What is heard?", ("music", "speech"), "music", "music")]
    scripted.responder = lambda r: "music" if "kind of audio" in user_text(r) else "a melody" if "Describe" in user_text(r) else "music"
    answers = ask(get_method("agent"), scripted, items, [clip, clip])
    assert len(scripted.seen) == 6 and [a.item_id for a in answers] == ["q1", "q2"]


def test_no_audio_request_has_no_audio(scripted):
    scripted.enqueue("cat")
    [answer] = ask(get_method("baseline"), scripted, [ITEM], [None])
    assert scripted.seen[0].audio is None and answer.steps[0].with_audio is False
    assert answer.outcome is Outcome.WRONG


def test_confidence_from_option_logprobs(scripted, clip):
    scripted.enqueue(Generation(["dog"], option_logprobs=[-0.1, -3.0, -3.0]))
    [answer] = ask(get_method("baseline"), scripted, [ITEM], [clip])
    expected = np.exp(-0.1) / (np.exp(-0.1) + 2 * np.exp(-3.0))
    assert answer.confidence == pytest.approx(expected)


def test_lora_method_switches_adapter_and_restores(scripted, clip):
    scripted.load_adapter("/tmp/adapter", "idk5at5")
    active = []
    scripted.responder = lambda r: active.append(scripted.adapter) or "dog"
    [answer] = ask(get_method("lora:idk5at5"), scripted, [ITEM], [clip])
    assert active == ["idk5at5"] and scripted.adapter is None
    assert answer.method == "lora:idk5at5"


def test_open_question_without_key(scripted, clip):
    scripted.enqueue("I'm not sure.")
    [answer] = ask(get_method("baseline"), scripted, [Item("o", "What is heard?", (), None)], [clip])
    assert answer.outcome is Outcome.IDK


def test_repeated_choices_are_asked(scripted):
    # 27 MMAU test-mini items repeat an option verbatim; they must still be askable
    scripted.enqueue("guitar")
    [answer] = ask(get_method("baseline"), scripted, [Item("r", "Which?", ("guitar", "piano", "guitar"), "guitar")], [None])
    assert answer.outcome is Outcome.CORRECT


def test_unknown_method_lists_known():
    with pytest.raises(UnknownNameError) as err:
        get_method("cot")
    assert all(name in str(err.value) for name in METHODS)


@pytest.mark.parametrize(
    "item, message",
    [
        (Item("x", "Which?", ("a", "b"), "c"), "not among the choices"),
        (Item("x", "  ", ("a", "b"), "a"), "question is empty"),
        (Item("x", "Which?", (), "a"), "no choices"),
        (Item("x", "Which?", ("a", ""), "a"), "choice is empty"),
        (Item("x", "W" * 5000, ("a", "b"), "a"), "5000 characters"),
    ],
)
def test_bad_items_refused_with_offending_value(scripted, item, message):
    with pytest.raises(ItemError, match=message):
        ask(get_method("baseline"), scripted, [item], [None])
    assert scripted.seen == [], "nothing is sent for a bad item"


def test_long_clip_answer_records_the_cut(scripted):
    scripted.enqueue("dog")
    [answer] = ask(get_method("baseline"), scripted, [ITEM], [from_array(tone(seconds=31), SAMPLE_RATE)])
    assert {"audio_cut": True, "heard_s": 30.0, "clip_s": 31.0}.items() <= answer.steps[0].meta.items()
    assert len(scripted.seen[0].audio) == 30 * SAMPLE_RATE
