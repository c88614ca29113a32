"""Batched vs one-at-a-time greedy generation on the tiny Qwen2-Audio: the same code path a GPU user runs."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from reliability.audio import SAMPLE_RATE  # noqa: E402
from reliability.backends.qwen2_audio import Qwen2AudioBackend  # noqa: E402
from reliability.types import Decoding, Request  # noqa: E402
from tests.tiny import tiny_qwen2_audio  # noqa: E402

BATCH = 8
REPEATS = 3


def requests() -> list[Request]:
    rng = np.random.default_rng(0)
    decoding = Decoding(max_new_tokens=32)
    return [
        Request([{"role": "user", "content": f"What is heard in clip {i}? Answer briefly."}], (0.1 * rng.standard_normal(3 * SAMPLE_RATE)).astype(np.float32), decoding)
        for i in range(BATCH)
    ]


def best(fn) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        backend = Qwen2AudioBackend(str(tiny_qwen2_audio(folder)), batch_size=BATCH)
        batch = requests()
        backend.generate(batch[:1])  # warm-up
        batched = best(lambda: backend.generate(batch))
        single = best(lambda: [backend.generate([r]) for r in batch])
    print(f"tiny Qwen2-Audio, {BATCH} requests with 3 s clips, 32 new tokens, best of {REPEATS}:")
    print(f"  one batch of {BATCH}: {batched:.2f} s")
    print(f"  one at a time:     {single:.2f} s")
    print(f"  ratio: {single / batched:.2f}x")


if __name__ == "__main__":
    main()
