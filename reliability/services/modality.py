"""Which kind of audio a clip is (speech / music / sound), read by YAMNet's speech/music/other reading, for any backend.

The cascade backend's own listener answers where the request goes to the cascade (its cache then serves the
answer's evidence too); any other backend gets one YAMNet listener of its own, loaded on the first clip.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from reliability.audio import Clip, load_audio
from reliability.errors import ItemError
from reliability.services.pool import Pool
from reliability.types import MODALITIES

log = logging.getLogger(__name__)

AUTO = "auto"  # "detect the modality from the clip"; an empty value means the same
UNKNOWN = "unknown"
CHOICES = (*MODALITIES, UNKNOWN)  # what an item's modality may be


@dataclass(frozen=True)
class Detection:
    """What the listener made of one clip."""

    modality: str  # speech / music / sound; UNKNOWN where no listener could run
    scores: dict[str, float] = field(default_factory=dict)  # YAMNet's speech / music / other shares (sum to 1)
    silent: bool = False
    problem: str = ""  # why there is no reading

    def describe(self) -> str:
        """"speech 91 % · music 3 % · other sounds 6 %", "silent clip", or why nothing was read."""
        if self.problem:
            return f"not detected: {self.problem}"
        if self.silent:
            return "silent clip"
        return " · ".join(f"{'other sounds' if kind == 'other' else kind} {share:.0%}" for kind, share in self.scores.items())


@dataclass(frozen=True)
class Modality:
    """The modality a request is stored with, and where it came from."""

    value: str  # one of CHOICES
    detection: Detection | None  # the listener's reading; None when the user chose and nothing was detected
    chosen: bool  # the user (or the API caller) named it

    def as_dict(self) -> dict:
        return {
            "modality": self.value, "chosen": self.chosen,
            "detected": None if self.detection is None else self.detection.modality,
            "scores": None if self.detection is None else self.detection.scores,
        }


class ModalityService:
    """Detects a clip's modality with the cascade's listener or one of its own."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self._own = None  # an EvidenceExtractor for backends without one, built on first use
        self._lock = threading.Lock()

    def detect(self, clip: Clip, backend: str | None = None) -> Detection:
        """The clip's modality as YAMNet hears it; UNKNOWN with the reason where the listener cannot run."""
        try:
            evidence = self._listener(backend).sounds(clip.samples, clip.hash)
        except Exception as exc:  # a missing optional package must not stop a request: the user picks the modality
            log.warning("modality detection failed: %s", exc)
            return Detection(UNKNOWN, problem=str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return Detection(evidence.audio_type, dict(evidence.kind_scores), evidence.silent)

    def detect_file(self, path: str, backend: str | None = None) -> Detection:
        """`detect` on an audio file (raises AudioError for one that cannot be read)."""
        return self.detect(load_audio(path, max_seconds=self.pool.settings.max_seconds), backend)

    def resolve(self, modality: str | None, clip: Clip, backend: str | None = None) -> Modality:
        """The modality to store: the one named, else (AUTO or empty) the detected one. Raises ItemError for
        a name that is no modality."""
        name = (modality or AUTO).strip().lower()
        if name == AUTO:
            detection = self.detect(clip, backend)
            return Modality(detection.modality, detection, chosen=False)
        if name not in CHOICES:
            raise ItemError(f"modality {modality!r} is not one of {[AUTO, *CHOICES]}")
        return Modality(name, None, chosen=True)

    def _listener(self, backend: str | None):
        from reliability.backends.cascade.evidence import EvidenceExtractor

        engine = self.pool.get_backend(backend)
        own = getattr(engine, "evidence", None)
        if isinstance(own, EvidenceExtractor):
            return own
        with self._lock:
            if self._own is None:
                self._own = EvidenceExtractor(threads=1)
            return self._own
