"""Benchmark of the default cascade backend on CPU: cold start, one answer, the training-free methods and lora:default, memory, batching.

Run `python benchmarks/bench_cascade.py [--threads 2] [--model qwen2.5-coder-0.5b]`. It prints measured
figures next to the targets of issues 10 and 20; it asserts nothing (timings depend on the machine and its load).
The shipped adapter `lora:default`, where the backend can load it, is loaded in the cold start and timed as a fifth method.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reliability.audio import load_audio  # noqa: E402
from reliability.backends.cascade import CascadeBackend  # noqa: E402
from reliability.backends.cascade.text_model import DEFAULT_TEXT_MODEL, ensure_converted, text_model_spec  # noqa: E402
from reliability.methods import LORA_PREFIX, ask, get_method, method_names  # noqa: E402
from reliability.training.adapters import load_shipped  # noqa: E402
from reliability.types import Decoding, Request  # noqa: E402

from common import demo_items, timed  # noqa: E402

COLD_START = """
import time; start = time.perf_counter()
from reliability.backends.cascade import CascadeBackend
backend = CascadeBackend(model_id={model!r}, threads={threads}).load()
from reliability.training.adapters import load_shipped
load_shipped(backend, user=False)
print(time.perf_counter() - start)
"""
PROMPTS = [
    "Name three colours.", "What is the capital of Italy?", "Give a synonym of quick.", "Count from one to five.",
    "What sound does a cat make?", "Name a musical instrument.", "What is two plus three?", "Say good morning in Spanish.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the targets are for 2 cores)")
    parser.add_argument("--model", default=DEFAULT_TEXT_MODEL, help="the cascade's text model")
    args = parser.parse_args()

    seconds, _ = timed(lambda: ensure_converted(text_model_spec(args.model), print))
    print(f"GGUF conversion (or cache check): {seconds:.1f} s")

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = COLD_START.format(model=args.model, threads=args.threads)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # KB -> GB
    print(f"cold start to a ready model and its shipped adapters (new process, imports included): {float(out.stdout.split()[-1]):.1f} s  [target <= 30 s]")

    backend = CascadeBackend(model_id=args.model, threads=args.threads).load()
    shipped = load_shipped(backend, user=False)
    item = next(i for i in demo_items() if i.id == "demo-speech-time")  # a 9.9 s spoken clip with 4 options
    clip = load_audio(item.audio_path)
    print(f"clip: {Path(item.audio_path).name}, {clip.duration_s:.1f} s, {len(item.choices)} options")

    total = 0.0
    methods = [*method_names(), *(LORA_PREFIX + name for name in shipped)]
    for name in methods:
        seconds, answers = timed(lambda: ask(get_method(name), backend, [item], [clip]))
        total += seconds
        target = "  [target <= 5 s, evidence included]" if name == "baseline" else ""
        print(f"{name:12s} {seconds:5.1f} s  {answers[0].outcome!s:7s} {answers[0].text[:70]!r}{target}")
    print(f"all {len(methods)} methods ({', '.join(methods)}): {total:.1f} s, evidence extracted {backend.evidence.computed} time(s)  [target <= 30 s, once]")

    requests = [Request([{"role": "user", "content": p}], decoding=Decoding(max_new_tokens=32)) for p in PROMPTS]
    batched, _ = timed(lambda: backend.generate(requests))
    single, _ = timed(lambda: [backend.generate([r]) for r in requests])
    print(f"8 prompts x 32 new tokens: batched {batched:.1f} s, one at a time {single:.1f} s, speed-up {single / batched:.1f}x")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"peak RSS: {rss:.2f} GB (this process), {child_rss:.2f} GB (cold-start process)  [target <= 8 GB]")


if __name__ == "__main__":
    main()
