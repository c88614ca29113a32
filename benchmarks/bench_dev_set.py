"""The default backend on the dev set of real recordings: accuracy, selective abstention, ΔCon/ΔHum/RGI per modality, time.

Build the dev set first (`python scripts/build_dev_set.py`, see docs/DEV_SET.md), then run
`python benchmarks/bench_dev_set.py [devset/devset.json] [--model qwen2.5-coder-0.5b]`. It imports
the set into a temporary lab notebook, answers it with every training-free method through the same
code as `python -m reliability evaluate`, and prints the figures that issue 10 sets targets for. It
asserts nothing: the figures are for the model card and the closing note.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from annotations import db as lab_db, store  # noqa: E402
from reliability import metrics  # noqa: E402
from reliability.backends.cascade import ABSTAIN_MARGIN, CascadeBackend  # noqa: E402
from reliability.backends.cascade.text_model import DEFAULT_TEXT_MODEL  # noqa: E402
from reliability.datasets import import_dataset  # noqa: E402
from reliability.evaluate import evaluate  # noqa: E402
from reliability.prompts import IDK_REPLY  # noqa: E402
from reliability.types import Outcome  # noqa: E402

METHODS = ("baseline", "idk", "mcot", "agent")


def unanswerable(item) -> bool:
    return item.answer in (None, IDK_REPLY)


def outcome(item, answer_row) -> Outcome:
    """An answer's outcome; on an unanswerable item "I don't know" is the honest reply and any choice is wrong."""
    if unanswerable(item):
        return Outcome.IDK if answer_row["outcome"] == "idk" else Outcome.WRONG
    return Outcome(answer_row["outcome"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", default=str(ROOT / "devset" / "devset.json"), help="the dev set's MMAU-format JSON")
    parser.add_argument("--model", default=DEFAULT_TEXT_MODEL, help="the cascade's text model")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--margin", type=float, default=ABSTAIN_MARGIN, help="the cascade's abstain_margin (nats)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--db", help="keep the answers in this lab notebook (default: a temporary one)")
    args = parser.parse_args()
    if not Path(args.dataset).exists():
        sys.exit(f"{args.dataset} not found: build it with `python scripts/build_dev_set.py`")

    db_path = args.db or str(Path(tempfile.mkdtemp()) / "dev.db")
    db = lab_db.open_db(db_path)
    report = import_dataset(db, args.dataset, name="devset", audio_dir=Path(args.dataset).parent)
    items = [s.item for s in store.stored_items(db, "devset")]
    print(f"dev set: {len(items)} questions {dict(Counter(i.modality for i in items))}, "
          f"{sum(map(unanswerable, items))} unanswerable; {len(report.skipped)} skipped")

    backend = CascadeBackend(model_id=args.model, threads=args.threads, abstain_margin=args.margin).load()
    methods = args.methods.split(",")
    start = time.perf_counter()
    result = evaluate(db, backend, items, methods, batch_size=8, progress=lambda d, t, m: print(f"  {m}", flush=True))
    seconds = time.perf_counter() - start
    by_id = {i.id: i for i in items}
    outcomes = {}
    for method, run_id in zip(methods, result.run_ids):
        rows = store.answer_rows(db, [run_id])
        outcomes[method] = {r["item_id"]: outcome(by_id[r["item_id"]], r) for r in rows}

    answerable = [i.id for i in items if not unanswerable(i)]
    unans = [i.id for i in items if unanswerable(i)]
    base = outcomes.get("baseline", {})
    base_correct = [i for i in answerable if base.get(i) == Outcome.CORRECT]
    print(f"\n{args.model}, abstain_margin {args.margin}, {seconds:.0f} s for {len(methods)} methods")
    print(f"{'method':8s} {'answerable Acc':>15s} {'keeps base':>11s} {'abstains unans.':>16s}")
    for method in methods:
        got = outcomes[method]
        acc = sum(got[i] == Outcome.CORRECT for i in answerable)
        kept = sum(got[i] == Outcome.CORRECT for i in base_correct)
        abst = sum(got[i] == Outcome.IDK for i in unans)
        print(f"{method:8s} {acc:4d}/{len(answerable)} {acc / len(answerable):6.1%} "
              f"{kept:4d}/{len(base_correct)} {abst:6d}/{len(unans)} {abst / max(len(unans), 1):6.1%}")
    groups = {i.id: i.modality for i in items}
    print(f"\n{'method':8s} {'group':7s} {'ΔCon':>7s} {'ΔHum':>7s} {'RGI':>7s} {'Acc':>7s} {'Rel':>7s}")
    for method in methods:
        if method == "baseline" or not base:
            continue
        scores = metrics.by_group(outcomes[method], groups)
        for group, c in metrics.compare_by_group(base, outcomes[method], groups).items():
            s = scores.get(group) or metrics.score(outcomes[method])
            print(f"{method:8s} {group:7s} {c.delta_con:7.1%} {c.delta_hum:7.1%} {c.rgi_label:>7s} {s.acc:7.1%} {s.rel:7.1%}")


if __name__ == "__main__":
    main()
