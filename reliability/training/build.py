"""Rebuild a shipped adapter from scratch: import a training set and a dev set, sweep alpha, keep the best by dev-set RGI.

One call does what the shipped `lora:default` was made with: K@N samples of the training set (its IDK share at
every K per modality), one adapter per alpha (reliability.training.experiments.alpha_sweep), each evaluated on the
dev set beside the baseline and the training-free methods, the alpha with the best total RGI copied with its full
card into the shipped adapters folder, and optionally one adapter per modality for the cross-modal RGI matrix.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from annotations import store
from reliability.backends.base import Backend
from reliability.datasets import import_dataset
from reliability.errors import ReliabilityError
from reliability.training import experiments
from reliability.training.adapters import CARD_FILE, SHIPPED_DIR, WEIGHTS_FILE, check_name, get_adapter, staged_folder
from reliability.training.config import TrainConfig
from reliability.training.idk_dataset import SamplingConfig, format_ratios

Say = Callable[[str], None]  # one line (or a small table) for the person running the build


@dataclass(frozen=True)
class BuildConfig:
    """What to rebuild from. CLI flags map to these fields."""

    train: str = field(default="", metadata={"help": "training set: a dataset JSON (audio paths relative to its folder)"})
    dev: str = field(default="", metadata={"help": "dev set: a dataset JSON, no clip shared with the training set"})
    name: str = field(default="default", metadata={"help": "the shipped adapter's name: the method lora:<name>"})
    k: int = field(default=5, metadata={"help": "K of K@N: the gold answer is the target when at least K of N samples are correct"})
    alphas: tuple[float, ...] = field(default=(2.0, 8.0, 32.0, 128.0), metadata={"help": "LoRA alphas of the sweep, from too small to learn to over-conservative"})
    methods: str = field(default="idk,agent", metadata={"help": "training-free methods evaluated beside the baseline and the adapters"})
    transfer: bool = field(default=False, metadata={"help": "also train one adapter per modality at the chosen alpha and print the 3x3 RGI matrix"})
    out: str = field(default="", metadata={"help": "folder the adapter is written to (default: the lab's shipped adapters, reliability/adapters/)"})
    max_mb: float = field(default=20.0, metadata={"help": "largest weights file shipped; above it the weights are stored in bfloat16"})
    batch_size: int = field(default=8, metadata={"help": "items per backend call while evaluating"})

    def __post_init__(self):
        if not self.train or not self.dev:
            raise ValueError("both a training set and a dev set are needed")
        if not self.alphas:
            raise ValueError("give at least one alpha")
        check_name(self.name)


@dataclass
class BuildResult:
    """The shipped adapter and every figure behind it."""

    name: str
    path: str
    alpha: float
    sweep: experiments.ExperimentResult
    methods: list[dict[str, Any]]  # the training-free methods against the baseline on the dev set
    transfer: experiments.ExperimentResult | None
    card: dict[str, Any]


def build_adapter(
    db: sqlite_utils.Database,
    backend: Backend,
    config: BuildConfig,
    sampling: SamplingConfig = SamplingConfig(),
    training: TrainConfig = TrainConfig(),
    adapters_dir: str | os.PathLike | None = None,
    samples_dir: str | os.PathLike | None = None,
    progress: experiments.Progress | None = None,
    say: Say = print,
) -> BuildResult:
    """Import both sets, sweep alpha, evaluate on the dev set, ship the best adapter under `config.name` with its card.

    :param adapters_dir: where the sweep's adapters are trained (the user's adapters folder by default); cached there,
      so a re-run with the same settings trains nothing again
    """
    train_name, train_hash = _import(db, config.train)
    dev_name, dev_hash = _import(db, config.dev)
    if train_name == dev_name:
        raise ReliabilityError(f"the training set and the dev set are both named {train_name!r}; give them different file names")
    shared = _shared_clips(db, train_name, dev_name)
    if shared:
        raise ReliabilityError(f"{len(shared)} clip(s) are in both the training set and the dev set, e.g. {shared[0]}")
    exp = experiments.ExperimentConfig(dataset=train_name, eval_dataset=dev_name, k=config.k, alphas=config.alphas, batch_size=config.batch_size)
    sweep = experiments.alpha_sweep(db, backend, exp, sampling, training, adapters_dir, samples_dir, progress)
    say(f"IDK share of the training set's targets at every K@N ({sweep.train_items} items):\n{format_ratios(sweep.idk_ratios)}")
    say(f"alpha sweep on the dev set:\n{experiments.format_result(sweep)}")
    _, dev_items, _ = experiments.split_items(db, exp)
    wanted = [m.strip() for m in config.methods.split(",") if m.strip()]
    others = experiments.compare_methods(db, backend, dev_items, wanted, exp, sampling.condition, progress)
    say("training-free methods on the dev set:\n" + experiments.format_method_rows(others))
    alpha, chosen = best_alpha(sweep.rows)
    say(f"chosen: alpha {alpha:g} ({chosen}), the best total RGI on the dev set")
    transfer = None
    if config.transfer:
        transfer = experiments.transfer_matrix(
            db, backend, exp, sampling, dataclasses.replace(training, alpha=alpha), adapters_dir, samples_dir, progress
        )
        say(f"cross-modal transfer (one adapter per modality, alpha {alpha:g}):\n{experiments.format_result(transfer)}")
    source = get_adapter(chosen, adapters_dir)
    card = {
        **source.card,
        "name": config.name,
        "build": {
            "train": {"file": Path(config.train).name, "dataset": train_name, "sha256": train_hash},
            "dev": {"file": Path(config.dev).name, "dataset": dev_name, "sha256": dev_hash},
            "k": config.k,
            "n": sampling.n,
            "alphas": list(config.alphas),
            "alpha": alpha,
            "chosen_by": "total RGI on the dev set",
            "trained_as": chosen,
            "idk_ratios": sweep.idk_ratios,
            "dev_set": {"baseline": sweep.baseline, "alpha_sweep": sweep.rows, "methods": others},
            "transfer": transfer.rows if transfer else None,
            "notes": sweep.notes,
        },
    }
    path = ship(Path(source.path), Path(config.out) if config.out else SHIPPED_DIR, config.name, _jsonable(card), config.max_mb)
    say(f"shipped {path}: use it as lora:{config.name}")
    return BuildResult(config.name, str(path), alpha, sweep, others, transfer, json.loads((path / CARD_FILE).read_text()))


def best_alpha(rows: list[dict[str, Any]]) -> tuple[float, str]:
    """(alpha, adapter) of the sweep row with the highest total RGI; undefined RGI counts as lowest, ties go to the smaller alpha."""
    totals = [r for r in rows if r["group"] == experiments.TOTAL]
    if not totals:
        raise ReliabilityError("the sweep has no total rows: nothing was evaluated")
    best = max(totals, key=lambda r: (-math.inf if r["rgi"] is None else r["rgi"], -r["alpha"]))
    return best["alpha"], best["adapter"]


def ship(source: Path, root: Path, name: str, card: dict[str, Any], max_mb: float) -> Path:
    """Copy an adapter folder to `root/name` with `card`, atomically; weights over `max_mb` are stored in bfloat16."""
    with staged_folder(root / name, card) as staging:
        shutil.copy2(source / "adapter_config.json", staging / "adapter_config.json")
        card["weights_dtype"] = _copy_weights(source / WEIGHTS_FILE, staging / WEIGHTS_FILE, max_mb)
    return root / name


def _copy_weights(source: Path, target: Path, max_mb: float) -> str:
    """Copy the LoRA weights as they are, or in bfloat16 where float32 would exceed `max_mb` (rank 8 on every
    projection of the 1.5B text model is 37 MB in float32; the cascade runs that model in bfloat16 where the CPU has it)."""
    if source.stat().st_size <= max_mb * 1e6:
        shutil.copy2(source, target)
        return "as trained"
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(source))
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, str(target), metadata={"format": "pt"})
    if target.stat().st_size > max_mb * 1e6:
        raise ReliabilityError(f"the adapter's weights are {target.stat().st_size / 1e6:.0f} MB even in bfloat16 (limit {max_mb:g} MB); use a smaller --rank")
    return "bfloat16"


def _import(db: sqlite_utils.Database, path: str) -> tuple[str, str]:
    """Import a dataset JSON with its audio relative to its folder; (dataset name, the file's sha256)."""
    if not os.path.isfile(path):
        raise ReliabilityError(f"dataset file not found: {path}")
    report = import_dataset(db, path, audio_dir=os.path.dirname(os.path.abspath(path)))
    return report.dataset, hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _shared_clips(db: sqlite_utils.Database, train: str, dev: str) -> list[str]:
    """Audio files used by both datasets (by path), which would let the dev set score what the adapter trained on."""
    clips = {os.path.realpath(i.audio_path) for i in store.get_items(db, train) if i.audio_path}
    return sorted({os.path.realpath(i.audio_path) for i in store.get_items(db, dev) if i.audio_path} & clips)


def _jsonable(value: Any) -> Any:
    """±inf (RGI without conservatism) as the strings "inf"/"-inf": JSON has no infinity."""
    if isinstance(value, float) and math.isinf(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
