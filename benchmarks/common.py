"""What the benchmark scripts share: the demo items as Items and a wall-clock timer (the scripts put the repository on sys.path)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from reliability.types import Item

DEMO = Path(__file__).resolve().parent.parent / "reliability" / "demo" / "items.json"


def demo_items(keyed_only: bool = False) -> list[Item]:
    """The demo's questions with their clips; `keyed_only` leaves out those without an answer key."""
    records = json.loads(DEMO.read_text())
    return [
        Item(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["modality"], str(DEMO.parent / r["audio"]), "demo")
        for r in records
        if r["answer"] is not None or not keyed_only
    ]


def timed(fn):
    """(wall seconds, value) of one call of `fn`."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result
