"""Audio in: load any common format to float32 mono 16 kHz, check it, cut it for the model, fragment it, hash it.

This is the only module that decodes audio; every other part of the lab receives a `Clip`.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass

import numpy as np

from reliability.errors import AudioError

SAMPLE_RATE = 16_000  # Qwen2-Audio's Whisper front end and the cascade both expect 16 kHz
MODEL_MAX_SECONDS = 30.0  # Qwen2-Audio's encoder sees at most 30 s (mel length 3000)
DEFAULT_MAX_SECONDS = 600.0  # uploads longer than this are refused, not silently decoded
MIN_SECONDS = 0.1  # transformers' audio path crashes on clips under ~0.07 s; pad up to this


@dataclass(frozen=True)
class Clip:
    """Decoded audio, ready for any backend."""

    samples: np.ndarray  # float32, mono, SAMPLE_RATE, shape (n,)
    source: str  # file path or a short description of where it came from
    hash: str  # content hash of the decoded samples; keys every cache

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_audio(path: str | os.PathLike, max_seconds: float = DEFAULT_MAX_SECONDS) -> Clip:
    """Decode a file (wav, flac, mp3, ogg/opus, m4a where ffmpeg has the codec) to a Clip.

    Raises AudioError with the reason for a missing, empty, corrupt, non-audio, silent-length
    or over-long file.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise AudioError(f"no such audio file: {path}")
    if os.path.getsize(path) == 0:
        raise AudioError(f"{name}: the file is empty (0 bytes)")
    duration = _probe_duration(path)
    if duration is not None and duration > max_seconds:
        raise AudioError(f"{name}: {duration:.0f} s is longer than the {max_seconds:.0f} s limit; trim it first")
    samples = _decode(path, name, max_seconds)
    return from_array(samples, SAMPLE_RATE, source=path, max_seconds=max_seconds)


def from_array(samples, sample_rate: int, source: str = "array", max_seconds: float = DEFAULT_MAX_SECONDS) -> Clip:
    """Make a Clip from raw samples (e.g. a browser recording): mono, float32, 16 kHz, checked."""
    data = np.asarray(samples)
    if data.size == 0:
        raise AudioError(f"{_short(source)}: the audio has no samples")
    if not np.issubdtype(data.dtype, np.number):
        raise AudioError(f"{_short(source)}: not audio samples (dtype {data.dtype})")
    if np.issubdtype(data.dtype, np.integer):
        # integer PCM (browser recordings arrive as int16) is scaled to [-1, 1]
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max)
    data = data.astype(np.float32)
    if data.ndim == 2:
        # (samples, channels) from soundfile/gradio; (channels, samples) from librosa
        data = data.mean(axis=1 if data.shape[0] > data.shape[1] else 0)
    if data.ndim != 1:
        raise AudioError(f"{_short(source)}: expected mono or multichannel audio, got shape {data.shape}")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{_short(source)}: the audio contains NaN or infinite samples")
    if sample_rate <= 0:
        raise AudioError(f"{_short(source)}: invalid sample rate {sample_rate}")
    if sample_rate != SAMPLE_RATE:
        import librosa

        data = librosa.resample(data, orig_sr=sample_rate, target_sr=SAMPLE_RATE).astype(np.float32)
    if len(data) / SAMPLE_RATE > max_seconds:
        raise AudioError(
            f"{_short(source)}: {len(data) / SAMPLE_RATE:.0f} s is longer than the {max_seconds:.0f} s limit"
        )
    return Clip(samples=data, source=source, hash=audio_hash(data))


def from_bytes(data: bytes, source: str = "upload", max_seconds: float = DEFAULT_MAX_SECONDS) -> Clip:
    """Decode an in-memory file (WAV, FLAC, OGG: what soundfile reads), e.g. audio sent over HTTP, to a Clip.

    The length is read from the header first, and decoding stops just past `max_seconds` whatever the header
    says: a few hundred KiB of FLAC silence can claim hours that would take gigabytes to decode.
    """
    import io

    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            if f.samplerate <= 0:
                raise AudioError(f"{_short(source)}: invalid sample rate {f.samplerate}")
            if f.frames > 0 and f.frames / f.samplerate > max_seconds:
                raise AudioError(f"{_short(source)}: {f.frames / f.samplerate:.0f} s is longer than the {max_seconds:.0f} s limit")
            limit = int(max_seconds * f.samplerate) + 1
            samples, sample_rate = f.read(frames=limit, dtype="float32", always_2d=False), f.samplerate
    except AudioError:
        raise
    except Exception as exc:
        raise AudioError(f"{_short(source)}: not a readable audio file ({type(exc).__name__}: {_first_line(exc)})") from exc
    if len(samples) >= limit:
        raise AudioError(f"{_short(source)}: longer than the {max_seconds:.0f} s limit")
    return from_array(samples, sample_rate, source=source, max_seconds=max_seconds)


def for_model(clip: Clip, max_seconds: float = MODEL_MAX_SECONDS) -> tuple[np.ndarray, bool]:
    """The samples a model sees: cut to `max_seconds`, padded to MIN_SECONDS. Returns (samples, was_cut)."""
    limit = int(max_seconds * SAMPLE_RATE)
    samples = clip.samples[:limit]
    return pad_to_min(samples), len(clip.samples) > limit


def pad_to_min(samples: np.ndarray, min_seconds: float = MIN_SECONDS) -> np.ndarray:
    """Zero-pad a clip shorter than `min_seconds` at the end."""
    need = int(min_seconds * SAMPLE_RATE) - len(samples)
    return np.pad(samples, (0, need)) if need > 0 else samples


def fragments(samples: np.ndarray, n: int) -> list[np.ndarray]:
    """Cut into `n` equal contiguous pieces; the last piece takes the remainder."""
    if n < 1:
        raise ValueError(f"fragment count must be >= 1, got {n}")
    if len(samples) < n:
        raise AudioError(f"cannot cut {len(samples)} samples into {n} pieces")
    size = len(samples) // n
    bounds = [i * size for i in range(n)] + [len(samples)]
    return [samples[bounds[i] : bounds[i + 1]] for i in range(n)]


def audio_hash(samples: np.ndarray) -> str:
    """Content hash of decoded samples: the same sound gives the same key whatever its file."""
    return hashlib.sha256(np.ascontiguousarray(samples, dtype=np.float32).tobytes()).hexdigest()[:16]


def _probe_duration(path: str) -> float | None:
    """Duration from the header, so an over-long file is refused before it is decoded."""
    import soundfile as sf

    try:
        info = sf.info(path)
        return info.frames / info.samplerate if info.samplerate else None
    except Exception:  # formats soundfile cannot read (m4a, some mp3) are checked after decoding
        return None


def _decode(path: str, name: str, max_seconds: float) -> np.ndarray:
    import librosa

    try:
        with warnings.catch_warnings():
            # librosa warns when it falls back to audioread/ffmpeg for mp3/m4a; that fallback is intended
            warnings.simplefilter("ignore")
            # decode a little past the cap so an over-long file without a header duration is still caught
            samples, _ = librosa.load(path, sr=SAMPLE_RATE, mono=True, duration=max_seconds + 1.0)
    except Exception as exc:
        raise AudioError(f"{name}: not a readable audio file ({type(exc).__name__}: {_first_line(exc)})") from exc
    if samples.size == 0:
        raise AudioError(f"{name}: the audio has zero length")
    return samples


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else "no detail"


def _short(source: str) -> str:
    return os.path.basename(source) or source
