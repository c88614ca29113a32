"""Benchmark of training-based reliability on the default cascade backend (CPU): K@N sampling and one LoRA epoch.

1. K@N sampling (reliability.training.idk_dataset.sample_items): the same items sampled N times as one request
   per item (the N samples share the prompt's prefill) vs N independent calls of one sample each, on
   the demo clips and on MMAU questions without audio. Target: ratio ≥ 2×.
2. One LoRA epoch over `--examples` examples (default 200; target ≤ 15 min on 2 CPU cores). The
   examples are MMAU test-mini questions, each paired with a demo clip so the text model reads a
   real evidence prompt, half of them with the gold answer as target and half with "I don't know".
   `--examples 40` runs a part and extrapolates (it says so).

Run `python benchmarks/bench_lora.py [--threads 2] [--examples 200] [--skip-sampling] [--skip-training]`. It
prints figures and the machine's load average (other processes on shared cores slow every figure);
it asserts nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reliability import prompts  # noqa: E402
from reliability.backends.cascade import CascadeBackend  # noqa: E402
from reliability.backends.cascade.text_model import DEFAULT_TEXT_MODEL  # noqa: E402
from reliability.datasets import MMAU_TEST_MINI  # noqa: E402
from reliability.training.idk_dataset import SamplingConfig, TrainingExample, sample_items  # noqa: E402
from reliability.methods import Baseline  # noqa: E402
from reliability.types import Item  # noqa: E402

from common import demo_items  # noqa: E402

MMAU = MMAU_TEST_MINI


def mmau_examples(count: int) -> list[TrainingExample]:
    """MMAU questions with demo clips attached in turn: real prompts of the cascade's length."""
    clips = sorted({item.audio_path for item in demo_items(keyed_only=True)})
    records = json.loads(MMAU.read_text())[:count]
    examples = []
    for i, r in enumerate(records):
        item = Item(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["task"], clips[i % len(clips)], "bench")
        target = r["answer"] if i % 2 else prompts.IDK_REPLY
        examples.append(TrainingExample(item, Baseline().messages(item), target, 5, 5, 5 if i % 2 else 0, "full"))
    return examples


def mmau_items(count: int) -> list[Item]:
    """MMAU test-mini questions without audio (the text-only condition), modalities in file order."""
    records = json.loads(MMAU.read_text())[:count]
    return [Item(r["id"], r["question"], tuple(r["choices"]), r["answer"], r["task"], None, "bench") for r in records]


def bench_sampling(backend: CascadeBackend, n: int, count: int) -> None:
    """sample_items as the lab runs it (one request per item carrying n samples) vs n calls of one sample each."""
    for label, items, condition in (("demo items with audio", demo_items(keyed_only=True), "full"), ("MMAU items without audio", mmau_items(count), "none")):
        sample_items(backend, items[:2], SamplingConfig(n=1, condition=condition))  # warm-up: code paths hot
        sample_items(backend, items, SamplingConfig(n=1, condition=condition, seed=99))  # every clip's evidence cached
        shared, independent = [], []
        for rep in range(2):
            start = time.perf_counter()
            records = sample_items(backend, items, SamplingConfig(n=n, condition=condition, seed=rep)).records
            shared.append(time.perf_counter() - start)
            assert all(r.n == n for r in records)
            start = time.perf_counter()
            for i in range(n):
                sample_items(backend, items, SamplingConfig(n=1, condition=condition, seed=100 * rep + i))
            independent.append(time.perf_counter() - start)
        s, ind = min(shared), min(independent)
        print(f"K@N sampling, {len(items)} {label}, N={n} (best of 2):")
        print(f"  one request per item, N samples sharing its prefill: {s:.1f} s ({s / len(items):.2f} s per item)")
        print(f"  {n} independent calls of one sample:                 {ind:.1f} s")
        print(f"  ratio: {ind / s:.2f}×   (target ≥ 2×)")


def bench_training(backend: CascadeBackend, count: int, full: int, threads: int, layers: int) -> None:
    from reliability.training.lora import TrainConfig, request_for, train_lora

    examples = mmau_examples(count)
    # the evidence of each example is extracted once, outside the timing, as K@N sampling leaves it in the cache; the
    # training request itself, since the transcript is kept per clip and per choices (Whisper's hotwords)
    lengths = [len(backend.tokenizer(backend.render(request_for(e)), add_special_tokens=False)["input_ids"]) for e in examples]
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        cpu = time.process_time()
        result = train_lora(backend, examples, TrainConfig(name="bench", layers=layers), out)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    where = f"top {layers} layers" if layers else "every layer"
    print(f"LoRA SFT on {where}, 1 epoch over {count} examples (prompt ~{sum(lengths) / len(lengths):.0f} tokens), {threads} threads:")
    print(f"  {seconds:.0f} s wall ({seconds / count:.2f} s per example), {cpu:.0f} s CPU; loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f}")
    if count < full:
        print(f"  extrapolated to {full} examples: {seconds / count * full / 60:.1f} min   (target ≤ 15 min)   [a part was run: --examples {count}]")
    else:
        print(f"  {seconds / 60:.1f} min   (target ≤ 15 min)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2, the target machine)")
    parser.add_argument("--n", type=int, default=5, help="samples per item (default: 5)")
    parser.add_argument("--examples", type=int, default=200, help="training examples to time (default: 200)")
    parser.add_argument("--items", type=int, default=60, help="MMAU items to sample without audio (default: 60)")
    parser.add_argument("--layers", type=int, default=0, help="LoRA on the top N layers only (default: 0, every layer)")
    parser.add_argument("--model", default=DEFAULT_TEXT_MODEL, help=f"the cascade's text model (default: {DEFAULT_TEXT_MODEL})")
    parser.add_argument("--skip-sampling", action="store_true")
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    backend = CascadeBackend(model_id=args.model, threads=args.threads).load()
    print(f"text model: {args.model}")
    if not args.skip_sampling:
        bench_sampling(backend, args.n, args.items)
    if not args.skip_training:
        bench_training(backend, args.examples, 200, args.threads, args.layers)
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
