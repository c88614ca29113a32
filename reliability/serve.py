"""`python -m reliability serve`: a lab backend behind an OpenAI-compatible chat API, concurrent requests batched together.

Endpoints: POST /v1/chat/completions (text, `input_audio` and `audio_url` data-URL parts, `n`,
temperature, top_p, max_tokens, seed, and the lab's `reliability_options` extension that returns each
option's log-probability), GET /v1/models, GET /health. Requests that arrive while the backend is
busy wait in a queue and go to its batched `generate` together (dynamic batching).

Under abuse it holds: the key is checked (digest compare) before anything else, on every route; a body
over `max_body_bytes` is refused (413) before it is parsed; `n`, `max_tokens` and the clip's length are
capped (400 naming the setting that raises the cap); a request whose client hung up never reaches the model.
"""
from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from reliability.audio import DEFAULT_MAX_SECONDS, from_bytes
from reliability.backends.base import Backend
from reliability.backends.openai_backend import OPTIONS_FIELD
from reliability.errors import ReliabilityError
from reliability.types import Decoding, Generation, Request

log = logging.getLogger(__name__)

META_FIELD = "reliability_meta"  # each choice's backend meta (e.g. the cascade's evidence)


@dataclass
class ServeConfig:
    """How `serve` listens and batches."""

    host: str = "127.0.0.1"  # address to listen on; 0.0.0.0 for every interface
    port: int = 8000
    api_key: str | None = None  # when set, every /v1 request needs "Authorization: Bearer <key>"
    model_name: str = ""  # the name clients ask for; empty: the backend's model id
    max_batch: int = 16  # most requests per backend call
    batch_wait_ms: float = 20.0  # how long a lone request waits for others (5 ms split 8 concurrent requests 1 + 7)
    max_n: int = 32  # most samples one request may ask for (n); n=1024 held the default for 33 s and 3.6 GB
    max_tokens: int = 2048  # most tokens one request may ask for (max_tokens / max_completion_tokens)
    # a 600 s clip of 16-bit WAV is 19.2 MB, 25.6 MB as base64: it fits, with room for the rest of the JSON
    max_body_bytes: int = 32 * 1024 * 1024
    max_audio_seconds: float = DEFAULT_MAX_SECONDS  # longest clip, read from its header before it is decoded
    limit_concurrency: int = 256  # open connections and requests at once; more are answered 503 by uvicorn


CAP_FLAGS = {"max_n": "--max-n", "max_tokens": "--max-tokens", "max_body_bytes": "--max-body-mb", "max_audio_seconds": "--max-audio-seconds"}
HUNG_UP = 499  # the status logged for a request whose client left before it was answered (nginx's convention)


class BadRequest(Exception):
    """A request the server refuses, with the HTTP status and the OpenAI error type."""

    def __init__(self, message: str, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.kind = status, kind


class Batcher:
    """Collects concurrent requests into one `backend.generate` call, one call at a time."""

    def __init__(self, backend: Backend, max_batch: int, wait_s: float):
        self.backend = backend
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.sizes: list[int] = []  # requests per backend call, for /health and the benchmark
        self._queue: asyncio.Queue | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serve-backend")

    async def submit(self, request: Request) -> Generation:
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((request, future))
        return await future

    async def run(self) -> None:
        self._queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            self._drain(batch)
            if len(batch) < self.max_batch and self.wait_s > 0:
                await asyncio.sleep(self.wait_s)
                self._drain(batch)
            live = [(r, f) for r, f in batch if not f.cancelled()]  # a client that hung up is not answered
            if not live:
                continue
            self.sizes.append(len(live))
            start = time.perf_counter()
            try:
                gens = await loop.run_in_executor(self._executor, self.backend.generate, [r for r, _ in live])
            except Exception as exc:  # every waiting request hears why
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            # the backend call's wall time, so a client can tell its own overhead from the model's work
            seconds = round(time.perf_counter() - start, 4)
            for (_, future), gen in zip(live, gens):
                if not future.done():
                    gen.meta = {**gen.meta, "serve_batch_s": seconds, "serve_batch_size": len(live)}
                    future.set_result(gen)

    def _drain(self, batch: list) -> None:
        while len(batch) < self.max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())


def error_body(exc: BadRequest) -> bytes:
    """The OpenAI-style JSON error body of a refusal."""
    return json.dumps({"error": {"message": str(exc), "type": exc.kind, "code": exc.status}}).encode()


async def send_error(send, exc: BadRequest) -> None:
    """Answer a raw ASGI request with a refusal, closing the connection (its body may be unread)."""
    body = error_body(exc)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class KeyCheck:
    """Pure ASGI: with a key, every route (the API, /health, the docs) needs "Authorization: Bearer <key>".

    Pure ASGI rather than `@app.middleware("http")`: behind a BaseHTTPMiddleware a handler never hears its
    client hang up. The key is compared as SHA-256 digests with hmac.compare_digest: in constant time,
    and on bytes, so a non-ASCII header cannot raise.
    """

    def __init__(self, app, api_key: str):
        self.app = app
        self.digest = hashlib.sha256(f"Bearer {api_key}".encode()).digest()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(hashlib.sha256(given).digest(), self.digest):
                return await send_error(send, BadRequest("invalid API key", 401, "authentication_error"))
        await self.app(scope, receive, send)


class BodyLimit:
    """Pure ASGI: a body over `limit` bytes is refused with 413 before anything parses it, by its
    Content-Length at once, a chunked one as soon as the bytes read pass the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = BadRequest(
            f"the body is over the server's {self.limit / 2**20:g} MiB limit (raise it with {CAP_FLAGS['max_body_bytes']})",
            413, "invalid_request_error",
        )
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await send_error(send, too_big if length.isdigit() else BadRequest("a bad Content-Length header"))
        # one growing buffer, not a list of chunks to join: freed chunks stay resident in the heap, so a list
        # would hold the body twice over for the rest of the request
        buffer = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before its body was in
                return
            buffer += message.get("body", b"")
            if len(buffer) > self.limit:
                return await send_error(send, too_big)
            if not message.get("more_body", False):
                break
        body, replayed = bytes(buffer), False
        del buffer

        async def replay():
            # the whole body once, then the client's own messages: its hang-up (http.disconnect) still arrives
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def until_hung_up(request: HttpRequest) -> None:
    """Return when the client disconnects; call it once the body is read, so it takes no body message."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def with_cancellation(handler):
    """Race the handler against its client's hang-up (vLLM's pattern): a client that left cancels the
    handler, so its request leaves the batcher's queue before it reaches the model."""

    @functools.wraps(handler)
    async def wrapper(request: HttpRequest):
        await request.body()  # read now, so the hang-up listener never takes a body message from the handler
        answer = asyncio.create_task(handler(request))
        hang_up = asyncio.create_task(until_hung_up(request))
        done, pending = await asyncio.wait((answer, hang_up), return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if answer in done:
            return answer.result()
        return Response(status_code=HUNG_UP)

    return wrapper


def build_app(backend: Backend, config: ServeConfig = ServeConfig()):
    """The FastAPI app serving `backend`; the batcher starts with the app."""
    identity = backend.describe()
    name = config.model_name or identity["model_id"] or backend.name
    root = f"{backend.name}:{identity['model_id']}" + (f"+{identity['adapter']}" if identity.get("adapter") else "")
    batcher = Batcher(backend, config.max_batch, config.batch_wait_ms / 1000)
    created = int(time.time())

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="reliability lab serve", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    if config.api_key:  # added last, so it runs first: no body is read for a request without the key
        app.add_middleware(KeyCheck, api_key=config.api_key)

    def error(exc: BadRequest) -> JSONResponse:
        return JSONResponse(json.loads(error_body(exc)), status_code=exc.status)

    @app.get("/health")
    async def health() -> dict:
        sizes = batcher.sizes
        return {"status": "ok", "model": name, "backend_calls": len(sizes), "requests": sum(sizes), "largest_batch": max(sizes, default=0)}

    @app.get("/v1/models")
    async def models() -> dict:
        card = {"id": name, "object": "model", "created": created, "owned_by": "reliability-lab", "root": root, OPTIONS_FIELD: True}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    @with_cancellation
    async def chat(request: HttpRequest):
        try:
            body = parse_json(await request.body())
            if body.get("model") != name:
                raise BadRequest(f"The model `{str(body.get('model'))[:100]}` does not exist. This server serves: {name}", 404, "NotFoundError")
            if body.get("stream"):
                raise BadRequest("stream=true is not supported by this server")
            gen = await batcher.submit(parse_request(body, config))
        except BadRequest as exc:
            return error(exc)
        except ReliabilityError as exc:
            return error(BadRequest(str(exc)))
        except Exception as exc:
            log.exception("backend failed")
            return error(BadRequest(f"the backend failed: {type(exc).__name__}: {exc}", 500, "server_error"))
        return completion(name, gen)

    return app


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; any malformed body (bad JSON, too deep, not an object) is a BadRequest."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than the parser's stack
        raise BadRequest(f"the body is not JSON ({type(exc).__name__}: {str(exc)[:100]})") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def parse_request(body: dict[str, Any], config: ServeConfig = ServeConfig()) -> Request:
    """An OpenAI chat request as a backend Request: text turns, the one clip, decoding settings, options."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    turns, audio = [], None
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise BadRequest(f"each message needs a role of system, user or assistant, got {message!r:.100}")
        content = message.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            texts = []
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind in ("input_audio", "audio_url"):
                    if audio is not None:
                        raise BadRequest("one audio clip per request")
                    audio = from_bytes(_audio_bytes(part), source=kind, max_seconds=config.max_audio_seconds)
                else:
                    raise BadRequest(f"content part type {kind!r} is not supported; use text, input_audio or audio_url")
            text = "\n".join(texts)
        else:
            raise BadRequest("message content must be text or a list of content parts")
        turns.append({"role": message["role"], "content": text})
    options = body.get(OPTIONS_FIELD) or ()
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
        raise BadRequest(f"{OPTIONS_FIELD} must be a list of texts")
    return Request(
        messages=turns,
        audio=None if audio is None else audio.samples,
        decoding=decoding(body, config),
        choices=tuple(options),
        audio_hash=None if audio is None else audio.hash,
    )


def decoding(body: dict[str, Any], config: ServeConfig = ServeConfig()) -> Decoding:
    """OpenAI's sampling fields as Decoding: temperature 0 is greedy; n is the number of samples.

    Each field is checked finite first (NaN passes every range check), then its range, then its cap; a
    refusal names the field, its value and, for a cap, the flag that raises it.
    """
    temperature = _number(body, "temperature", 1.0)
    top_p = _number(body, "top_p", 1.0)
    tokens_field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    tokens = _integer(body, tokens_field, Decoding.max_new_tokens)
    n = _integer(body, "n", 1)
    seed = None if body.get("seed") is None else _integer(body, "seed", 0)
    if temperature < 0:
        raise BadRequest(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise BadRequest(f"top_p must be in (0, 1], got {top_p}")
    for field, value, cap in ((tokens_field, tokens, "max_tokens"), ("n", n, "max_n")):
        if value < 1:
            raise BadRequest(f"{field} must be >= 1, got {value}")
        if value > getattr(config, cap):
            raise BadRequest(f"{field}={value} is over this server's cap of {getattr(config, cap)} (raise it with {CAP_FLAGS[cap]})")
    sample = temperature > 0
    return Decoding(
        do_sample=sample, temperature=temperature if sample else 1.0, top_p=top_p if sample else 1.0,
        max_new_tokens=tokens, num_samples=n, seed=seed,
    )


def completion(model: str, gen: Generation) -> dict[str, Any]:
    """A chat.completion response: one choice per sample, each with the options' log-probabilities."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "stop",
            "logprobs": None,  # token log-probabilities are not exposed; option scores are
            "option_logprobs": gen.option_logprobs,
            META_FIELD: gen.meta,
        }
        for i, text in enumerate(gen.texts)
    ]
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()), "model": model, "choices": choices}


def _number(body: dict[str, Any], key: str, default: float) -> float:
    """A finite number field, or OpenAI's default where it is absent or null."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"{key} must be a finite number, got {str(value)[:50]}")
    return float(value)


def _integer(body: dict[str, Any], key: str, default: int) -> int:
    """A whole-number field (2.0 is 2; 2.7 is refused, not cut), or `default` where it is absent or null."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
        raise BadRequest(f"{key} must be a whole number (64-bit), got {str(value)[:50]}")
    return value


def _audio_bytes(part: dict[str, Any]) -> bytes:
    field = part["type"]
    holder = part.get(field)
    if not isinstance(holder, dict):
        raise BadRequest(f"{field} must be an object, e.g. " + ('{"data": "<base64>", "format": "wav"}' if field == "input_audio" else '{"url": "data:audio/wav;base64,..."}'))
    if field == "input_audio":
        data = holder.get("data")
    else:
        url = holder.get("url")
        if not isinstance(url, str) or not url.startswith("data:"):
            raise BadRequest("audio_url must be a data: URL (data:audio/wav;base64,...); this server fetches nothing")
        data = url.partition(",")[2]
    if not isinstance(data, str):
        raise BadRequest(f"the audio of {field} must be base64 text")
    try:
        # straight from the text, not through an ASCII copy of it (b64decode makes one): a clip near the body cap
        # would otherwise be held four times at once
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the audio is not valid base64 ({exc})") from exc


def serve(backend: Backend, config: ServeConfig = ServeConfig()) -> None:
    """Load the backend's model, then serve until interrupted."""
    import uvicorn

    load = getattr(backend, "load", None)
    if callable(load):
        load()
    app = build_app(backend, config)
    print(f"serving {backend.name} on http://{config.host}:{config.port}/v1", flush=True)
    # idle client connections stay open a minute (uvicorn's default is 5 s): a client that pauses between
    # bursts would otherwise reconnect, and its first request would arrive alone and run as a batch of one
    uvicorn.run(
        app, host=config.host, port=config.port, log_level="warning", timeout_keep_alive=60,
        limit_concurrency=config.limit_concurrency,
    )
