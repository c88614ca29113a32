"""`python -m reliability serve`: a lab backend behind an OpenAI-compatible chat API, concurrent requests batched together.

Endpoints: POST /v1/chat/completions (text, `input_audio` and `audio_url` data-URL parts, `n`,
temperature, top_p, max_tokens, seed, and the lab's `reliability_options` extension that returns each
option's log-probability), GET /v1/models, GET /health. Requests that arrive while the backend is
busy wait in a queue and go to its batched `generate` together (dynamic batching).
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse

from reliability.audio import from_bytes
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

    def error(exc: BadRequest) -> JSONResponse:
        return JSONResponse({"error": {"message": str(exc), "type": exc.kind, "code": exc.status}}, status_code=exc.status)

    @app.middleware("http")
    async def check_key(request: HttpRequest, call_next):
        if config.api_key and request.url.path.startswith("/v1") and request.headers.get("authorization") != f"Bearer {config.api_key}":
            return error(BadRequest("invalid API key", 401, "authentication_error"))
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict:
        sizes = batcher.sizes
        return {"status": "ok", "model": name, "backend_calls": len(sizes), "requests": sum(sizes), "largest_batch": max(sizes, default=0)}

    @app.get("/v1/models")
    async def models() -> dict:
        card = {"id": name, "object": "model", "created": created, "owned_by": "reliability-lab", "root": root, OPTIONS_FIELD: True}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(request: HttpRequest):
        try:
            try:
                body = await request.json()
            except ValueError as exc:
                raise BadRequest(f"the body is not JSON ({exc})") from exc
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            if body.get("model") != name:
                raise BadRequest(f"The model `{body.get('model')}` does not exist. This server serves: {name}", 404, "NotFoundError")
            if body.get("stream"):
                raise BadRequest("stream=true is not supported by this server")
            gen = await batcher.submit(parse_request(body))
        except BadRequest as exc:
            return error(exc)
        except ReliabilityError as exc:
            return error(BadRequest(str(exc)))
        except Exception as exc:
            log.exception("backend failed")
            return error(BadRequest(f"the backend failed: {type(exc).__name__}: {exc}", 500, "server_error"))
        return completion(name, gen)

    return app


def parse_request(body: dict[str, Any]) -> Request:
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
                    audio = from_bytes(_audio_bytes(part), source=kind)
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
        decoding=decoding(body),
        choices=tuple(options),
        audio_hash=None if audio is None else audio.hash,
    )


def decoding(body: dict[str, Any]) -> Decoding:
    """OpenAI's sampling fields as Decoding: temperature 0 is greedy; n is the number of samples."""
    try:
        temperature = float(_given(body, "temperature", 1.0))
        top_p = float(_given(body, "top_p", 1.0))
        tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or Decoding.max_new_tokens)
        n = int(_given(body, "n", 1))
        seed = None if body.get("seed") is None else int(body["seed"])
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"bad sampling field: {exc}") from exc
    if temperature < 0 or not 0 < top_p <= 1 or tokens < 1 or n < 1:
        raise BadRequest(f"out of range: temperature={temperature}, top_p={top_p}, max_tokens={tokens}, n={n}")
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


def _given(body: dict[str, Any], key: str, default: float | int):
    """A field's value, or OpenAI's default where it is absent or null."""
    return default if body.get(key) is None else body[key]


def _audio_bytes(part: dict[str, Any]) -> bytes:
    if part["type"] == "input_audio":
        data = (part.get("input_audio") or {}).get("data")
    else:
        url = (part.get("audio_url") or {}).get("url") or ""
        if not url.startswith("data:"):
            raise BadRequest("audio_url must be a data: URL (data:audio/wav;base64,...); this server fetches nothing")
        data = url.partition(",")[2]
    try:
        return base64.b64decode(data or "", validate=True)
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
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", timeout_keep_alive=60)
