"""Shared fixtures: generated clips, a scripted backend, an empty lab database. No network, no downloads."""
from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from annotations.db import open_db
from reliability.audio import SAMPLE_RATE

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


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
