"""Benchmark of the server and the app under abuse: caps, body and clip limits, hung-up clients, a failing backend, load.

Run `python benchmarks/bench_abuse.py [--seconds 30]`. It starts `python -m reliability serve --backend scripted`
and `python app.py --backend scripted` on 127.0.0.1 only, with bounded loops, and prints each measured figure
next to the target of issue 23; it asserts nothing (timings depend on the machine and its load). Memory growth
is the server's peak RSS during the request (VmHWM, reset first) minus its RSS before.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from reliability.errors import BackendError  # noqa: E402
from reliability.services import Services, Settings  # noqa: E402
from reliability.services import pool as pool_module  # noqa: E402
from tests.test_app_api import running_app, seed_lab  # noqa: E402
from tests.test_serve import raw_post, running_serve  # noqa: E402

KEY = "bench-key"
MB = 2**20


def rss(pid: int, field: str) -> int:
    """A /proc/PID/status memory field (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def growth(pid: int, request) -> tuple[float, object]:
    """(peak memory growth in MB of process `pid` while `request()` runs, its result)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = rss(pid, "VmRSS")
    result = request()
    time.sleep(0.2)
    return (rss(pid, "VmHWM") - before) / MB, result


def chat(**fields) -> bytes:
    return json.dumps({"model": "scripted", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


def serve_figures() -> None:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    with running_serve("--backend", "scripted", "--backend-arg", "reply=(A) x", "--backend-arg", "delay_s=2", "--api-key", KEY) as server:
        pid, port = server.proc.pid, server.port
        start = time.perf_counter()
        status, body = raw_post(port, "/v1/chat/completions", chat(n=100000), headers)
        print(f"n=100000: {status} in {time.perf_counter() - start:.3f} s ({json.loads(body)['error']['message']})  [target: 400 in < 1 s]")

        big = b"x" * (200 * MB)
        for chunked in (False, True):
            grew, (status, _) = growth(pid, lambda: raw_post(port, "/v1/chat/completions", big, headers, chunked=chunked))
            kind = "chunked" if chunked else "with Content-Length"
            print(f"200 MB body ({kind}): {status}, server memory +{grew:.1f} MB  [target: 413, < 50 MB]")
        del big

        def with_clip(seconds: float, rate: int) -> bytes:
            wav = io.BytesIO()
            sf.write(wav, np.zeros(int(seconds * rate), dtype=np.float32), rate, format="WAV", subtype="PCM_U8")
            part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(wav.getvalue()).decode(), "format": "wav"}}
            return chat(messages=[{"role": "user", "content": [part]}])

        raw_post(port, "/v1/chat/completions", with_clip(1, 16_000), headers)  # a served clip first: its imports are start-up
        raw = with_clip(2 * 3600, 2000)  # 2 h at 2 kHz, 8-bit: 14 MB of WAV, under the body cap
        grew, (status, body) = growth(pid, lambda: raw_post(port, "/v1/chat/completions", raw, headers))
        print(f"2-hour WAV ({len(raw) / MB:.0f} MB body): {status}, server memory +{grew:.1f} MB ({json.loads(body)['error']['message']})  [target: 400, < 100 MB]")

        before = server.health()["requests"]
        head = "\r\n".join(["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {KEY}",
                            "Content-Type: application/json", f"Content-Length: {len(chat())}"]).encode() + b"\r\n\r\n"
        for _ in range(10):  # each waits behind the 2 s backend call, then its client hangs up
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(head + chat())
                time.sleep(0.15)
        time.sleep(4.5)  # every queued request has had its chance at the backend
        print(f"10 abandoned slow requests: {server.health()['requests'] - before} reached the backend  [target: at most 1]")


def failing_backend_figure(tmp: str, fail_s: float) -> None:
    """A Compare on the default (scripted) while another user's backend (qwen2-audio, a stand-in that takes
    `fail_s` to fail, as a missing checkpoint does) is being built."""
    real = pool_module.get_backend

    def build(name, **kwargs):
        if name == "qwen2-audio":
            time.sleep(fail_s)
            raise BackendError("qwen2-audio: cannot load 'Qwen/Qwen2-Audio-7B-Instruct' (no checkpoint here)")
        return real(name, **kwargs)

    pool_module.get_backend = build
    try:
        services = Services.build(Settings(f"{tmp}/fail.db", f"{tmp}/fail", backend="scripted", backend_kwargs={"reply": "A"}))
        clip = f"{tmp}/tone.wav"
        sf.write(clip, (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32), 16000)

        def compare(question: str, backend: str | None = None) -> float:
            start = time.perf_counter()
            try:
                list(services.compare.compare(clip, question, ["a", "b"], "a", ["baseline"], backend))
            except BackendError:
                pass
            return time.perf_counter() - start

        alone = statistics.median(compare(f"Alone {i}?") for i in range(5))
        other = threading.Thread(target=compare, args=("Other user?", "qwen2-audio"))
        other.start()
        time.sleep(0.3)
        during = max(compare(f"During {i}?") for i in range(5))
        other.join()
        again = compare("Again?", "qwen2-audio")
        print(f"Compare on the default: {alone * 1000:.0f} ms alone, at most {during * 1000:.0f} ms while another user's backend "
              f"takes {fail_s:.0f} s to fail; that backend asked again fails in {again * 1000:.0f} ms (remembered)  [target: its usual time]")
    finally:
        pool_module.get_backend = real


def load_figure(tmp: str, seconds: float) -> None:
    """8 labellers and 2 Compare users on the running app at once, every call timed."""
    from gradio_client import Client, handle_file

    db = Path(tmp) / "load.db"
    answer_ids = seed_lab(db, Path(tmp) / "load", n_items=30, methods=("baseline", "idk"))
    clip = Path(tmp) / "load" / "seed.wav"
    times: dict[str, list[float]] = {}
    errors = []

    def timed_call(client, *args, **kwargs):
        start = time.perf_counter()
        try:
            return client.predict(*args, **kwargs)
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            times.setdefault(kwargs["api_name"], []).append(time.perf_counter() - start)

    def labeller(url: str, name: str, deadline: float) -> None:
        client = Client(url, verbose=False)
        i = 0
        while time.monotonic() < deadline:
            todo = (timed_call(client, name, unlabelled_only=True, limit=3, api_name="/queue") or {}).get("tasks") or []
            answer_id = todo[0]["answer_id"] if todo else answer_ids[i % len(answer_ids)]
            timed_call(client, answer_id, ("correct", "wrong", "idk")[i % 3], name, api_name="/label")
            i += 1

    def comparer(url: str, name: str, deadline: float) -> None:
        client = Client(url, verbose=False)
        i = 0
        while time.monotonic() < deadline:
            timed_call(client, handle_file(str(clip)), f"{name} question {i}?", ["a tone", "a voice"], "A", ["baseline"], api_name="/compare")
            i += 1

    with running_app(db) as url:
        # one Compare first: the first one imports the audio stack (seconds), which is start-up, not load
        Client(url, verbose=False).predict(handle_file(str(clip)), "Warm-up?", ["a tone", "a voice"], "A", ["baseline"], api_name="/compare")
        deadline = time.monotonic() + seconds
        workers = [threading.Thread(target=labeller, args=(url, f"labeller-{i}", deadline)) for i in range(8)]
        workers += [threading.Thread(target=comparer, args=(url, f"user-{i}", deadline)) for i in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=seconds + 300)
    every = [t for ts in times.values() for t in ts]
    print(f"8 labellers + 2 compares for {seconds:.0f} s: {len(every)} calls, {len(errors)} errors, p95 {p95(every) * 1000:.0f} ms "
          f"({', '.join(f'{name} {p95(ts) * 1000:.0f}' for name, ts in sorted(times.items()))})  [target: 0 errors, p95 <= 1 s]")
    for line in sorted(set(errors))[:5]:
        print(f"  error: {line[:200]}")


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] if len(times) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the load run (default: 60)")
    parser.add_argument("--fail-s", type=float, default=10.0, help="how long the stand-in failing backend takes to fail (default: 10)")
    parser.add_argument("--only", choices=["serve", "backend", "load"], help="run one part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "serve"):
            serve_figures()
        if args.only in (None, "backend"):
            failing_backend_figure(tmp, args.fail_s)
        if args.only in (None, "load"):
            load_figure(tmp, args.seconds)


if __name__ == "__main__":
    main()
