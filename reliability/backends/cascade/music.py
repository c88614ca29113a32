"""Music tags for the cascade: musicnn's MagnaTagATune model (50 tags: instruments, genres, voices, moods) on onnxruntime.

The ONNX file beside this module was converted once from the `musicnn` 0.1.0 wheel by
scripts/convert_musicnn.py (ISC licence and provenance in MUSICNN-LICENSE.txt); no TensorFlow runs here.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from reliability.audio import SAMPLE_RATE
from reliability.backends.cascade.text_model import require
from reliability.errors import AudioError, BackendError
from reliability.paths import package_file

MODEL_PATH = package_file("backends", "cascade", "musicnn_mtt.onnx")
INPUT_NAME, OUTPUT_NAME = "model/x:0", "model/tags:0"

# musicnn's configuration.py: the front end it was trained on, and MTT_LABELS in the model's output order
FFT_SIZE, FFT_HOP, N_MELS = 512, 256, 96
PATCH_FRAMES = 187  # 3 s: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1, as its extractor
# A clip shorter than this (3 s, the least that gives one patch) is repeated to fill it: silence as padding
# pulls the tags towards "guitar" and "quiet" (a 2 s piano excerpt: guitar 0.41 zero-padded, piano 0.65 repeated)
PATCH_SAMPLES = 3 * SAMPLE_RATE
BATCH = 4  # patches per run: activations take ~50 MB a patch, so a 10-minute clip in one run would take 10 GB
WINDOW = np.hanning(FFT_SIZE + 1)[:-1].astype(np.float32)  # periodic, as librosa's get_window("hann")
MTT_LABELS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing",
    "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop",
    "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice",
    "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip
# What each tag describes, for evidence that reads "instruments: violin, strings; genre: classical";
# "mood" holds the tempo, loudness and character words
INSTRUMENT_TAGS = ("guitar", "strings", "drums", "piano", "violin", "synth", "harpsichord", "flute", "sitar", "harp", "cello")
GENRE_TAGS = ("classical", "classic", "techno", "electronic", "rock", "ambient", "indian", "opera", "pop", "new age",
              "dance", "country", "metal")  # fmt: skip
VOICE_TAGS = ("vocal", "vocals", "singing", "voice", "female", "woman", "female vocal", "female voice", "male", "man",
              "male vocal", "male voice", "choir", "choral", "no vocals", "no vocal", "no voice")  # fmt: skip
MOOD_TAGS = ("slow", "fast", "beat", "beats", "loud", "quiet", "soft", "solo", "weird")
TAG_KIND = {
    **dict.fromkeys(INSTRUMENT_TAGS, "instrument"),
    **dict.fromkeys(GENRE_TAGS, "genre"),
    **dict.fromkeys(VOICE_TAGS, "voice"),
    **dict.fromkeys(MOOD_TAGS, "mood"),
}


def log_mel(samples: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """musicnn's input features, (frames, 96) float32: log10(10000 x + 1) of the power mel spectrogram.

    The same numbers as its extractor's librosa.feature.melspectrogram (centred frames, zero padding,
    periodic Hann window), in numpy: librosa's first STFT costs seconds of start-up. musicnn's extractor
    also casts the mel to float16 before the log, so that loud clips overflow to inf and all get the
    same tags; this stays in float32.
    """
    padded = np.pad(samples, FFT_SIZE // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, FFT_SIZE)[::FFT_HOP]  # (frames, 512), no copy
    power = np.abs(np.fft.rfft(frames * WINDOW, axis=1)) ** 2  # (frames, 257)
    return np.log10(10000 * (power @ mel.T).astype(np.float32) + 1)


def patches(features: np.ndarray) -> np.ndarray:
    """(frames, 96) -> (n, 187, 96): back-to-back 3 s patches; a last partial patch is dropped, as musicnn does."""
    n = features.shape[0] // PATCH_FRAMES
    return features[: n * PATCH_FRAMES].reshape(n, PATCH_FRAMES, N_MELS)


class MusicTagger:
    """musicnn (MTT) tags of a 16 kHz mono clip; the ONNX session is built on first use.

    A tag's clip score is the mean of its sigmoid over the 3 s patches, as musicnn's `top_tags` pools it.
    On speech and other non-music sound the scores are low and meaningless: read them only for music.
    """

    def __init__(self, threads: int = 0, model_path: Path = MODEL_PATH):
        self.threads = threads  # 0: onnxruntime's own choice (all cores)
        self.model_path = model_path
        self._session = None
        self._mel = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the ONNX session and the mel filters; the first call does it, a later one returns at once."""
        with self._lock:
            if self._session is None:
                if not self.model_path.is_file():
                    raise BackendError(f"the music tagger's model {self.model_path} is missing: reinstall the lab")
                ort, librosa = require("onnxruntime"), require("librosa")
                # librosa.feature.melspectrogram's filters as musicnn calls it: Slaney scale and area norm, 0-8 kHz
                self._mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=FFT_SIZE, n_mels=N_MELS).astype(np.float32)
                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                self._session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])

    def inputs(self, samples: np.ndarray) -> np.ndarray:
        """The model's input for a clip, (n_patches, 187, 96); a clip shorter than 3 s is repeated to fill one patch."""
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise AudioError(f"the music tagger takes a non-empty mono clip, got samples of shape {samples.shape}")
        self.load()
        return patches(log_mel(np.resize(samples, max(samples.size, PATCH_SAMPLES)), self._mel))

    def patch_scores(self, samples: np.ndarray) -> np.ndarray:
        """(n_patches, 50) sigmoid scores, one row per 3 s of the clip (musicnn's taggram)."""
        batch = self.inputs(samples)
        runs = (self._session.run([OUTPUT_NAME], {INPUT_NAME: batch[i : i + BATCH]})[0] for i in range(0, len(batch), BATCH))
        return np.concatenate(list(runs))

    def __call__(self, samples: np.ndarray) -> list[tuple[str, float]]:
        """All 50 tags with their clip scores, best first."""
        clip = self.patch_scores(samples).mean(axis=0)
        return [(MTT_LABELS[i], float(clip[i])) for i in np.argsort(-clip, kind="stable")]
