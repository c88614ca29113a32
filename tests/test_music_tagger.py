"""The music tagger: its packaged ONNX model, its front end, and the tags it gives real instruments, speech and noise."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from reliability.audio import SAMPLE_RATE, load_audio
from reliability.backends.cascade.music import (
    GENRE_TAGS,
    INPUT_NAME,
    INSTRUMENT_TAGS,
    MODEL_PATH,
    MOOD_TAGS,
    MTT_LABELS,
    N_MELS,
    OUTPUT_NAME,
    PATCH_FRAMES,
    TAG_KIND,
    VOICE_TAGS,
    MusicTagger,
)
from reliability.errors import AudioError, BackendError
from tests.conftest import render_instrument as render, tone

@pytest.fixture(scope="module")
def tagger():
    return MusicTagger(threads=1)


def test_packaged_model_takes_3_s_log_mel_patches_and_gives_the_50_tags():
    import onnxruntime as ort

    assert MODEL_PATH.stat().st_size < 5e6, MODEL_PATH.stat().st_size
    session = ort.InferenceSession(str(MODEL_PATH), providers=["CPUExecutionProvider"])
    (x,), (y,) = session.get_inputs(), session.get_outputs()
    assert (x.name, x.shape[1:], x.type) == (INPUT_NAME, [PATCH_FRAMES, N_MELS], "tensor(float)")
    assert (y.name, y.shape[1:]) == (OUTPUT_NAME, [len(MTT_LABELS)])
    assert len(set(MTT_LABELS)) == 50


def test_every_tag_has_one_kind():
    assert sorted(INSTRUMENT_TAGS + GENRE_TAGS + VOICE_TAGS + MOOD_TAGS) == sorted(MTT_LABELS)
    assert set(TAG_KIND) == set(MTT_LABELS)


def test_licence_notice_records_the_packaged_model():
    notice = MODEL_PATH.with_name("MUSICNN-LICENSE.txt").read_text()
    assert "Permission to use, copy, modify, and/or distribute this software" in notice
    assert hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest() in notice


# General MIDI programs musicnn names robustly (measured: the family's tag leads by 0.2 or more);
# brass, reeds, organ, harpsichord, marimba and distorted guitar it does not (see the model card)
@pytest.mark.parametrize(
    "program, transpose, kind, family",
    [
        (0, 0, "instrument", {"piano"}),  # Acoustic Grand Piano
        (24, -12, "instrument", {"guitar"}),  # Acoustic Guitar (nylon)
        (40, 12, "instrument", {"violin", "strings", "cello"}),  # Violin
        (42, -24, "instrument", {"violin", "strings", "cello"}),  # Cello: "cello" and "violin" within 0.05
        (73, 12, "instrument", {"flute"}),  # Flute
        (52, 0, "voice", {"choir", "choral"}),  # Choir Aahs
    ],
)
def test_an_instrument_melody_is_tagged_with_its_family(tmp_path, tagger, program, transpose, kind, family):
    tags = tagger(render(tmp_path, program, transpose))
    label, score = next((label, score) for label, score in tags if TAG_KIND[label] == kind)
    assert label in family and score > 0.4, tags[:5]


@pytest.mark.parametrize("program, transpose, instrument", [(0, 0, "piano"), (73, 12, "flute")])
def test_a_2_s_excerpt_keeps_its_instrument(tmp_path, tagger, program, transpose, instrument):
    tags = tagger(render(tmp_path, program, transpose)[: 2 * SAMPLE_RATE])
    assert next(label for label, _ in tags if TAG_KIND[label] == "instrument") == instrument, tags[:5]


def test_a_loud_clip_keeps_finite_features_and_its_tags(tmp_path, tagger):
    samples = render(tmp_path, 24, -12)
    loud = 0.99 * samples / np.abs(samples).max()  # musicnn's own float16 mel overflows to inf here
    assert np.isfinite(tagger.inputs(loud)).all()
    assert tagger(loud)[0][0] == "guitar", tagger(loud)[:5]


def test_speech_gets_no_tag_above_a_low_threshold(speech_wav, tagger):
    label, score = tagger(load_audio(str(speech_wav)).samples)[0]
    assert score < 0.2, (label, score)  # measured 0.13 ("techno", "male")


def test_noise_names_no_instrument(tagger):
    noise = 0.1 * np.random.default_rng(0).standard_normal(6 * SAMPLE_RATE).astype(np.float32)
    instruments = [(label, score) for label, score in tagger(noise) if TAG_KIND[label] == "instrument"]
    assert instruments[0][1] < 0.2, instruments[:3]  # its top tags are "fast", "loud", "techno": gate on YAMNet's music


def test_clip_score_is_the_mean_over_3_s_patches_and_a_short_clip_is_repeated(tagger):
    assert tagger.patch_scores(tone(seconds=0.5)).shape == (1, 50)
    samples = tone(seconds=10.0)
    patches = tagger.patch_scores(samples)
    assert patches.shape == (3, 50)  # 9 s in whole patches; musicnn drops the last partial one
    tags = dict(tagger(samples))
    assert tags["piano"] == pytest.approx(patches[:, MTT_LABELS.index("piano")].mean())


def test_bad_input_and_a_missing_model_are_one_line_errors(tmp_path, tagger):
    with pytest.raises(AudioError, match="mono"):
        tagger(np.zeros((2, SAMPLE_RATE), dtype=np.float32))
    with pytest.raises(AudioError, match="non-empty"):
        tagger(np.zeros(0, dtype=np.float32))
    with pytest.raises(BackendError, match="missing"):
        MusicTagger(model_path=tmp_path / "none.onnx")(tone())
