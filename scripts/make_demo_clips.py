"""Make the demo clips (reliability/demo/clips/*.flac) and their questions (reliability/demo/items.json) from nothing but espeak-ng, sox and numpy.

Run `python scripts/make_demo_clips.py`. The output is deterministic for a given espeak-ng version
(noise is seeded), lossless FLAC at 16 kHz mono, a few hundred KB in all. Every question is ours;
`answer: "I don't know"` marks a question the clip cannot answer: abstaining is the right reply.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
ROOT = Path(__file__).resolve().parent.parent / "reliability" / "demo"
IDK_REPLY = "I don't know"  # reliability.prompts.IDK_REPLY, the key of an unanswerable question (tests check they agree)

SPEECH_TEXT = (
    "Welcome to the city museum. Today the museum opens at ten o'clock "
    "and closes at six in the evening. Tickets cost five dollars."
)

# C major melody (Twinkle, Twinkle, Little Star, first two phrases): (MIDI note, beats)
MELODY = [(60, 1), (60, 1), (67, 1), (67, 1), (69, 1), (69, 1), (67, 2), (65, 1), (65, 1), (64, 1), (64, 1), (62, 1), (62, 1), (60, 2)]
BEAT_S = 0.4

# Keys sit at varied letters (no letter holds more than two of the six answerable keys), so a
# model that always names the same letter cannot pass the demo.
ITEMS = [
    # speech: a fact to ask about, and a question the words do not answer
    dict(id="demo-speech-time", clip="speech", modality="speech",
         question="According to the speaker, at what time does the museum open today?",
         choices=["at eight o'clock", "at nine o'clock", "at ten o'clock", "at noon"], answer="at ten o'clock"),
    dict(id="demo-speech-price", clip="speech", modality="speech",
         question="How much does a ticket cost?",
         choices=["five dollars", "two dollars", "ten dollars", "it is free"], answer="five dollars"),
    dict(id="demo-speech-name", clip="speech", modality="speech",
         question="What is the speaker's name?",
         choices=["Anna", "Maria", "Laura", "Sofia"], answer=IDK_REPLY),
    # a street scene: a siren over traffic rumble
    dict(id="demo-scene-source", clip="scene", modality="sound",
         question="Which sound source can be heard in this street recording?",
         choices=["a dog barking", "an emergency vehicle siren", "church bells", "a person singing"],
         answer="an emergency vehicle siren"),
    # a melody played on a synthesised plucked instrument
    dict(id="demo-melody-kind", clip="melody", modality="music",
         question="What is heard in this clip?",
         choices=["a person giving a speech", "heavy rain", "a melody played on an instrument", "a crowd cheering"],
         answer="a melody played on an instrument"),
    dict(id="demo-melody-year", clip="melody", modality="music",
         question="In which year was this recording made?",
         choices=["1965", "1982", "1999", "2014"], answer=IDK_REPLY),
    # broadband noise
    dict(id="demo-noise-kind", clip="noise", modality="sound",
         question="Which description fits this recording best?",
         choices=["a woman singing", "a ringing telephone", "a barking dog", "steady hissing noise"],
         answer="steady hissing noise"),
    # digital silence
    dict(id="demo-silence-content", clip="silence", modality="sound",
         question="What can be heard in this clip?",
         choices=["a man talking", "a piano melody", "traffic noise", "nothing, it is silent"],
         answer="nothing, it is silent"),
    dict(id="demo-silence-language", clip="silence", modality="speech",
         question="Which language does the speaker use?",
         choices=["English", "French", "German", "Spanish"], answer=IDK_REPLY),
]


def speech(tmp: Path) -> np.ndarray:
    """espeak-ng at a calm rate, resampled by sox from espeak's 22.05 kHz to 16 kHz."""
    raw, out = tmp / "raw.wav", tmp / "speech.wav"
    subprocess.run([_tool("espeak-ng"), "-v", "en-us", "-s", "145", "-w", str(raw), SPEECH_TEXT], check=True, capture_output=True)
    subprocess.run([_tool("sox"), str(raw), "-r", str(SR), "-c", "1", str(out), "norm", "-3"], check=True, capture_output=True)
    samples, sr = sf.read(out, dtype="float32")
    assert sr == SR, f"sox wrote {sr} Hz, expected {SR}"
    return samples


def scene(rng: np.random.Generator, seconds: float = 6.0) -> np.ndarray:
    """A two-tone wail siren (4 s sweep 650-1500 Hz) approaching over low traffic rumble."""
    t = np.arange(int(seconds * SR)) / SR
    freq = 650 + 850 * (0.5 - 0.5 * np.cos(2 * np.pi * t / 4.0))
    siren = np.tanh(3 * np.sin(2 * np.pi * np.cumsum(freq) / SR))  # soft-clipped: a siren's buzzy timbre
    siren *= np.linspace(0.15, 0.35, len(t))  # getting closer
    return 0.9 * (siren + _rumble(rng, len(t), 0.08))


def melody() -> np.ndarray:
    """Plucked notes (Karplus-Strong-like decaying harmonics) of a well-known children's tune."""
    notes = []
    for midi, beats in MELODY:
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        t = np.arange(int(beats * BEAT_S * SR)) / SR
        tone = sum(np.sin(2 * np.pi * k * f0 * t) * np.exp(-t * (2 + 1.5 * k)) / k for k in range(1, 7))
        notes.append(tone * np.minimum(1.0, t / 0.005))  # 5 ms attack avoids clicks
    x = np.concatenate(notes)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def noise(rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    """White noise, quiet enough (-26 dBFS) that FLAC stores it in fewer bits."""
    return (0.05 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def silence(seconds: float = 3.0) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


def _rumble(rng: np.random.Generator, n: int, amp: float) -> np.ndarray:
    """Brown noise without its DC drift: a distant traffic bed."""
    walk = np.cumsum(rng.standard_normal(n))
    walk -= np.convolve(walk, np.ones(400) / 400, mode="same")
    return amp * walk / np.abs(walk).max()


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is not installed (apt-get install {name})")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="demo folder (clips/ and items.json go here)")
    args = parser.parse_args()
    rng = np.random.default_rng(20250519)
    (args.out / "clips").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clips = {"speech": speech(Path(tmp)), "scene": scene(rng), "melody": melody(), "noise": noise(rng), "silence": silence()}
    for name, samples in clips.items():
        path = args.out / "clips" / f"{name}.flac"
        sf.write(path, np.clip(samples, -1, 1), SR, format="FLAC", subtype="PCM_16")
        print(f"{path.relative_to(args.out)}: {len(samples) / SR:.1f} s, {path.stat().st_size // 1024} KB")
    items = [
        {"id": it["id"], "question": it["question"], "choices": it["choices"], "answer": it["answer"],
         "modality": it["modality"], "audio": f"clips/{it['clip']}.flac"}
        for it in ITEMS
    ]
    (args.out / "items.json").write_text(json.dumps(items, indent=1) + "\n")
    print(f"items.json: {len(items)} questions, {sum(it['answer'] == IDK_REPLY for it in items)} without an answer in the audio")


if __name__ == "__main__":
    main()
