"""`python -m reliability serve` as a real server in a subprocess on 127.0.0.1: the OpenAI wire format, keys, errors, batching.

Also holds `running_serve`, the helper the openai backend's tests start their servers with.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf

from reliability.serve import BadRequest, decoding, parse_request
from tests.conftest import tone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP_S = 120  # imports (torch too, for a model backend) on a busy 2-core machine
KEY = "test-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_serve(*args: str, port: int | None = None, log_path: str | None = None) -> Iterator["Server"]:
    """`python -m reliability serve ARGS` on 127.0.0.1; yields a Server once /health answers, stops it afterwards."""
    if log_path is None:
        handle, log_path = tempfile.mkstemp(suffix=".serve.log")
        os.close(handle)
    server = Server(port or free_port(), log_path)
    server.start(*args)
    try:
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            os.remove(server.log_path)


class Server:
    """A serve subprocess that a test can kill and start again on the same port."""

    def __init__(self, port: int, log_path: str):
        self.port, self.log_path, self.proc, self.args = port, log_path, None, ()

    @property
    def headers(self) -> dict[str, str]:
        """The key the server was started with, as every route (/health too) needs it."""
        args = list(self.args)
        return {"Authorization": f"Bearer {args[args.index('--api-key') + 1]}"} if "--api-key" in args else {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, *args: str) -> None:
        self.args = args or self.args
        cmd = [sys.executable, "-m", "reliability", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args]
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + STARTUP_S
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", headers=self.headers, timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                pytest.fail(f"serve did not start within {STARTUP_S} s:\n{self.log()}")
            time.sleep(0.3)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def health(self) -> dict:
        return httpx.get(f"http://127.0.0.1:{self.port}/health", headers=self.headers, timeout=5).json()

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-40:])


def wav_b64(samples: np.ndarray, sr: int = 16_000) -> str:
    buffer = io.BytesIO()
    sf.write(buffer, samples, sr, format="WAV", subtype="FLOAT")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def scripted_server():
    with running_serve("--backend", "scripted", "--backend-arg", "reply=(B) a dog", "--backend-arg", "delay_s=0.3", "--api-key", KEY) as server:
        yield server


def post(server: Server, body: dict, key: str = KEY) -> httpx.Response:
    return httpx.post(f"{server.url}/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_models_lists_the_served_backend(scripted_server):
    listing = httpx.get(f"{scripted_server.url}/models", headers={"Authorization": f"Bearer {KEY}"}).json()
    (card,) = listing["data"]
    assert (card["id"], card["root"], card["object"], card["reliability_options"]) == ("scripted", "scripted:scripted", "model", True)


def test_a_chat_completion_with_audio_in_both_part_styles(scripted_server):
    clip = wav_b64(tone(seconds=0.5))
    for part in (
        {"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}},
        {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{clip}"}},
    ):
        body = {"model": "scripted", "messages": [{"role": "user", "content": [part, {"type": "text", "text": "What barks?"}]}], "n": 2, "temperature": 0.7}
        reply = post(scripted_server, body)
        assert reply.status_code == 200, reply.text
        data = reply.json()
        assert data["object"] == "chat.completion" and [c["message"]["content"] for c in data["choices"]] == ["(B) a dog"] * 2
        assert data["choices"][0]["reliability_meta"]["serve_batch_s"] >= 0.3  # the backend call's time, for client overhead


@pytest.mark.parametrize(
    "body, key, status, message",
    [
        ({"model": "scripted", "messages": [{"role": "user", "content": "hi"}]}, "wrong", 401, "invalid API key"),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, KEY, 404, "serves: scripted"),
        ({"model": "scripted", "messages": []}, KEY, 400, "non-empty list"),
        ({"model": "scripted", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, KEY, 400, "not supported"),
        ({"model": "scripted", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "bm90IGF1ZGlv"}}]}]}, KEY, 400, "not a readable audio file"),
        ({"model": "scripted", "messages": [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "http://x/a.wav"}}]}]}, KEY, 400, "data: URL"),
    ],
)
def test_bad_requests_get_openai_style_errors(scripted_server, body, key, status, message):
    reply = post(scripted_server, body, key)
    assert reply.status_code == status
    assert message in reply.json()["error"]["message"]


def test_concurrent_requests_share_backend_calls(scripted_server):
    before = scripted_server.health()
    body = {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}

    async def burst():
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
            return await asyncio.gather(*(client.post(f"{scripted_server.url}/chat/completions", json=body) for _ in range(8)))

    start = time.perf_counter()
    replies = asyncio.run(burst())
    elapsed = time.perf_counter() - start
    assert all(r.status_code == 200 for r in replies)
    after = scripted_server.health()
    calls = after["backend_calls"] - before["backend_calls"]
    # each backend call sleeps 0.3 s: eight separate calls would take 2.4 s
    assert calls <= 2 and after["largest_batch"] >= 4 and elapsed < 1.5, (calls, after, elapsed)


def test_sampling_fields_map_onto_decoding():
    greedy = decoding({"temperature": 0, "max_tokens": 12})
    assert (greedy.do_sample, greedy.max_new_tokens, greedy.num_samples) == (False, 12, 1)
    sampled = decoding({"temperature": 0.8, "top_p": 0.9, "max_completion_tokens": 7, "n": 5, "seed": 3})
    assert (sampled.do_sample, sampled.temperature, sampled.top_p, sampled.max_new_tokens, sampled.num_samples, sampled.seed) == (
        True, 0.8, 0.9, 7, 5, 3,
    )
    assert decoding({}).do_sample  # OpenAI's default temperature is 1
    with pytest.raises(BadRequest, match="n must be >= 1, got 0"):
        decoding({"n": 0})
    assert decoding({"n": 2.0}).num_samples == 2  # a whole float is that number; 2.7 is refused, not cut


def test_a_request_becomes_text_turns_one_clip_and_options():
    samples = tone(seconds=0.5)
    request = parse_request(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": wav_b64(samples)}}, {"type": "text", "text": "Which?"}]},
            ],
            "reliability_options": ["cat", "dog"],
        }
    )
    assert request.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Which?"}]
    assert np.array_equal(request.audio, samples.astype(np.float32)) and request.choices == ("cat", "dog")
    assert parse_request({"messages": [{"role": "user", "content": "no clip"}]}).audio is None


def raw_post(port: int, path: str, body: bytes = b"", headers: dict[str, str] | None = None, chunked: bool = False,
             declared: int | None = None) -> tuple[int, bytes]:
    """POST over a bare socket, stopping the upload as soon as the server answers (a refused body is never sent
    whole); returns (status, response body). `declared` sends a Content-Length other than the body's."""
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body) if declared is None else declared}")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        step = 1 << 20
        with contextlib.suppress(OSError):  # the server may close while the rest is still being sent
            for start in range(0, len(body), step):
                chunk = body[start : start + step]
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk)
                if select.select([s], [], [], 0)[0]:
                    break
            else:
                if chunked:
                    s.sendall(b"0\r\n\r\n")
        reply = b""
        with contextlib.suppress(OSError):
            while part := s.recv(65536):
                reply += part
    status_line, _, rest = reply.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def chat_body(**fields) -> dict:
    return {"model": "scripted", "messages": [{"role": "user", "content": "hi"}], **fields}


@pytest.mark.parametrize(
    "raw, message",
    [
        (json.dumps(chat_body(n=100000)), "n=100000 is over this server's cap of 32 (raise it with --max-n)"),
        (json.dumps(chat_body(max_tokens=10**9)), "raise it with --max-tokens"),
        (json.dumps(chat_body(max_tokens=0)), "max_tokens must be >= 1"),
        (json.dumps(chat_body(n=2.7)), "n must be a whole number"),
        (json.dumps(chat_body()).replace('"messages"', '"temperature": NaN, "messages"'), "temperature must be a finite number"),
        (json.dumps(chat_body()).replace('"messages"', '"temperature": Infinity, "messages"'), "temperature must be a finite number"),
        (json.dumps(chat_body()).replace('"messages"', '"max_tokens": 1e400, "messages"'), "max_tokens must be a whole number"),
        (json.dumps(chat_body()).replace('"messages"', '"seed": 1e400, "messages"'), "seed must be a whole number"),
        (json.dumps(chat_body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": "UklGRg=="}]}])), "input_audio must be an object"),
        (json.dumps(chat_body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": 5}}]}])), "must be base64 text"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "the body is not JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_every_malformed_request_gets_a_one_line_400(scripted_server, raw, message):
    start = time.perf_counter()
    status, body = raw_post(scripted_server.port, "/v1/chat/completions", raw.encode(), scripted_server.headers)
    error = json.loads(body)["error"]["message"]
    assert status == 400 and message in error and "\n" not in error, (status, body[:300])
    assert time.perf_counter() - start < 5


@pytest.fixture(scope="module")
def capped_server():
    with running_serve("--backend", "scripted", "--backend-arg", "reply=(A) x", "--backend-arg", "delay_s=1", "--api-key", KEY, "--max-body-mb", "1", "--max-audio-seconds", "60") as server:
        yield server


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_cap_is_refused_with_413_before_it_is_read(capped_server, chunked):
    status, body = raw_post(capped_server.port, "/v1/chat/completions", b"x" * (8 << 20), capped_server.headers, chunked=chunked)
    assert status == 413 and "1 MiB limit (raise it with --max-body-mb)" in json.loads(body)["error"]["message"]


def test_a_declared_length_over_the_cap_is_refused_before_any_byte_is_sent(capped_server):
    status, _ = raw_post(capped_server.port, "/v1/chat/completions", b"", capped_server.headers, declared=200 << 20)
    assert status == 413


def test_an_over_long_clip_is_refused_from_its_header(capped_server):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(16_000 * 3600, dtype=np.int16), 16_000, format="FLAC")  # an hour of silence: ~180 KiB
    part = {"type": "input_audio", "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode()}}
    reply = post(capped_server, chat_body(messages=[{"role": "user", "content": [part]}]))
    assert reply.status_code == 400 and "3600 s is longer than the 60 s limit" in reply.json()["error"]["message"]


def test_with_a_key_health_and_the_docs_need_it(scripted_server):
    for path in ("/health", "/docs", "/openapi.json", "/redoc", "/v1/models"):
        assert httpx.get(f"http://127.0.0.1:{scripted_server.port}{path}", headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert httpx.get(f"http://127.0.0.1:{scripted_server.port}{path}").status_code == 401, path
    assert httpx.get(f"http://127.0.0.1:{scripted_server.port}/health", headers={"Authorization": "Bearer tést".encode()}).status_code == 401
    assert httpx.get(f"http://127.0.0.1:{scripted_server.port}/health", headers=scripted_server.headers).json()["status"] == "ok"


def test_requests_whose_client_hung_up_never_reach_the_backend(capped_server):
    """One request keeps the 1 s backend busy; five more are sent and abandoned while they wait."""
    before = capped_server.health()["requests"]
    raw = json.dumps(chat_body()).encode()
    head = "\r\n".join(["POST /v1/chat/completions HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {KEY}",
                        "Content-Type: application/json", f"Content-Length: {len(raw)}"])
    kept = socket.create_connection(("127.0.0.1", capped_server.port))
    kept.sendall(head.encode() + b"\r\n\r\n" + raw)
    time.sleep(0.2)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", capped_server.port)) as s:
            s.sendall(head.encode() + b"\r\n\r\n" + raw)
            time.sleep(0.1)
    kept.settimeout(30)
    assert kept.recv(100).startswith(b"HTTP/1.1 200")
    kept.close()
    time.sleep(1.5)  # the abandoned requests had their chance at the backend
    assert capped_server.health()["requests"] - before == 1


def test_the_command_lines_caps_are_the_configs_defaults():
    from reliability.cli.main import build_parser
    from reliability.serve import ServeConfig

    args = build_parser().parse_args(["serve"])
    given = (args.max_n, args.max_tokens, int(args.max_body_mb * 2**20), args.max_audio_seconds, args.limit_concurrency)
    config = ServeConfig()
    assert given == (config.max_n, config.max_tokens, config.max_body_bytes, config.max_audio_seconds, config.limit_concurrency)
