"""The `openai` backend: an OpenAI-compatible chat server (vLLM, a hosted API, the lab's own `serve`) answers over HTTP.

Requests go out concurrently through the official async `openai` client, on an event loop of this
backend's own (so `generate` stays a plain blocking call), spread over one or more servers. The clip
travels as a float32 WAV (lossless, so a server hears exactly the samples an in-process backend gets).
"""
from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlparse

import numpy as np

from reliability.audio import SAMPLE_RATE
from reliability.backends.base import Backend, with_clip_part
from reliability.errors import BackendError, missing_package
from reliability.types import Generation, Request

AUDIO_FORMATS = ("input_audio", "audio_url")  # OpenAI's content part; vLLM's data-URL alternative
SCORING = ("auto", "options", "prompt_logprobs", "none")
OPTIONS_FIELD = "reliability_options"  # serve's extension: a request's options, scored as in process
NO_KEY = "EMPTY"  # what vLLM expects when it runs without --api-key
WAV_CACHE = 64  # encoded clips kept: the agent method sends one clip three times


@dataclass(frozen=True)
class ServedModel:
    """What the first server's /v1/models says about the model asked for."""

    id: str  # the name requests use
    root: str  # the weights the server reports (vLLM: the checkpoint path), part of the run identity
    scores_options: bool  # the server takes OPTIONS_FIELD (the lab's serve)


class OpenAIBackend(Backend):
    """A model behind OpenAI-compatible `/v1/chat/completions` endpoints.

    Option scores: against the lab's `serve`, the options travel with the request and come back
    scored by the served backend itself; against vLLM, each option is scored as the assistant's reply
    through `prompt_logprobs` (mean per-token log-probability, like the qwen2-audio backend). Where
    the server gives neither, answers carry no confidence and their meta says why.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str | list[str] = "http://127.0.0.1:8000/v1",
        model: str = "",
        audio_format: str = "input_audio",
        option_scores: str = "auto",
        concurrency: int = 16,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        api_key_env: str = "OPENAI_API_KEY",
    ):
        """
        base_url: the server's /v1 URL; several, comma-separated, spread the load (data parallel).
        model: the served model's name; empty takes the only model the server lists.
        audio_format: "input_audio" (OpenAI, vLLM, serve) or "audio_url" (a data URL; vLLM, serve).
        option_scores: "auto", "options" (serve), "prompt_logprobs" (vLLM) or "none".
        concurrency: requests in flight at once, over all servers.
        timeout_s: per request; max_retries: retries with backoff on 408/409/429/5xx and connection errors.
        api_key_env: environment variable holding the API key (never stored); unset means no key.
        """
        urls = [u.strip().rstrip("/") for u in (base_url.split(",") if isinstance(base_url, str) else base_url) if u.strip()]
        if not urls:
            raise BackendError("openai: give the server as --backend-arg base_url=http://HOST:PORT/v1")
        for url in urls:
            if urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc:
                raise BackendError(f"openai: base_url {url!r} is not an http(s) URL such as http://127.0.0.1:8000/v1")
        if audio_format not in AUDIO_FORMATS:
            raise BackendError(f"openai: audio_format {audio_format!r}; known: {', '.join(AUDIO_FORMATS)}")
        if option_scores not in SCORING:
            raise BackendError(f"openai: option_scores {option_scores!r}; known: {', '.join(SCORING)}")
        if int(concurrency) < 1:
            raise BackendError(f"openai: concurrency must be at least 1, got {concurrency}")
        super().__init__(model)
        self.urls = urls
        self.audio_format = audio_format
        self.option_scores = option_scores
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.api_key_env = api_key_env
        self.served: ServedModel | None = None
        self.no_scores_reason: str | None = None  # set once scoring failed in "auto" mode: not tried again
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: list = []
        self._in_flight: list[int] = [0] * len(urls)
        self._semaphore: asyncio.Semaphore | None = None
        self._wavs: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    # -- identity and connection ---------------------------------------------------------------

    def describe(self) -> dict:
        """Backend, model and servers: cached answers are never mixed across servers or served weights."""
        served = self.connect()
        hosts = ",".join(sorted(urlparse(u).netloc for u in self.urls))
        model_id = f"{served.id}@{hosts}" + (f" [{served.root}]" if served.root != served.id else "")
        return {"backend": self.name, "model_id": model_id, "adapter": None}

    def load(self, progress=None) -> "OpenAIBackend":
        """Check the servers now (the app preloads backends at start); there is no model to load here."""
        self.connect()
        return self

    def connect(self) -> ServedModel:
        """Ask every server for its models once; BackendError if one is unreachable or lacks the model."""
        if self.served is None:
            self.served = self._run(self._connect())
        return self.served

    async def _connect(self) -> ServedModel:
        found = None
        for i, url in enumerate(self.urls):
            try:
                listing = await self._client(i).models.list()
            except BackendError:  # the openai package itself is missing: nothing to explain about the server
                raise
            except Exception as exc:
                raise self._explain(exc, url) from exc
            models = {m.id: m for m in listing.data}
            if not self.model_id:
                if len(models) != 1:
                    raise BackendError(f"openai: {url} serves {len(models)} models; pick one with --backend-arg model=NAME: {', '.join(sorted(models))}")
                self.model_id = next(iter(models))
            if self.model_id not in models:
                raise BackendError(f"openai: model {self.model_id!r} is not served at {url}; it serves: {', '.join(sorted(models)) or 'nothing'}")
            if found is None:
                extra = models[self.model_id].model_extra or {}
                found = ServedModel(self.model_id, str(extra.get("root") or self.model_id), bool(extra.get(OPTIONS_FIELD)))
        if self.option_scores == "auto":
            self.option_scores = "options" if found.scores_options else "prompt_logprobs"
        return found

    def _client(self, i: int):
        if not self._clients:
            try:
                from openai import AsyncOpenAI
            except ImportError as exc:
                raise missing_package(exc, "the openai backend", "openai") from exc
            key = os.environ.get(self.api_key_env) or NO_KEY
            self._clients = [AsyncOpenAI(base_url=u, api_key=key, timeout=self.timeout_s, max_retries=self.max_retries) for u in self.urls]
        return self._clients[i]

    def _run(self, coroutine):
        """Run a coroutine on this backend's event loop (started on first use) and wait for it."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="openai-backend", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- generation ----------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Generation]:
        self.connect()
        return self._run(self._generate_all(requests))

    async def _generate_all(self, requests: list[Request]) -> list[Generation]:
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._answer(r)) for r in requests]
        except* Exception as errors:  # the first failure, as itself: the others were cancelled with it
            raise errors.exceptions[0] from None
        return [t.result() for t in tasks]

    async def _answer(self, request: Request) -> Generation:
        d = request.decoding
        messages = self.messages(request)
        n = d.num_samples if d.do_sample else 1  # greedy samples would all be equal
        fields = dict(model=self.model_id, messages=messages, n=n, max_completion_tokens=d.max_new_tokens)
        if d.do_sample:
            fields.update(temperature=d.temperature, top_p=d.top_p)
        else:
            fields["temperature"] = 0.0
        if d.seed is not None:
            fields["seed"] = d.seed
        if self.option_scores == "options" and request.choices:
            fields["extra_body"] = {OPTIONS_FIELD: list(request.choices)}
        server, response = await self._call(lambda client: client.chat.completions.create(**fields))
        choices = sorted(response.choices, key=lambda c: c.index)
        texts = [(c.message.content or "").strip() for c in choices]
        extra = choices[0].model_extra or {}
        meta = {"server": urlparse(self.urls[server]).netloc, "served_model": response.model, **(extra.get("reliability_meta") or {})}
        scores = None
        if request.choices:
            scores = await self._option_scores(request, messages, extra)
            if scores is None:
                meta["no_confidence"] = self._why_no_scores()
        return Generation(texts=texts if d.do_sample else texts * d.num_samples, option_logprobs=scores, meta=meta)

    def messages(self, request: Request) -> list[dict]:
        """The chat turns as sent: the clip, if any, opens the first user turn as an audio content part."""
        if request.audio is None:
            return [dict(m) for m in request.messages]
        data = self._wav(request)
        if self.audio_format == "input_audio":
            part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
        else:
            part = {"type": "audio_url", "audio_url": {"url": f"data:audio/wav;base64,{data}"}}
        return with_clip_part(request, "openai", part)

    def _wav(self, request: Request) -> str:
        key = request.audio_hash or str(id(request.audio))
        with self._lock:
            if key in self._wavs:
                self._wavs.move_to_end(key)
                return self._wavs[key]
        data = wav_base64(request.audio)
        with self._lock:
            self._wavs[key] = data
            while len(self._wavs) > WAV_CACHE:
                self._wavs.popitem(last=False)
        return data

    async def _call(self, make):
        """Send one request to the least busy server, within the concurrency bound; errors in words."""
        async with self._semaphore:
            server = min(range(len(self.urls)), key=self._in_flight.__getitem__)
            self._in_flight[server] += 1
            try:
                return server, await make(self._client(server))
            except BackendError:
                raise
            except Exception as exc:
                raise self._explain(exc, self.urls[server]) from exc
            finally:
                self._in_flight[server] -= 1

    # -- option scores -------------------------------------------------------------------------

    async def _option_scores(self, request: Request, messages: list[dict], extra: dict) -> list[float] | None:
        if self.option_scores == "options":
            scores = extra.get("option_logprobs")
            return [float(s) for s in scores] if scores and len(scores) == len(request.choices) else None
        if self.option_scores != "prompt_logprobs":
            return None
        try:
            return list(await asyncio.gather(*(self._score_option(messages, c) for c in request.choices)))
        except _NoScores as exc:
            self.option_scores, self.no_scores_reason = "none", str(exc)
            return None

    async def _score_option(self, messages: list[dict], option: str) -> float:
        """vLLM: the option as the assistant's reply, echoed with its prompt log-probabilities."""
        body = {"echo": True, "add_generation_prompt": False, "continue_final_message": True, "prompt_logprobs": 0}
        try:
            _, response = await self._call(
                lambda client: client.chat.completions.create(
                    model=self.model_id, messages=[*messages, {"role": "assistant", "content": option}],
                    max_completion_tokens=1, temperature=0.0, extra_body=body,
                )
            )
        except BackendError as exc:
            if isinstance(exc.__cause__, _bad_request_types()):
                raise _NoScores(f"the server refused prompt_logprobs ({exc})") from exc
            raise
        entries = (response.model_extra or {}).get("prompt_logprobs")
        if not entries:
            raise _NoScores("the server returned no prompt_logprobs")
        return tail_mean_logprob(entries, option)

    def _why_no_scores(self) -> str:
        if self.option_scores == "none" and self.no_scores_reason is None:
            return "option scoring is off (option_scores=none)"
        return f"no option log-probabilities from {self.served.id if self.served else 'the server'}: {self.no_scores_reason or 'the server returned none'}"

    # -- errors --------------------------------------------------------------------------------

    def _explain(self, exc: Exception, url: str) -> BackendError:
        """One line a user can act on, for any failure of the client."""
        import openai

        if isinstance(exc, openai.APIConnectionError):
            return BackendError(f"openai: server {url} not reachable ({type(exc).__name__}: {_first_line(exc)}); is it running?")
        if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
            return BackendError(f"openai: {url} refused the API key ({exc.status_code}); put the right key in ${self.api_key_env}")
        message = _message(exc)
        if isinstance(exc, openai.NotFoundError) and "model" in message.lower():
            return BackendError(f"openai: model {self.model_id!r} is not served at {url} ({message})")
        if isinstance(exc, openai.BadRequestError) and "audio" in message.lower():
            return BackendError(f"openai: model {self.model_id!r} at {url} does not take this audio ({message})")
        if isinstance(exc, openai.APIStatusError):
            return BackendError(f"openai: {url} answered {exc.status_code}: {message}")
        return BackendError(f"openai: request to {url} failed ({type(exc).__name__}: {_first_line(exc)})")


class _NoScores(Exception):
    """The server cannot score options; the run continues without confidences."""


def tail_mean_logprob(entries: list, text: str) -> float:
    """Mean log-probability of the prompt's last tokens that spell `text` (vLLM's prompt_logprobs layout).

    Each entry is None (the first token) or {token_id: {"logprob", "rank", "decoded_token"}}; with
    prompt_logprobs=0 it holds the prompt's own token only.
    """
    target, spelled, values = text.strip(), "", []
    for entry in reversed(entries):
        if not entry:
            break
        token = next(iter(entry.values()))
        spelled = (token.get("decoded_token") or "") + spelled
        values.append(float(token["logprob"]))
        if len(spelled.strip()) >= len(target):
            break
    if spelled.strip() != target:
        raise _NoScores(f"the prompt's last tokens spell {spelled.strip()!r}, not the option {target!r}")
    return sum(values) / len(values)


def wav_base64(samples: np.ndarray) -> str:
    """A clip as base64 WAV: 32-bit float at 16 kHz, so no sample changes on the way."""
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.float32), SAMPLE_RATE, format="WAV", subtype="FLOAT")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _bad_request_types() -> tuple[type, ...]:
    import openai

    return (openai.BadRequestError, openai.UnprocessableEntityError)


def _message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return _first_line(inner["message"])
        if isinstance(body.get("detail"), str):
            return _first_line(body["detail"])
    return _first_line(exc)


def _first_line(value) -> str:
    lines = str(value).strip().splitlines()
    return lines[0][:300] if lines else "no detail"
