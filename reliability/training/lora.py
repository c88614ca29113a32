"""LoRA SFT on a K@N IDK dataset: PEFT LoRA on the running backend's language model only, loss on the reply only.

The trainer sees a backend only through the training calls of the Backend interface (base.py).
The adapter learns on exactly the input the backend builds at inference: Qwen2-Audio's chat template
with the clip's audio slot and features, or the cascade's evidence prompt for its text model. It is
trained in place on the loaded model (no second copy), saved in standard PEFT format with a
`card.json`, then detached again, so the base model is left as it was; the LoRA method loads the saved
adapter onto the same running model by name ("lora:<name>").

Multi-GPU: the loop runs through `accelerate`, so `accelerate launch --config_file <yaml> -m reliability
train-lora ...` trains data-parallel (see docs/LORA.md); a plain run is one process as usual.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from reliability import prompts
from reliability.training.adapters import check_name, default_adapters_dir, loaded_adapters, staged_folder
from reliability.audio import for_model, load_audio
from reliability.backends import trainable_backends
from reliability.backends.base import Backend, adapters_coexist
from reliability.errors import AudioError, BackendError, ReliabilityError
from reliability.training.idk_dataset import FULL, TrainingExample
from reliability.training.config import TrainConfig
from reliability.types import Request

Progress = Callable[[int, int, str], None]  # (optimizer steps done, total steps, message)
IGNORE = -100  # label of positions the loss skips: the prompt and padding
CARD_VERSION = "lora-card-1"
COMPLETE, INTERRUPTED, STOPPED = "complete", "interrupted", "stopped"
@dataclass
class TrainResult:
    """A finished (or interrupted) training run."""

    name: str
    path: str  # the saved adapter folder
    card: dict[str, Any]
    losses: list[float]  # mean reply-token loss of each optimizer step
    status: str  # COMPLETE, INTERRUPTED (Ctrl-C; a checkpoint was saved) or STOPPED (stop event)


# ---------------------------------------------------------------- a row, as the backend encodes it


def target_reply(backend: Backend, example: TrainingExample) -> str:
    """The target as the backend says it at inference: IDK_REPLY, or its way of giving the gold answer."""
    if example.is_idk or example.item.answer not in example.item.choices:  # unanswerable (key IDK_REPLY) or free-form
        return prompts.IDK_REPLY if example.is_idk else example.item.answer
    return backend.choice_reply(example.item.choices, example.item.choices.index(example.item.answer))


def training_row(backend: Backend, request: Request, reply: str) -> dict[str, torch.Tensor]:
    """One training row: the backend's prompt + reply + end of turn; labels are IGNORE on the prompt."""
    tokenizer = backend.training_tokenizer()
    row = backend.training_prompt(request)
    reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"] + [turn_end_id(tokenizer)]
    prompt = row["input_ids"]
    row["input_ids"] = torch.cat([prompt, torch.tensor(reply_ids, dtype=prompt.dtype)])
    row["labels"] = torch.cat([torch.full_like(prompt, IGNORE), torch.tensor(reply_ids, dtype=prompt.dtype)])
    return row


def turn_end_id(tokenizer) -> int:
    """The token that ends an assistant turn: <|im_end|> in Qwen-style chat templates, else the tokenizer's eos."""
    vocab = tokenizer.get_vocab()
    return vocab["<|im_end|>"] if "<|im_end|>" in vocab else tokenizer.eos_token_id


# ---------------------------------------------------------------- the loss


class ReplyLoss(torch.nn.Module):
    """Mean cross-entropy over the reply tokens of a left-padded batch.

    Logits are computed only from the first reply position on: the output projection over a
    150k-token vocabulary would otherwise cost as much as a quarter of the forward pass on the prompt.
    With LoRA on the top layers only, a text-only batch runs those layers alone on the hidden states
    entering them, kept from an earlier pass (FrozenLayers).
    """

    def __init__(self, base, top: int = 0):
        super().__init__()
        self.base = base
        self.frozen = FrozenLayers(base.model, top) if top and hasattr(getattr(base, "model", None), "layers") else None

    def forward(self, input_ids, attention_mask, labels, **audio) -> torch.Tensor:
        # positions count from each row's first real token, as generate does for left-padded prompts
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        if self.frozen is not None and not audio:
            hidden = self.frozen(input_ids, attention_mask, positions)
        else:
            hidden = self.base.model(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False, **audio
            ).last_hidden_state  # (B, T, H)
        first = int((labels != IGNORE).int().argmax(-1).min())  # earliest reply token of any row
        assert first > 0, f"a row has no prompt before its reply (first label at {first})"
        logits = self.base.get_output_embeddings()(hidden[:, first - 1 : -1]).float()  # (B, T-first, V)
        targets = labels[:, first:]  # token t is predicted at position t-1
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


class _Entered(Exception):
    """Raised by the pre-hook of the first trained layer to end a pass there, carrying the layer's input."""


class FrozenLayers:
    """The decoder's top layers run alone on the hidden states entering them, which are computed once per batch.

    LoRA on the top `top` layers leaves the layers below frozen and without LoRA, so their output for a
    batch never changes: it is computed once, without a graph, and kept (in memory, for this process), so
    the sweep's adapters and the per-modality ones, trained on the same rows, skip those layers. On the
    1.5B default with the top 4 of 28 layers trained, an example then cost 2.4-2.8 s on 2 CPU cores,
    against 4.5 s while its frozen part was computed and 9.7 s with every layer trained.
    """

    kept: dict[tuple, torch.Tensor] = {}  # (model, first trained layer, batch digest) -> its hidden states
    limit = 2 << 30  # bytes kept at most; batches past it are recomputed each time

    def __init__(self, decoder, top: int):
        self.decoder = decoder
        self.start = len(decoder.layers) - top

    def __call__(self, input_ids, attention_mask, positions) -> torch.Tensor:
        key = (id(self.decoder), self.start, hashlib.sha1(input_ids.cpu().numpy().tobytes() + attention_mask.cpu().numpy().tobytes()).hexdigest())
        hidden = self.kept.get(key)
        if hidden is None:
            hidden = self._entering(input_ids, attention_mask, positions)
            if sum(h.numel() * h.element_size() for h in self.kept.values()) < self.limit:
                self.kept[key] = hidden
        layers = self.decoder.layers
        self.decoder.layers = torch.nn.ModuleList(layers[self.start :])
        try:
            return self.decoder(
                inputs_embeds=hidden, attention_mask=attention_mask, position_ids=positions, use_cache=False
            ).last_hidden_state
        finally:
            self.decoder.layers = layers

    def _entering(self, input_ids, attention_mask, positions) -> torch.Tensor:
        """The hidden states entering the first trained layer: a pass without a graph, ended by a pre-hook there."""

        def stop(module, args, kwargs):
            raise _Entered(args[0] if args else kwargs["hidden_states"])

        handle = self.decoder.layers[self.start].register_forward_pre_hook(stop, with_kwargs=True)
        try:
            with torch.no_grad():
                self.decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=False)
        except _Entered as entered:
            return entered.args[0].detach()
        finally:
            handle.remove()
        raise BackendError("the language model's forward pass never reached its decoder layers")


def collate(rows: Sequence[dict[str, torch.Tensor] | None], pad_id: int) -> dict[str, torch.Tensor] | None:
    """Left-pad rows into a batch (replies end flush right, where the loss reads them); None rows are dropped."""
    rows = [r for r in rows if r is not None]
    if not rows:
        return None
    width = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        input_ids[i, width - n :] = r["input_ids"]
        attention[i, width - n :] = 1
        labels[i, width - n :] = r["labels"]
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    # the audio encoder takes one feature row per clip, in the order the clips' slots appear
    with_audio = [r for r in rows if "input_features" in r]
    if with_audio:
        batch["input_features"] = torch.stack([r["input_features"] for r in with_audio])
        batch["feature_attention_mask"] = torch.stack([r["feature_attention_mask"] for r in with_audio])
    return batch


class _Rows(Dataset):
    """Training rows encoded on demand (a clip's features are large); a row over max_length is None."""

    def __init__(self, backend: Backend, examples: Sequence[TrainingExample], max_length: int):
        self.backend, self.examples, self.max_length = backend, list(examples), max_length
        self.too_long: set[str] = set()

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int):
        example = self.examples[index]
        row = training_row(self.backend, request_for(example), target_reply(self.backend, example))
        if len(row["input_ids"]) > self.max_length:
            self.too_long.add(example.item.id)
            return None
        return row


def request_for(example: TrainingExample) -> Request:
    """The inference request of an example: the baseline prompt, its choices and, under "full", the clip as the model hears it."""
    if example.condition != FULL:
        return Request(example.messages, choices=example.item.choices)
    try:
        clip = load_audio(example.item.audio_path)
    except AudioError as exc:
        raise ReliabilityError(f"item {example.item.id!r}: cannot train on it: {exc}") from exc
    return Request(example.messages, for_model(clip)[0], choices=example.item.choices, audio_hash=clip.hash)


# ---------------------------------------------------------------- training


def train_lora(
    backend: Backend,
    examples: Sequence[TrainingExample],
    config: TrainConfig = TrainConfig(),
    adapters_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    provenance: dict[str, Any] | None = None,
    fingerprint: str | None = None,
) -> TrainResult:
    """Train a LoRA adapter on `examples` in place on the backend's model, save it, and detach it again.

    :param adapters_dir: where `<name>/` is written (default: reliability.training.adapters.default_adapters_dir())
    :param progress: called with (step, total steps, message with the loss) after every optimizer step
    :param stop: set it (e.g. from the app) to end after the current step; the adapter is saved as a checkpoint
    :param provenance: extra facts for the card's "dataset" entry (e.g. the sampling settings)
    :param fingerprint: a hash of every setting that shaped the adapter, kept in the card so a caller can find it again
    Ctrl-C saves the adapter trained so far (card status "interrupted") and re-raises KeyboardInterrupt.
    The saved adapter is then loadable with `backend.load_adapter(path, name)` / reliability.training.adapters.ensure_loaded.
    """
    from accelerate import Accelerator
    from peft import LoraConfig

    if not examples:
        raise ReliabilityError("no training examples")
    summary = dataset_summary(examples)
    name = check_name(config.name or default_name(summary, config))
    root = Path(adapters_dir) if adapters_dir is not None else default_adapters_dir()
    folder = root / name
    if folder.exists() and not config.overwrite:
        raise ReliabilityError(f"an adapter {name!r} already exists in {root}; choose another name or overwrite it")
    if not backend.supports_training:
        raise BackendError(f"backend {backend.name!r} cannot be trained; trainable backends: {', '.join(trainable_backends())}")
    model = backend.training_model()
    if name in loaded_adapters(backend):
        raise ReliabilityError(f"an adapter {name!r} is loaded in the running backend; choose another name")
    report = progress or (lambda done, total, message: None)
    accelerator = Accelerator()
    targets = backend.lora_targets(config.layers)
    peft_config = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=targets, bias="none", task_type="CAUSAL_LM"
    )
    torch.manual_seed(config.seed)  # the LoRA A matrices are drawn from the global generator, and dropout too
    previous = backend.adapter
    module, detach = _attach(backend.adapter_host(), name, peft_config)
    start = time.perf_counter()
    losses: list[float] = []
    status = COMPLETE
    try:
        params = _only_lora_trainable(model, name)
        rows = _Rows(backend, examples, config.max_length)
        pad_id = backend.training_tokenizer().pad_token_id
        loader = DataLoader(
            rows, batch_size=config.batch_size, shuffle=True, generator=torch.Generator().manual_seed(config.seed),
            collate_fn=lambda batch: collate(batch, pad_id),
        )
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
        # the backend already placed the model (one device, or spread with device_map): accelerate must not move it
        loss_fn, optimizer, loader = accelerator.prepare(
            ReplyLoss(model, config.layers), optimizer, loader, device_placement=[False, False, False]
        )
        autocast = _autocast(config.precision, model.get_input_embeddings().weight.device)
        per_epoch = math.ceil(len(loader) / config.grad_accum)
        total = config.epochs * per_epoch
        model.train()
        # once the loss is near 0, squared gradients in AdamW fall below float32's normal range, and
        # denormal arithmetic slowed CPU steps about 7x; flushing them to zero costs no accuracy here
        torch.set_flush_denormal(True)
        report(0, total, f"training {name}: {len(examples)} examples, {total} steps")
        pending: list[float] = []
        try:
            for epoch in range(config.epochs):
                for index, batch in enumerate(loader):
                    if batch is not None:
                        with autocast:
                            loss = loss_fn(**backend.training_inputs(batch))
                        # the mean over the step's forward passes; the epoch's last step may have fewer
                        window = min(config.grad_accum, len(loader) - index // config.grad_accum * config.grad_accum)
                        accelerator.backward(loss / window)
                        pending.append(float(loss.detach()))
                    if (index + 1) % config.grad_accum and index + 1 != len(loader):
                        continue
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    if pending:
                        losses.append(sum(pending) / len(pending))
                    pending = []
                    step = epoch * per_epoch + math.ceil((index + 1) / config.grad_accum)
                    report(step, total, f"epoch {epoch + 1}/{config.epochs}, step {step}/{total}, loss {_last(losses)}")
                    if stop is not None and stop.is_set():
                        status = STOPPED
                        break
                if status == STOPPED:
                    break
        except KeyboardInterrupt:
            status = INTERRUPTED
        model.eval()
        card = make_card(backend, name, config, targets, summary, losses, status, time.perf_counter() - start, len(rows.too_long), provenance)
        if fingerprint:
            card["fingerprint"] = fingerprint
        if accelerator.is_main_process:
            save_adapter(module, name, folder, card, backend.model_id)
        accelerator.wait_for_everyone()
    finally:
        torch.set_flush_denormal(False)  # PyTorch's default, for the inference that follows
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)  # the backend only ever runs inference
        detach()
        backend.set_adapter(previous)
    if status == INTERRUPTED:
        raise KeyboardInterrupt(f"training interrupted; checkpoint saved in {folder}")
    return TrainResult(name, str(folder), card, losses, status)


def _attach(holder, name: str, peft_config):
    """Add a new trainable adapter `name` to the model; returns (the module holding it, a function that removes it).

    Three cases, matching how the backends hold adapters: a PeftModel (Qwen2-Audio after loading one),
    transformers' own adapter support (the cascade after loading one), or a bare model, which is wrapped
    for training and unwrapped after, leaving the very same modules it had.
    """
    from peft import PeftModel, get_peft_model
    from peft.tuners.tuners_utils import cast_adapter_dtype

    if isinstance(holder, PeftModel):
        holder.add_adapter(name, peft_config)
        holder.set_adapter(name)
        return holder, lambda: _quietly(holder.delete_adapter, name)
    if getattr(holder, "_hf_peft_config_loaded", False):
        _quietly(holder.add_adapter, peft_config, adapter_name=name)
        # PEFT's own paths keep LoRA weights in float32 on a bfloat16 base; transformers' add_adapter makes
        # them bfloat16, where AdamW's small updates would round away
        cast_adapter_dtype(holder, name)
        holder.enable_adapters()  # the backend may have switched adapters off for a baseline call
        holder.set_adapter(name)
        return holder, lambda: _quietly(holder.delete_adapter, name)
    wrapped = get_peft_model(holder, peft_config, adapter_name=name)
    return wrapped, wrapped.unload


def _quietly(fn, *args, **kwargs):
    with adapters_coexist():
        return fn(*args, **kwargs)


def _autocast(precision: str, device: torch.device):
    """bf16 autocast for the forward pass where asked (or, with "auto", where the hardware runs bf16 matmuls fast).

    On a 2-core AVX512-BF16 CPU this cut a 0.5B model's training step by about a third; the frozen
    weights and the float32 LoRA weights are cast per matmul, so nothing stored changes precision.
    """
    if precision == "auto":
        if device.type == "cuda":
            use = torch.cuda.is_bf16_supported()
        else:
            use = device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    else:
        use = precision == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use)


def _only_lora_trainable(base, name: str) -> list[torch.nn.Parameter]:
    """Freeze everything but the new adapter's LoRA matrices; returns those."""
    mine = re.compile(rf"\.lora_[AB]\.{re.escape(name)}\.weight$")
    params = []
    for pname, param in base.named_parameters():
        param.requires_grad_(bool(mine.search(pname)))
        if param.requires_grad:
            params.append(param)
    if not params:
        raise BackendError(f"the adapter {name!r} has no LoRA parameters; target_modules matched nothing")
    return params


def save_adapter(module, name: str, folder: Path, card: dict[str, Any], base_model: str) -> None:
    """Write adapter_config.json + adapter_model.safetensors (PEFT's format) and card.json, atomically.

    Keys are written as PeftModel.save_pretrained writes them ("base_model.model." + module path), also
    when the adapter sits in transformers' own adapter support, so PeftModel.from_pretrained and
    transformers' load_adapter both read it.
    """
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import save_file

    state = get_peft_model_state_dict(module, adapter_name=name)
    prefix = "" if isinstance(module, PeftModel) else "base_model.model."
    state = {prefix + k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    config = copy.deepcopy(module.peft_config[name])
    config.base_model_name_or_path = base_model
    config.inference_mode = True
    with staged_folder(folder, card) as staging:
        save_file(state, str(staging / "adapter_model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(str(staging))


def dataset_summary(examples: Sequence[TrainingExample]) -> dict[str, Any]:
    """What the card records about the training set: source datasets, K@N, modalities, IDK share, condition."""
    ks, ns = {e.k for e in examples}, {e.n for e in examples}
    if len(ks) != 1 or len(ns) != 1:
        raise ReliabilityError(f"examples mix K@N settings (K {sorted(ks)}, N {sorted(ns)}); train on one K@N dataset")
    modalities: dict[str, int] = {}
    for e in examples:
        modalities[e.item.modality] = modalities.get(e.item.modality, 0) + 1
    idk = sum(e.is_idk for e in examples)
    return {
        "hash": examples_hash(examples),
        "datasets": sorted({e.item.dataset for e in examples}),
        "k": ks.pop(),
        "n": ns.pop(),
        "modalities": dict(sorted(modalities.items())),
        "condition": sorted({e.condition for e in examples}),
        "examples": len(examples),
        "idk": idk,
        "idk_ratio": idk / len(examples),
    }


def examples_hash(examples: Sequence[TrainingExample]) -> str:
    """12 hex digits identifying a training set: each example's item, prompt, target and condition, in any order."""
    rows = sorted(json.dumps([e.item.dataset, e.item.id, e.messages, e.target, e.condition, e.item.audio_path], sort_keys=True) for e in examples)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:12]


def default_name(summary: dict[str, Any], config: TrainConfig) -> str:
    """A readable name, e.g. "mmau-5at5-sound-alpha16": the dataset, K@N, the modality when only one, alpha, and the
    rank only when it is not the default one."""
    parts = ["+".join(summary["datasets"]), f"{summary['k']}at{summary['n']}"]
    if len(summary["modalities"]) == 1:
        parts.append(next(iter(summary["modalities"])))
    parts.append(f"alpha{config.alpha:g}")
    if config.rank != TrainConfig.rank:
        parts.append(f"r{config.rank}")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(parts))[:72].lstrip("._-") or "adapter"


def free_name(name: str, taken: set[str]) -> str:
    """`name`, or `name-2`, `name-3`, ... : the first not in `taken`."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def make_card(
    backend: Backend,
    name: str,
    config: TrainConfig,
    targets: str,
    summary: dict[str, Any],
    losses: Sequence[float],
    status: str,
    seconds: float,
    skipped: int,
    provenance: dict[str, Any] | None,
) -> dict[str, Any]:
    """The adapter's card: what it was trained from, how, and how it ended."""
    return {
        "version": CARD_VERSION,
        "name": name,
        "status": status,
        "base": backend.adapter_base(),
        "dataset": {**summary, **(provenance or {})},
        "hyperparameters": {k: v for k, v in asdict(config).items() if k not in ("name", "overwrite")},
        "target_modules": targets,
        "steps": len(losses),
        "final_loss": losses[-1] if losses else None,
        "losses": [round(x, 5) for x in losses],
        "skipped_too_long": skipped,
        "seconds": round(seconds, 1),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _last(losses: Sequence[float]) -> str:
    return f"{losses[-1]:.4f}" if losses else "-"
