"""Benchmark of `serve` and the openai backend on CPU: parity with the in-process cascade, client overhead, batching, kill/restart.

Run `python benchmarks/bench_serve.py [--threads 2]`. It starts `python -m reliability serve` (the
cascade) on 127.0.0.1 and prints measured figures next to the targets of issue 13; it asserts nothing
(timings depend on the machine and its load).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from annotations.db import open_db  # noqa: E402
from reliability.audio import load_audio  # noqa: E402
from reliability.backends.cascade import CascadeBackend  # noqa: E402
from reliability.backends.openai_backend import OpenAIBackend  # noqa: E402
from reliability.methods import ask, get_method  # noqa: E402
from reliability.types import Decoding, Item, Request  # noqa: E402

from common import demo_items, timed  # noqa: E402

PROMPTS = [
    "Name three colours.", "What is the capital of Italy?", "Give a synonym of quick.", "Count from one to five.",
    "What sound does a cat make?", "Name a musical instrument.", "What is two plus three?", "Say good morning in Spanish.",
]
METHODS = ("baseline", "idk")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(port: int, threads: int, log) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reliability", "serve", "--host", "127.0.0.1", "--port", str(port), "--backend-arg", f"threads={threads}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited with {proc.returncode}; see {log.name}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of each model (the targets are for 2 cores)")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = tempfile.NamedTemporaryFile("w", suffix=".serve.log", delete=False)
    seconds, server = timed(lambda: start_serve(port, args.threads, log))
    print(f"serve (cascade) ready in {seconds:.1f} s on {url}", flush=True)
    try:
        local = CascadeBackend(threads=args.threads).load()
        remote = OpenAIBackend(url, concurrency=8)
        items = demo_items()
        clips = [load_audio(item.audio_path) for item in items]

        # parity: every demo item with each method, in one batch on each side
        mismatches, worst = 0, 0.0
        for name in METHODS:
            mine = ask(get_method(name), local, items, clips)
            theirs = ask(get_method(name), remote, items, clips)
            for a, b in zip(mine, theirs):
                mismatches += a.text != b.text
                if a.confidence is not None and b.confidence is not None:
                    worst = max(worst, abs(a.confidence - b.confidence))
        print(f"parity on {len(items)} demo items x {len(METHODS)} methods: {mismatches} different answers, "
              f"largest confidence difference {worst:.2e}  [target: 0 different]")

        # client overhead: the same single request in process and through serve (interleaved, evidence cached on
        # both sides); the overhead is the client's wall time less the server's backend call (serve_batch_s)
        requests = [Request(ask_messages(item), clip.samples, Decoding(), item.choices, clip.hash) for item, clip in zip(items, clips)]
        in_process, through, overhead = [], [], []
        for r in requests:
            in_process.append(timed(lambda r=r: local.generate([r]))[0])
            seconds, (gen,) = timed(lambda r=r: remote.generate([r]))
            through.append(seconds)
            overhead.append(seconds - gen.meta["serve_batch_s"])
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        print(f"one request: in process {mean(in_process) * 1000:.0f} ms, through serve {mean(through) * 1000:.0f} ms; "
              f"client + HTTP + audio coding {mean(overhead) * 1000:.0f} ms = {mean(overhead) / mean(in_process):.1%} "
              f"of the in-process time  [target <= 10 %]")

        # dynamic batching: 8 free-generation prompts and the 9 demo items, concurrently vs one at a time
        for label, batch in (
            ("8 prompts x 32 new tokens", [Request([{"role": "user", "content": p}], decoding=Decoding(max_new_tokens=32)) for p in PROMPTS]),
            ("9 demo items (closed-set answers)", requests),
        ):
            remote.generate([Request(r.messages, decoding=Decoding(max_new_tokens=1)) for r in batch])  # warm the connection pool
            before = httpx.get(f"http://127.0.0.1:{port}/health").json()["backend_calls"]
            together, _ = timed(lambda b=batch: remote.generate(b))
            calls = httpx.get(f"http://127.0.0.1:{port}/health").json()["backend_calls"] - before
            alone, _ = timed(lambda b=batch: [remote.generate([r]) for r in b])
            print(f"{label}: concurrent {together:.1f} s in {calls} backend call(s), one at a time {alone:.1f} s, "
                  f"throughput x{alone / together:.1f}  [target >= 2x]")

        # kill the server mid-run, restart it, run the same command again
        server = kill_and_resume(server, port, args.threads, log, url)
    finally:
        server.terminate()
        server.wait(timeout=30)
        print(f"(server log: {log.name})")


def ask_messages(item: Item) -> list[dict[str, str]]:
    return get_method("baseline").messages(item)


def kill_and_resume(server: subprocess.Popen, port: int, threads: int, log, url: str) -> subprocess.Popen:
    work = Path(tempfile.mkdtemp())
    dataset = work / "demo.json"
    dataset.write_text(json.dumps([
        {"id": i.id, "audio_id": Path(i.audio_path).name, "question": i.question, "choices": list(i.choices), "answer": i.answer, "task": i.modality}
        for i in demo_items()
    ]))
    db_path = work / "lab.db"
    cli = [sys.executable, "-m", "reliability"]
    subprocess.run([*cli, "import", "dataset", str(dataset), "--name", "demo", "--audio-dir", str(ROOT / "reliability" / "demo" / "clips"), "--db", str(db_path)], cwd=ROOT, check=True, capture_output=True)
    command = [*cli, "evaluate", "--db", str(db_path), "--dataset", "demo", "--methods", ",".join(METHODS), "--batch-size", "1",
               "--backend", "openai", "--backend-arg", f"base_url={url}", "--backend-arg", "max_retries=0"]
    total = len(demo_items()) * len(METHODS)
    run = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = open_db(db_path)
    while watcher["answers"].count < total // 3 and run.poll() is None:
        time.sleep(0.05)
    server.kill()
    server.wait()
    _, stderr = run.communicate()
    saved = watcher["answers"].count
    print(f"server killed after {saved}/{total} answers; the run stopped with: {stderr.strip().splitlines()[-1]}")
    seconds, server = timed(lambda: start_serve(port, threads, log))
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    rows = list(watcher.query("SELECT count(*) AS n FROM answers GROUP BY run_id, item_id"))
    print(f"restarted in {seconds:.1f} s; rerun: {rerun.stdout.strip()}")
    print(f"after resume: {len(rows)}/{total} items answered, each {sorted({r['n'] for r in rows})} time(s)  [target: all, exactly once]")
    return server


if __name__ == "__main__":
    main()
