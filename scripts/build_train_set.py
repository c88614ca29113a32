"""Build the LoRA training set (issue #20): real recordings from packages plus project-made speech and music, no clip shared with the dev set.

The spec is scripts/train_set.json: sources, clips written out as in the dev set, "families" (many
files of one package asked one question, distractors drawn from the family), "speech" (sentences
that carry facts, spoken by espeak-ng in several voices and languages) and "music" (melodies,
scales and chords written as MIDI and rendered by fluidsynth with a General MIDI soundfont). Every
choice, fact and melody is drawn from a random generator seeded by the spec's seed and the clip id,
so a build is deterministic; a rebuild keeps every clip whose source and recipe are unchanged. The
build refuses a spec whose package clip overlaps a dev-set clip (same package and file, overlapping
cut), and a built clip whose audio equals a dev-set clip's. Run `python scripts/build_train_set.py
[--out trainset]`, then `python -m reliability import dataset trainset/trainset.json --audio-dir trainset`.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recordings.py sits beside this script

import recordings  # noqa: E402
from recordings import IDK, ROOT, ClipSpec, Question, SetError, Source  # noqa: E402

SPEC = ROOT / "scripts" / "train_set.json"
DEV_SPEC = ROOT / "scripts" / "dev_set.json"
DATASET, PREFIX = "trainset", "train"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian's fluid-soundfont-gm
TICKS = 480  # MIDI ticks per beat


# --- the spec -------------------------------------------------------------------------------------

class Letters:
    """Hands out answer positions A, B, C, D in turn, so that generated keys spread evenly."""

    def __init__(self) -> None:
        self.count = 0

    def place(self, answer: str, distractors: list[str]) -> tuple[str, ...]:
        position = self.count % 4
        self.count += 1
        return tuple(distractors[:position] + [answer] + distractors[position:3])


def ask(rng: random.Random, letters: Letters, question: str, answer: str, pool: list[str]) -> Question:
    """A question whose choices are the answer and three others from the pool, the answer at the next letter."""
    others = sorted({p for p in pool if p != answer})
    if len(others) < 3:
        raise SetError(f"{question!r}: the pool {pool} has fewer than three choices besides {answer!r}")
    return Question(question, letters.place(answer, rng.sample(others, 3)), answer)


def unanswerable(spec: dict) -> Question:
    """A question no audio of its clip can answer: its key is "I don't know"."""
    return Question(spec["question"], tuple(spec["choices"]), IDK)


def slug(text: str) -> str:
    """A clip-id part from a file or entry name."""
    return re.sub(r"[^a-z0-9]+", "-", re.sub(r"\.(ogg|wav|flac)$", "", text.lower())).strip("-")


def family_clips(family: dict, seed: int, letters: Letters) -> list[ClipSpec]:
    """One clip per member file of a package, asked the family's question; every `every`-th also gets an unanswerable one."""
    members = family["members"]
    pool = family.get("pool") or list(members.values())
    extra, every = family.get("unanswerable", []), family.get("every", 0)
    clips = []
    for index, (name, answer) in enumerate(members.items()):
        clip_id = f"{family['id']}-{slug(name)}"
        rng = random.Random(f"{seed}:{clip_id}")
        questions = [ask(rng, letters, family["question"], answer, pool)]
        if extra and every and index % every == every - 1:
            questions.append(unanswerable(extra[(index // every) % len(extra)]))
        clips.append(ClipSpec(
            id=clip_id, source=family["source"], file=family["file"].format(name=name), modality=family["modality"],
            questions=tuple(questions), entry=family["entry"].format(name=name) if "entry" in family else None,
            start=family.get("start", 0.0), end=family.get("end"),
        ))
    return clips


def speech_clips(speech: dict, seed: int, letters: Letters) -> list[ClipSpec]:
    """Sentences built from templates and facts drawn from the slot pools, each spoken by espeak-ng in a voice of its template."""
    slots, clips = speech["slots"], []
    for template in speech["templates"]:
        voices, asks = template["voices"], template["asks"]
        extra, every = template.get("unanswerable", []), template.get("every", 0)
        for n in range(template["count"]):
            clip_id = f"say-{template['id']}-{n + 1}"
            rng = random.Random(f"{seed}:{clip_id}")
            facts = {name: rng.choice(slots[name]) for name in re.findall(r"{(\w+)}", template["text"])}
            voice = voices[n % len(voices)]
            asked = list(asks)[n % len(asks)]  # each fact of the template is asked in turn
            questions = [ask(rng, letters, asks[asked], str(facts[asked]), [str(v) for v in slots[asked]])]
            if "language" in template:
                questions.append(ask(rng, letters, "In which language is the sentence spoken?", template["language"], speech["languages"]))
            if extra and every and n % every == every - 1:
                questions.append(unanswerable(extra[(n // every) % len(extra)]))
            recipe = {"text": template["text"].format(**facts), "voice": voice, "speed": speech["speeds"][n % len(speech["speeds"])]}
            clips.append(ClipSpec(id=clip_id, source=speech["source"], file=f"espeak-ng -v {voice}", modality="speech",
                                  questions=tuple(questions), recipe=json.dumps(recipe, ensure_ascii=False)))
    return clips


MAJOR, MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)


def scale_note(tonic: int, mode: tuple[int, ...], degree: int) -> int:
    """The MIDI pitch of a scale degree (0 = tonic; may pass the octave either way)."""
    octave, step = divmod(degree, 7)
    return tonic + 12 * octave + mode[step]


def melody(rng: random.Random, tonic: int, kind: str, length: int = 8) -> list[int]:
    """Pitches of a line in a major key: a random tune, or one that rises, falls, rises then falls, or repeats one note."""
    if kind == "tune":
        degrees = [0] + [rng.randint(0, 7) for _ in range(length - 2)] + [0]
    elif kind == "it rises":
        degrees = list(range(length))
    elif kind == "it falls":
        degrees = list(range(length - 1, -1, -1))
    elif kind == "it rises then falls":
        half = length // 2
        degrees = list(range(half)) + list(range(half, 0, -1))[: length - half]
    elif kind == "it stays on one note":
        degrees = [rng.randint(0, 4)] * length
    else:
        raise SetError(f"unknown melody kind {kind!r}")
    return [scale_note(tonic, MAJOR, d) for d in degrees]


def chords(tonic: int, key: str) -> list[list[int]]:
    """I-IV-V-I in a major key, or i-iv-v-i in its parallel natural minor, each chord with its root doubled below."""
    mode = MAJOR if key == "a major key" else MINOR
    return [[scale_note(tonic, mode, root + third) for third in (0, 2, 4)] + [scale_note(tonic, mode, root) - 12]
            for root in (0, 3, 4, 0)]


def music_clips(music: dict, seed: int, letters: Letters) -> list[ClipSpec]:
    """MIDI pieces that answer one question each: the instrument, the tempo, the pitch direction or the key's mode."""
    instruments, clips = music["instruments"], []
    extra, every = music.get("unanswerable", []), music.get("every", 0)
    for task in music["tasks"]:
        kinds = task["kinds"]
        for n in range(task["count"]):
            clip_id = f"midi-{task['id']}-{n + 1}"
            rng = random.Random(f"{seed}:{clip_id}")
            kind = kinds[n % len(kinds)]
            name = kind if task["id"] == "instrument" else rng.choice(task.get("played_by", list(instruments)))
            program, low = instruments[name]
            tonic = low + rng.choice((0, 2, 5, 7))  # C, D, F or G above the instrument's comfortable low C
            tempo, tempo_to = rng.randint(*task.get("tempo", (96, 112))), None
            if task["id"] == "tempo":
                tempo = rng.randint(*music["tempi"]["slow" if kind in ("slow", "it speeds up") else "fast"])
                tempo_to = {"it speeds up": music["tempi"]["fast"][1], "it slows down": music["tempi"]["slow"][0]}.get(kind)
            if task["id"] == "mode":  # the tonic triad broken upwards, then the cadence in block chords
                tonic_chord = chords(tonic, kind)[0][:3]
                events = [[i, 1, [pitch]] for i, pitch in enumerate(tonic_chord + [tonic + 12])]
                events += [[4 + 2 * i, 2, chord] for i, chord in enumerate(chords(tonic, kind))]
            else:
                line = melody(rng, tonic, kind if task["id"] == "direction" else "tune", task.get("length", 8))
                events = [[i, 1, [pitch]] for i, pitch in enumerate(line)]
            answer = name if task["id"] == "instrument" else kind
            questions = [ask(rng, letters, task["question"], answer, task.get("choices") or list(instruments))]
            if extra and every and len(clips) % every == every - 1:
                questions.append(unanswerable(extra[(len(clips) // every) % len(extra)]))
            recipe = {"program": program, "tempo": tempo, "tempo_to": tempo_to, "events": events}
            clips.append(ClipSpec(id=clip_id, source=music["source"], file=f"General MIDI program {program} ({name})",
                                  modality="music", questions=tuple(questions), recipe=json.dumps(recipe)))
    return clips


def load_spec(path: Path = SPEC) -> tuple[dict[str, Source], list[ClipSpec]]:
    """Read the training set's spec and expand its families, sentences and pieces into clips. Raises SetError."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        sources = recordings.parse_sources(data["sources"])
        seed, letters = int(data["seed"]), Letters()
        clips = [recordings.parse_clip(c) for c in data.get("clips", [])]
        for family in data.get("families", []):
            clips += family_clips(family, seed, letters)
        if "speech" in data:
            clips += speech_clips(data["speech"], seed, letters)
        if "music" in data:
            clips += music_clips(data["music"], seed, letters)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise SetError(f"{path}: not a valid training-set spec ({type(exc).__name__}: {exc})") from exc
    recordings.check(sources, clips, str(path))
    return sources, clips


# --- no clip shared with the dev set -----------------------------------------------------------------

def check_disjoint(train: tuple[dict[str, Source], list[ClipSpec]], dev: tuple[dict[str, Source], list[ClipSpec]]) -> None:
    """Raise SetError naming the first training clip cut from the same package file (and entry) as a dev clip, overlapping it."""
    dev_sources, dev_clips = dev
    cuts: dict[tuple, list[ClipSpec]] = {}
    for clip in dev_clips:
        cuts.setdefault((dev_sources[clip.source].package, clip.file, clip.entry), []).append(clip)
    train_sources, train_clips = train
    for clip in train_clips:
        source = train_sources[clip.source]
        if source.registry == "made":
            continue
        for other in cuts.get((source.package, clip.file, clip.entry), []):
            if clip.start < (other.end or float("inf")) and other.start < (clip.end or float("inf")):
                where = f"{source.package} {clip.file}" + (f" [{clip.entry}]" if clip.entry else "")
                raise SetError(f"training clip {clip.id!r} overlaps dev clip {other.id!r}: both cut {where}")


def check_audio_disjoint(train_dir: Path, dev_dir: Path) -> int:
    """Raise SetError if a built training clip's audio equals a built dev clip's; returns how many dev clips were compared."""
    dev = {recordings.content_hash(path): path.stem for path in sorted((dev_dir / "audio").glob("*.flac"))}
    for path in sorted((train_dir / "audio").glob("*.flac")):
        digest = recordings.content_hash(path)
        if digest in dev:
            raise SetError(f"training clip {path.stem!r} has the same audio as dev clip {dev[digest]!r}")
    return len(dev)


# --- made clips --------------------------------------------------------------------------------------

def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [value & 0x7F]
    while value > 0x7F:
        value >>= 7
        out.append(0x80 | (value & 0x7F))
    return bytes(reversed(out))


def _tempo(bpm: float) -> bytes:
    return b"\xff\x51\x03" + round(60_000_000 / bpm).to_bytes(3, "big")


def write_midi(path: Path, events: list[list], program: int, tempo: float, tempo_to: float | None = None,
               velocity: int = 96) -> None:
    """Write a one-track standard MIDI file (format 0) on channel 1.

    events: [start beat, length in beats, [pitches]]; with tempo_to, the tempo moves from `tempo` to
    `tempo_to` in equal steps, one per beat. A rest of two beats ends the piece, so that the last
    notes ring out before a renderer stops.
    """
    timed: list[tuple[int, int, bytes]] = []  # (tick, order, bytes): at one tick, offs before tempo before ons
    last = max(start + length for start, length, _ in events)
    if tempo_to is not None:
        for beat in range(1, int(last)):
            timed.append((beat * TICKS, 1, _tempo(tempo + (tempo_to - tempo) * beat / (last - 1))))
    for start, length, pitches in events:
        for pitch in pitches:
            if not 0 <= pitch <= 127:
                raise SetError(f"MIDI pitch {pitch} is out of range 0-127")
            timed.append((round(start * TICKS), 2, bytes([0x90, pitch, velocity])))
            timed.append((round((start + length) * TICKS), 0, bytes([0x80, pitch, 0])))
    track, now = bytearray(_vlq(0) + _tempo(tempo) + _vlq(0) + bytes([0xC0, program])), 0
    for tick, _, message in sorted(timed):
        track += _vlq(tick - now) + message
        now = tick
    track += _vlq(round((last + 2) * TICKS) - now) + b"\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + TICKS.to_bytes(2, "big")
    path.write_bytes(header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track))


def render_speech(recipe: dict, target: Path) -> Path:
    """Speak a sentence with espeak-ng into a WAV file."""
    _tool("espeak-ng")
    _call(["espeak-ng", "-v", recipe["voice"], "-s", str(recipe["speed"]), "-w", str(target), recipe["text"]])
    return target


def render_midi(recipe: dict, target: Path, soundfont: Path = SOUNDFONT) -> Path:
    """Render a recipe's MIDI with fluidsynth and the General MIDI soundfont into a 16 kHz WAV file."""
    _tool("fluidsynth")
    if not soundfont.is_file():
        raise SetError(f"the General MIDI soundfont {soundfont} is missing (apt-get install fluid-soundfont-gm)")
    midi = target.with_suffix(".mid")
    write_midi(midi, recipe["events"], recipe["program"], recipe["tempo"], recipe.get("tempo_to"))
    # no reverb or chorus: their effects units are the one part of a render that is not sample-exact across runs
    _call(["fluidsynth", "-n", "-i", "-q", "-R", "0", "-C", "0", "-g", "1.0", "-r", "16000", "-F", str(target), str(soundfont), str(midi)])
    return target


def render(clip: ClipSpec, work: Path) -> Path:
    """The audio file of a made clip: espeak-ng speech or a fluidsynth rendering."""
    recipe = json.loads(clip.recipe)
    target = work / f"{clip.id}.wav"
    return render_speech(recipe, target) if "text" in recipe else render_midi(recipe, target)


def _tool(name: str) -> None:
    if shutil.which(name) is None:
        raise SetError(f"{name} is not installed (apt-get install {name})")


def _call(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise SetError(f"{command[0]} failed: {lines[-1] if lines else f'exit status {result.returncode}'}")


# --- the build ---------------------------------------------------------------------------------------

def build(out: Path, spec: Path = SPEC, dev_spec: Path = DEV_SPEC, dev_dir: Path | None = None,
          force: bool = False, say=print) -> dict[str, int]:
    """Check the spec against the dev set, make every missing or changed clip, write OUT/trainset.json; returns items per modality."""
    sources, clips = load_spec(spec)
    check_disjoint((sources, clips), recordings.load_spec(dev_spec))
    counts = recordings.build(out, sources, clips, dataset=DATASET, prefix=PREFIX, force=force, say=say, render=render)
    dev_dir = dev_dir or ROOT / "devset"
    if (dev_dir / "audio").is_dir():
        try:
            compared = check_audio_disjoint(out, dev_dir)
        except SetError:
            (out / f"{DATASET}.json").unlink(missing_ok=True)  # never leave a set that shares audio with the dev set
            raise
        say(f"no clip's audio equals any of the {compared} dev clips in {dev_dir}")
    else:
        say(f"no built dev set in {dev_dir}: audio not compared (build it, or pass --dev-dir)")
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "trainset", help="output folder (default: trainset/ in the repository)")
    parser.add_argument("--spec", type=Path, default=SPEC, help="the spec (default: scripts/train_set.json)")
    parser.add_argument("--dev-spec", type=Path, default=DEV_SPEC, help="the dev set's spec, which no clip may overlap")
    parser.add_argument("--dev-dir", type=Path, default=None, help="a built dev set whose audio no clip may equal (default: devset/)")
    parser.add_argument("--force", action="store_true", help="remake clips that already exist")
    args = parser.parse_args(argv)
    try:
        build(args.out, args.spec, args.dev_spec, args.dev_dir, args.force)
    except SetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
