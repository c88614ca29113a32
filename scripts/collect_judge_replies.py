"""Collect real free-text replies of the default backend (MCoT and the Task Agent) for the judge's test table.

Asks the demo items with their clips and the first MMAU test-mini questions of each modality without
audio, and writes one JSON record per reply (item, method, raw text, the judge's reading at the time).
The outcomes committed in tests/data/ were then checked by reading every reply.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reliability.audio import load_audio  # noqa: E402
from reliability.backends.cascade import CascadeBackend  # noqa: E402
from reliability.methods import ask, get_method  # noqa: E402
from reliability.types import Decoding, Item  # noqa: E402


def demo_items() -> list[Item]:
    raw = json.loads((ROOT / "reliability" / "demo" / "items.json").read_text())
    return [Item(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["modality"], str(ROOT / "reliability" / "demo" / r["audio"])) for r in raw]


def mmau_items(path: Path, per_modality: int, skip: int) -> list[Item]:
    """Items of each modality whose options are all distinct (after the first `skip`), asked without audio."""
    items, counts = [], {}
    for r in json.loads(path.read_text()):
        if len(set(r["choices"])) != len(r["choices"]):
            continue
        counts[r["task"]] = counts.get(r["task"], 0) + 1
        if skip < counts[r["task"]] <= skip + per_modality:
            items.append(Item(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["task"], None))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmau", type=Path, required=True, help="MMAU test-mini JSON")
    parser.add_argument("--per-modality", type=int, default=5, help="MMAU questions per modality")
    parser.add_argument("--skip", type=int, default=0, help="MMAU questions per modality to skip first")
    parser.add_argument("--methods", default="mcot,agent")
    parser.add_argument("--no-demo", action="store_true", help="MMAU questions only")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    backend = CascadeBackend(threads=args.threads).load(progress=print)
    records = []
    batches = ([] if args.no_demo else [demo_items()]) + [mmau_items(args.mmau, args.per_modality, args.skip)]
    for items in batches:
        clips = [load_audio(i.audio_path) if i.audio_path else None for i in items]
        for name in args.methods.split(","):
            for answer, item in zip(ask(get_method(name), backend, items, clips, Decoding(max_new_tokens=128)), items):
                print(f"{item.id} {name}: {answer.text!r} -> {answer.judgement.outcome}", flush=True)
                records.append({
                    "id": item.id, "method": name, "question": item.question, "choices": list(item.choices),
                    "answer": item.answer, "audio": item.audio_path is not None, "reply": answer.text,
                })
                args.out.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
