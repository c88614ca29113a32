"""A clip's modality: detected by YAMNet for any backend, stored as detected unless the user names one."""
from __future__ import annotations

import os

import pytest

from annotations import store
from reliability.audio import load_audio
from reliability.errors import ItemError
from reliability.services import Services, Settings
from reliability.services.compare import LAB_DATASET
from reliability.services.modality import AUTO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEECH = os.path.join(REPO, "reliability", "demo", "clips", "speech.flac")
MELODY = os.path.join(REPO, "reliability", "demo", "clips", "melody.flac")
OPTIONS = ["at nine", "at ten"]


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    folder = tmp_path_factory.mktemp("modality")
    return Services.build(Settings(str(folder / "lab.db"), str(folder), backend="scripted", backend_kwargs={"reply": "B"}))


def stored_modality(services, item_id: str) -> str:
    return next(i.modality for i in store.get_items(services.pool.db(), LAB_DATASET) if i.id == item_id)


@pytest.mark.parametrize("clip, expected", [(SPEECH, "speech"), (MELODY, "music")])
def test_a_backend_without_ears_of_its_own_still_gets_the_clips_modality(services, clip, expected):
    detection = services.modality.detect_file(clip)
    assert detection.modality == expected
    assert max(detection.scores, key=detection.scores.get) == ("speech" if expected == "speech" else "music")


@pytest.mark.parametrize("named", [AUTO, "", "Auto"])
def test_auto_or_empty_stores_the_detected_modality(services, named):
    result = next(iter(services.compare.compare(SPEECH, f"When does it open? {named!r}", OPTIONS, "B", ["baseline"], modality=named)))
    assert stored_modality(services, result.item_id) == "speech"


def test_a_modality_the_user_names_wins_and_a_new_request_detects_again(services):
    question = "What is heard, named?"
    first = next(iter(services.compare.compare(SPEECH, question, OPTIONS, "B", ["baseline"], modality="music")))
    assert stored_modality(services, first.item_id) == "music"
    again = next(iter(services.compare.compare(SPEECH, question, OPTIONS, "B", ["baseline"])))  # the default is auto
    assert again.cached and stored_modality(services, again.item_id) == "speech"


def test_resolve_says_where_the_modality_came_from_and_refuses_unknown_names(services):
    clip = load_audio(SPEECH)
    assert services.modality.resolve("", clip).detection.modality == "speech"
    assert services.modality.resolve("sound", clip).chosen
    with pytest.raises(ItemError, match="'video' is not one of"):
        services.modality.resolve("video", clip)


def test_the_cascade_detects_with_its_own_listener_whose_cache_its_answers_reuse(tmp_path):
    services = Services.build(Settings(str(tmp_path / "lab.db"), str(tmp_path), backend="cascade"))
    clip = load_audio(SPEECH)
    assert services.modality.detect(clip).modality == "speech"
    cascade = services.pool.get_backend("cascade")
    assert cascade.evidence.computed == 1 and cascade.evidence.transcriber is None  # YAMNet only: Whisper not loaded
    assert cascade.evidence.sounds(clip.samples, clip.hash).kind == "speech" and cascade.evidence.computed == 1
