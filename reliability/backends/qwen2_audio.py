"""Qwen2-Audio through transformers: batched chat generation with audio, option log-probabilities, LoRA adapters.

The same code runs Qwen/Qwen2-Audio-7B-Instruct on a GPU and the tiny random model of
`tests/tiny.py` on a CPU in the tests. torch, transformers and peft are imported here only.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch

from reliability.audio import MODEL_MAX_SECONDS, SAMPLE_RATE, pad_to_min
from reliability.backends.base import Backend, with_clip_part
from reliability.errors import BackendError, UnknownNameError
from reliability.types import Decoding, Generation, Request

DEFAULT_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"
# the chat template counts any content item with an "audio_url" key as one clip; the value is never read
AUDIO_ITEM = {"type": "audio", "audio_url": "request.audio"}


class Qwen2AudioBackend(Backend):
    """Qwen2-Audio (or any checkpoint with its processor and chat template) answering chat prompts.

    Option scores: `option_logprobs[i]` is the mean per-token log-probability of `choices[i]`'s
    tokens as the assistant's reply, given the prompt and clip; the end-of-turn token is not
    scored. The mean, not the sum, so that long options are not penalised for their length (mean
    scoring is what picked best in the offline trials of OFFLINE-MODELS.md).

    `self.hf` is the transformers model, `self.model` the module that runs (a `PeftModel` once an
    adapter is loaded) and `self.processor` its processor. The LoRA trainer trains `self.hf` on the
    inputs `encode` builds: the chat template with the clip's audio slot, and the clip's features.
    """

    name = "qwen2-audio"
    supports_adapters = True
    supports_training = True

    def __init__(
        self,
        model_id: str = DEFAULT_MODEL,
        device: str | None = None,
        dtype: str | torch.dtype | None = None,
        device_map: str | dict | None = None,
        adapter: str | None = None,
        batch_size: int = 8,
    ):
        """Load the processor and model.

        model_id: hub id (must be in the local cache when offline) or a folder saved with save_pretrained.
        device: "cuda" when available, else "cpu"; ignored when device_map is given.
        dtype: bfloat16 on GPU, float32 on CPU unless given (a torch.dtype or its name).
        device_map: e.g. "auto" to spread a large model over several GPUs (needs accelerate).
        adapter: folder of a saved PEFT adapter, loaded and activated under its folder name.
        batch_size: requests per generate call.
        """
        super().__init__(model_id)
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        self.dtype = dtype or (torch.bfloat16 if self.device.startswith("cuda") else torch.float32)
        self.batch_size = batch_size
        if _looks_local(model_id) and not Path(model_id).expanduser().is_dir():
            raise BackendError(f"qwen2-audio: no model folder at {model_id}")
        try:
            self.processor = AutoProcessor.from_pretrained(model_id)
            hf = Qwen2AudioForConditionalGeneration.from_pretrained(model_id, dtype=self.dtype, device_map=device_map)
        except (OSError, ValueError) as exc:
            raise BackendError(f"qwen2-audio: cannot load {model_id!r} ({type(exc).__name__}: {_first_line(exc)})") from exc
        if device_map is None:
            hf.to(self.device)
        self._adopt(hf)
        if adapter is not None:
            name = Path(adapter).name
            self.load_adapter(adapter, name)
            self.set_adapter(name)

    @classmethod
    def from_model(cls, hf, processor, model_id: str = "in-memory", batch_size: int = 8) -> "Qwen2AudioBackend":
        """A backend around a model already built in memory (e.g. random weights of a real shape, for
        benchmarks); device and dtype are the model's own."""
        backend = cls.__new__(cls)
        Backend.__init__(backend, model_id)
        backend.device, backend.dtype, backend.batch_size = str(hf.device), hf.dtype, batch_size
        backend.processor = processor
        backend._adopt(hf)
        return backend

    def _adopt(self, hf) -> None:
        # generate continues each row from its last position, so prompts must end flush right
        self.processor.tokenizer.padding_side = "left"
        self.hf = hf.eval()  # the transformers model; LoRA layers are injected into it in place
        self.model = self.hf
        self.adapters: dict[str, str] = {}  # name -> folder

    # --- generation ---------------------------------------------------------------------------

    def generate(self, requests: list[Request]) -> list[Generation]:
        """Answer each request; requests sharing decoding settings are batched together, and so is option scoring."""
        out: list[Generation | None] = [None] * len(requests)
        groups: dict[Decoding, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(request.decoding, []).append(i)
        with torch.inference_mode(), self._adapter_scope():
            for decoding, indices in groups.items():
                for chunk in self._chunks(indices):
                    for i, gen in zip(chunk, self._generate_batch([requests[i] for i in chunk], decoding)):
                        out[i] = gen
        scored = [i for i, request in enumerate(requests) if request.choices]
        for i, scores in zip(scored, self.score_options([requests[i] for i in scored])):
            out[i].option_logprobs = scores
        return out

    def score_options(self, requests: list[Request]) -> list[list[float]]:
        """Every request's choices scored (see the class docstring), `batch_size` requests per forward."""
        scores: list[list[float]] = []
        with torch.inference_mode(), self._adapter_scope():
            for chunk in self._chunks(list(range(len(requests)))):
                scores.extend(self._option_logprobs([requests[i] for i in chunk]))
        return scores

    def _chunks(self, indices: list[int]) -> list[list[int]]:
        return [indices[start : start + self.batch_size] for start in range(0, len(indices), self.batch_size)]

    def _generate_batch(self, requests: list[Request], decoding: Decoding) -> list[Generation]:
        inputs, metas = self.encode(requests)
        samples = decoding.num_samples if decoding.do_sample else 1  # greedy samples would all be equal
        # every knob that acts is set here: values left unset fall back to the checkpoint's
        # generation_config, and then to transformers' defaults, which include top_k=50 for sampling
        settings = dict(
            do_sample=decoding.do_sample,
            repetition_penalty=1.0,
            num_beams=1,
            max_new_tokens=decoding.max_new_tokens,
            num_return_sequences=samples,
            eos_token_id=self._stop_ids(),
            pad_token_id=self.processor.tokenizer.pad_token_id,
        )
        if decoding.do_sample:
            # top_k=0 switches top-k off; greedy runs leave these unset, which would only earn warnings
            settings.update(temperature=decoding.temperature, top_p=decoding.top_p, top_k=0)
        seeded = decoding.do_sample and decoding.seed is not None
        # fork_rng keeps the caller's global RNG state untouched by the seeded draw
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices, enabled=seeded):
            if seeded:
                torch.manual_seed(decoding.seed)
            ids = self.hf.generate(**inputs, **settings)  # (batch * samples, prompt + new)
        new = ids[:, inputs["input_ids"].shape[1] :]
        texts = [t.strip() for t in self.processor.batch_decode(new, skip_special_tokens=True)]
        gens = []
        for r, meta in enumerate(metas):
            mine = texts[r * samples : (r + 1) * samples]
            gens.append(Generation(texts=mine if decoding.do_sample else mine * decoding.num_samples, meta=meta))
        return gens

    def encode(self, requests: list[Request]):
        """The model's inputs for a batch (audio and no-audio rows may mix), and each row's meta.

        Returns (BatchFeature with input_ids (B, T), attention_mask (B, T) and, when any row has a clip,
        input_features (A, 128, 3000) and feature_attention_mask (A, 3000) for its A clips; list of dicts).
        """
        texts, audios, metas = [], [], []
        for request in requests:
            texts.append(self.prompt(request))
            meta = {}
            if request.audio is not None:
                samples, cut = _model_audio(request.audio)
                audios.append(samples)
                if cut:
                    meta["audio_cut"] = True  # the encoder sees only the first 30 s
            metas.append(meta)
        # `audio=`, not `audios=`: the processor silently drops an unknown keyword and then fails
        inputs = self.processor(
            text=texts, audio=audios or None, sampling_rate=SAMPLE_RATE, return_tensors="pt", padding=True
        )
        inputs = inputs.to(self.hf.get_input_embeddings().weight.device)
        if "input_features" in inputs:
            inputs["input_features"] = inputs["input_features"].to(self.dtype)
        return inputs, metas

    def prompt(self, request: Request) -> str:
        """The chat template's text for a request, ending with the assistant's turn opener."""
        return self.processor.apply_chat_template(conversation(request), add_generation_prompt=True, tokenize=False)

    def _stop_ids(self) -> list[int]:
        """End-of-sequence ids: the checkpoint's, plus <|im_end|> so a chat turn always stops."""
        eos = self.hf.generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        vocab = self.processor.tokenizer.get_vocab()
        if "<|im_end|>" in vocab and vocab["<|im_end|>"] not in ids:
            ids.append(vocab["<|im_end|>"])
        return ids

    # --- option scoring -----------------------------------------------------------------------

    def _option_logprobs(self, requests: list[Request]) -> list[list[float]]:
        """Each request's choices scored: the mean log-probability of the choice's tokens as the reply (end-of-turn not scored).

        The batch's prompts and clips are encoded in one left-padded prefill; then one forward runs every
        choice of every request, each row continuing a copy of its own prompt's cache, choices right-padded.
        """
        tokenizer = self.processor.tokenizer
        rows: list[tuple[int, list[int]]] = []  # (request index, choice token ids), in request then choice order
        for i, request in enumerate(requests):
            for choice in request.choices:
                ids = tokenizer(choice, add_special_tokens=False)["input_ids"]
                if not ids:
                    raise BackendError(f"qwen2-audio: an option has no tokens: {list(request.choices)}")
                rows.append((i, ids))
        inputs, _ = self.encode(requests)
        prompt_mask = inputs["attention_mask"]  # (B, P), left-padded
        device = prompt_mask.device
        prefix = self.hf.model(**inputs, position_ids=_positions(prompt_mask), use_cache=True)  # last_hidden_state (B, P, H)
        # built on the host and moved once: one copy per batch, not one per choice
        width = max(len(ids) for _, ids in rows)
        cont = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)  # (C, L), right-padded
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (C, L)
        for r, (_, ids) in enumerate(rows):
            cont[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
        # (C,): the request each row continues; a host index selects on any device, and a device_map may
        # spread the cache's layers over several
        owner = torch.tensor([i for i, _ in rows])
        cont, mask = cont.to(device), mask.to(device)
        first = self.hf.get_output_embeddings()(prefix.last_hidden_state[owner, -1:])  # (C, 1, V): predicts token 0
        cache = prefix.past_key_values
        cache.batch_select_indices(owner)
        attention = torch.cat([prompt_mask[owner], mask], dim=1)  # (C, P+L)
        positions = _positions(attention)[:, -width:]  # (C, L): each row goes on from its own prompt's end
        logits = self.hf(input_ids=cont, attention_mask=attention, position_ids=positions, past_key_values=cache).logits  # (C, L, V)
        # token t of a choice is predicted at position t-1; token 0 by the prompt's last position
        pred = torch.cat([first, logits[:, :-1].to(first.device)], dim=1).float()  # (C, L, V)
        cont, mask = cont.to(pred.device), mask.to(pred.device)  # the head's device, under a device_map
        # log-softmax of the picked token only: a full (C, L, V) log_softmax would double the memory at 150k vocab
        token_lp = (pred.gather(-1, cont.unsqueeze(-1)).squeeze(-1) - pred.logsumexp(-1)) * mask  # (C, L)
        means = (token_lp.sum(1) / mask.sum(1)).tolist()
        scores: list[list[float]] = [[] for _ in requests]
        for (i, _), value in zip(rows, means):
            scores[i].append(value)
        return scores

    # --- adapters -----------------------------------------------------------------------------

    def load_adapter(self, path: str, name: str) -> None:
        """Load a saved PEFT adapter under `name`; the base model is not reloaded and stays active."""
        from peft import PeftModel

        if not (Path(path) / "adapter_config.json").is_file():
            raise BackendError(f"qwen2-audio: no PEFT adapter (adapter_config.json) in {path}")
        if name in self.adapters:
            raise BackendError(f"qwen2-audio: an adapter named {name!r} is already loaded from {self.adapters[name]}")
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(path, adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.hf, path, adapter_name=name)
                self.model.eval()
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise BackendError(f"qwen2-audio: cannot load adapter {path} ({type(exc).__name__}: {_first_line(exc)})") from exc
        self.adapters[name] = str(path)

    def set_adapter(self, name: str | None) -> None:
        """Activate a loaded adapter by name, or the bare base model with None."""
        if name is not None and name not in self.adapters:
            raise UnknownNameError("adapter", name, list(self.adapters))
        self.adapter = name

    def _adapter_scope(self):
        """Apply `self.adapter` for one call: PEFT keeps one active adapter, None disables them all."""
        if not self.adapters:
            return contextlib.nullcontext()
        if self.adapter is None:
            return self.model.disable_adapter()
        self.model.set_adapter(self.adapter)
        return contextlib.nullcontext()

    def describe(self) -> dict:
        return {**super().describe(), "adapter_path": self.adapters.get(self.adapter) if self.adapter else None}

    # --- LoRA training ------------------------------------------------------------------------

    def training_model(self):
        return self.hf

    def adapter_host(self):
        return self.model

    def training_tokenizer(self):
        return self.processor.tokenizer

    def training_prompt(self, request: Request) -> dict[str, torch.Tensor]:
        """The processor's ids with the expanded audio slot, and the clip's log-mel features."""
        inputs, _ = self.encode([request])  # one row: no padding
        row = {"input_ids": inputs["input_ids"][0].cpu()}
        if "input_features" in inputs:
            row["input_features"] = inputs["input_features"][0].cpu()  # (128, 3000)
            row["feature_attention_mask"] = inputs["feature_attention_mask"][0].cpu()  # (3000,)
        return row

    def training_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = super().training_inputs(batch)
        if "input_features" in batch:
            batch["input_features"] = batch["input_features"].to(self.dtype)
        return batch


def conversation(request: Request) -> list[dict]:
    """Chat turns for the template: the clip, if any, opens the first user turn."""
    return with_clip_part(request, "qwen2-audio", dict(AUDIO_ITEM))


def _model_audio(samples: np.ndarray) -> tuple[np.ndarray, bool]:
    """The samples the encoder can take: float32, at most 30 s, padded past transformers' minimum."""
    limit = int(MODEL_MAX_SECONDS * SAMPLE_RATE)
    samples = np.asarray(samples, dtype=np.float32)
    return pad_to_min(samples[:limit]), len(samples) > limit


def _looks_local(model_id: str) -> bool:
    """A path rather than a hub id: hub ids are "owner/name", never absolute or relative paths."""
    return (
        os.path.isabs(model_id) or model_id.startswith((".", "~")) or model_id.count("/") > 1 or os.path.exists(model_id)
    )


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, counted from each row's first real token (as generate does)."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else "no detail"
