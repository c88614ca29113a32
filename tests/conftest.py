"""Shared fixtures: generated clips, a scripted backend, an empty lab database. No network, no downloads."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

from annotations.db import open_db
from reliability.audio import SAMPLE_RATE, load_audio

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True)
def no_shipped_adapters(tmp_path_factory, monkeypatch):
    """Tests see no shipped adapter unless they put one there: the repository's real lora:default is trained for the
    1.5B default and would join every listing and every cascade's warm-up. The test of that adapter itself puts the
    repository's folder back (test_adapters.REPOSITORY_ADAPTERS)."""
    from reliability.training import adapters

    monkeypatch.setattr(adapters, "SHIPPED_DIR", tmp_path_factory.mktemp("no-shipped-adapters"))


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = SAMPLE_RATE, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def tone_wav(tmp_path):
    """A 1 s 440 Hz tone as a 16 kHz wav file."""
    path = tmp_path / "tone.wav"
    sf.write(path, tone(), SAMPLE_RATE)
    return path


@pytest.fixture
def make_wav(tmp_path):
    """Write any samples to a wav file: make_wav(samples, sr=16000, name=...)."""

    def write(samples, sr: int = SAMPLE_RATE, name: str = "clip.wav"):
        path = tmp_path / name
        sf.write(path, samples, sr)
        return path

    return write


def require_tool(name: str) -> str:
    """Path of a command-line tool; skip with the reason when a user's machine lacks it (CI installs it)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run must install it")
        pytest.skip(f"{name} is not installed (apt-get install {name})")
    return path


@pytest.fixture
def speech_wav(tmp_path):
    """Spoken English made with espeak-ng: 'the train leaves at nine'."""
    exe = require_tool("espeak-ng")
    path = tmp_path / "speech.wav"
    subprocess.run([exe, "-w", str(path), "the train leaves at nine"], check=True, capture_output=True)
    return path


@pytest.fixture
def scripted():
    from reliability.backends.scripted import ScriptedBackend

    return ScriptedBackend()


@pytest.fixture
def db():
    """An empty lab database in memory, migrated; a test file may extend it under the same name with its own data."""
    return open_db(":memory:")


SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"  # Debian's fluid-soundfont-gm
TUNE = (60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 67, 64, 60, 62, 64, 62, 60, 59, 60, 64, 67, 64)  # 6 s: two patches


def midi(program: int, pitches: list[int], ticks: int = 240) -> bytes:
    """A one-track Standard MIDI File: General MIDI `program` playing `pitches` one after another (480 ticks a beat)."""

    def varlen(n: int) -> bytes:
        out = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            out.append(0x80 | (n & 0x7F))
        return bytes(reversed(out))

    events = bytearray(b"\x00\xc0" + bytes([program]))
    for pitch in pitches:
        events += b"\x00\x90" + bytes([pitch, 100]) + varlen(ticks) + b"\x80" + bytes([pitch, 0])
    events += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(events)) + bytes(events)


def render_instrument(tmp_path, program: int, transpose: int = 0) -> np.ndarray:
    """A melody played by a General MIDI instrument, rendered by fluidsynth, as 16 kHz mono samples at -20 dBFS RMS."""
    exe = require_tool("fluidsynth")
    if not os.path.exists(SOUNDFONT):
        if os.environ.get("CI"):
            pytest.fail(f"{SOUNDFONT} is missing; .ci/run must install fluid-soundfont-gm")
        pytest.skip(f"{SOUNDFONT} is missing (apt-get install fluid-soundfont-gm)")
    mid, wav = tmp_path / f"{program}.mid", tmp_path / f"{program}.wav"
    mid.write_bytes(midi(program, [p + transpose for p in TUNE]))
    subprocess.run([exe, "-ni", "-r", str(SAMPLE_RATE), "-F", str(wav), SOUNDFONT, str(mid)], check=True, capture_output=True)
    samples = load_audio(str(wav)).samples
    return 0.1 * samples / np.sqrt(np.mean(samples**2))  # a level that does not hang on the synth's gain
