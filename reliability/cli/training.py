"""Command-line side of training-based reliability: idk-dataset, train-lora, adapters, experiment (alpha-sweep, transfer), build-adapter.

`add_lora_commands(commands, common)` adds them to reliability.cli.main's parser; every config dataclass
field becomes a flag with its help text, so the flags and the configs cannot drift apart.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from reliability.cli.common import TqdmProgress, add_limit_arguments, backend_from_args, items_from_args, open_lab_db
from reliability.errors import NothingToAskError, ReliabilityError, skipped_line


def add_lora_commands(commands, common: argparse.ArgumentParser) -> None:
    """Add the training commands to the `python -m reliability` subparsers."""
    from reliability.training.build import BuildConfig
    from reliability.training.experiments import ExperimentConfig
    from reliability.training.idk_dataset import SamplingConfig
    from reliability.training.config import TrainConfig

    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", default=None, help="backend name (default: the lab's default backend)")
    backend.add_argument(
        "--backend-arg", action="append", default=[], metavar="KEY=VALUE",
        help="constructor argument of the backend, repeatable (e.g. model_id=..., device=cpu)",
    )
    backend.add_argument("--samples-dir", help="folder of K@N sample files (default: idk-samples/ in the user's data folder)")
    adapters = argparse.ArgumentParser(add_help=False)
    adapters.add_argument("--adapters-dir", help="folder of saved adapters (default: adapters/ in the user's data folder, or $RELIABILITY_ADAPTERS)")

    p = commands.add_parser(
        "idk-dataset",
        parents=[common, backend],
        help="sample N answers per item and report the IDK ratio of every K@N; export one as JSONL",
        description="Sample every item of a dataset N times with the baseline prompt on the bare model (one request per "
        "item; the samples share the prompt's prefill), judge them, and print the share of \"I don't know\" targets for "
        "every K@N per modality. Samples are kept in a file and resumed after an interruption.",
    )
    p.add_argument("--dataset", required=True, help="an imported dataset")
    add_limit_arguments(p)
    p.add_argument("--modality", help="only items of this modality (sound, music, speech)")
    add_config_arguments(p, SamplingConfig, "sampling", SAMPLING_FLAGS)
    p.add_argument("--k", type=int, help="with --export: the K of K@N to export (default: N)")
    p.add_argument("--export", metavar="PATH", help="write the K@N dataset as JSONL chat examples to PATH")
    p.set_defaults(handler=_idk_dataset)

    p = commands.add_parser(
        "train-lora",
        parents=[common, backend, adapters],
        help="train a LoRA adapter on a K@N IDK dataset (samples it first if needed)",
        description="Build (or reuse) the K@N samples of a dataset and train a LoRA adapter on the language model of the "
        "backend, loss on the reply only. Ctrl-C saves a checkpoint. For several GPUs run it under `accelerate launch` "
        "(docs/LORA.md).",
    )
    p.add_argument("--dataset", required=True, help="an imported dataset")
    add_limit_arguments(p)
    p.add_argument("--modality", help="train on items of this modality only (sound, music, speech)")
    p.add_argument("--k", type=int, default=5, help="K of K@N (default: 5)")
    add_config_arguments(p, SamplingConfig, "sampling", SAMPLING_FLAGS)
    add_config_arguments(p, TrainConfig, "train", {})
    p.set_defaults(handler=_train_lora)

    p = commands.add_parser("adapters", parents=[common, adapters], help="list saved LoRA adapters (methods lora:<name>)", description="List saved adapters with their cards.")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.set_defaults(handler=_adapters)

    experiment = commands.add_parser(
        "experiment", help="training experiments: alpha sweep, cross-modal transfer", description="Training experiments."
    ).add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, text in (
        ("alpha-sweep", "train one adapter per LoRA alpha and compare each with the baseline (ΔCon, ΔHum, RGI)"),
        ("transfer", "train one adapter per modality and evaluate each on every modality (RGI matrix)"),
    ):
        p = experiment.add_parser(kind, parents=[common, backend, adapters], help=text, description=text[0].upper() + text[1:] + ".")
        add_config_arguments(p, ExperimentConfig, "experiment", EXPERIMENT_FLAGS, skip=() if kind == "alpha-sweep" else ("alphas",))
        add_config_arguments(p, SamplingConfig, "sampling", SAMPLING_FLAGS)
        add_config_arguments(p, TrainConfig, "train", {}, skip=("name", "overwrite") + (("alpha",) if kind == "alpha-sweep" else ()))
        p.add_argument("--output", help="also write the rows as JSON to this file")
        p.add_argument("--figure", help="also write the figure as a standalone HTML page to this file")
        p.set_defaults(handler=_experiment)


    p = commands.add_parser(
        "build-adapter",
        parents=[common, backend, adapters],
        help="rebuild a shipped adapter from scratch (lora:default): K@N samples, alpha sweep on a dev set, the best alpha shipped",
        description="Import a training set and a dev set, sample the training set N times per item (printing the IDK share "
        "at every K per modality), train one LoRA adapter per alpha, evaluate each on the dev set beside the baseline and "
        "the training-free methods, and write the one with the best total RGI, with its card (data hashes, seeds, settings, "
        "base model hash, prompt version, every figure), into the shipped adapters folder. --transfer also prints the "
        "cross-modal RGI matrix. Everything is cached: a re-run trains and asks only what is missing.",
    )
    add_config_arguments(p, BuildConfig, "build", {"batch_size": "eval-batch-size"})
    add_config_arguments(p, SamplingConfig, "sampling", SAMPLING_FLAGS)
    add_config_arguments(p, TrainConfig, "train", {}, skip=("name", "overwrite", "alpha"))
    p.set_defaults(handler=_build_adapter)


# Flags whose field names would collide between configs on one command.
SAMPLING_FLAGS = {"seed": "sample-seed", "batch_size": "sample-batch-size", "max_new_tokens": "sample-max-new-tokens", "n": "n"}
EXPERIMENT_FLAGS = {"batch_size": "eval-batch-size", "limit": "limit", "k": "k"}


def add_config_arguments(parser: argparse.ArgumentParser, cls, tag: str, flags: dict[str, str], skip: tuple[str, ...] = ()) -> None:
    """One flag per dataclass field (--field-name, or the name in `flags`), help from the field's metadata."""
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + flags.get(f.name, f.name.replace("_", "-"))
        dest = f"{tag}__{f.name}"
        help_text = f"{f.metadata.get('help', '')} (default: {_shown(f.default)})"
        if isinstance(f.default, bool):
            parser.add_argument(flag, dest=dest, action="store_true", help=f.metadata.get("help", ""))
        elif isinstance(f.default, tuple):
            parser.add_argument(flag, dest=dest, type=_floats, default=f.default, metavar="A,B,...", help=help_text)
        else:
            parser.add_argument(flag, dest=dest, type=type(f.default), default=f.default, help=help_text)


def config_from_args(cls, args: argparse.Namespace, tag: str):
    """The config a parsed command line describes (fields without a flag keep their default)."""
    values = {f.name: getattr(args, f"{tag}__{f.name}") for f in dataclasses.fields(cls) if hasattr(args, f"{tag}__{f.name}")}
    try:
        return cls(**values)
    except ValueError as exc:
        raise ReliabilityError(str(exc)) from exc


# ---------------------------------------------------------------- handlers


def _idk_dataset(args) -> None:
    from reliability.training.idk_dataset import SamplingConfig, export_jsonl, format_ratios, idk_ratios, kn_dataset, sample_items, samples_path

    db = open_lab_db(args)
    items = items_from_args(db, args)
    sampling = config_from_args(SamplingConfig, args, "sampling")
    backend = _backend(args)
    path = samples_path(args.samples_dir, args.dataset, backend, sampling)
    progress = TqdmProgress("item")
    try:
        result = sample_items(backend, items, sampling, path, progress)
    finally:
        progress.close()
    if not result.records:
        raise NothingToAskError(result.skipped)
    if result.skipped:
        print(f"warning: {skipped_line(result.skipped)}", file=sys.stderr)
    print(f"{len(result.records)} items ({result.sampled} sampled now); samples in {path}")
    print(format_ratios(idk_ratios(result.records)))
    if args.export:
        k = args.k or sampling.n
        examples = kn_dataset(result.records, k)
        print(f"wrote {export_jsonl(examples, args.export)} {k}@{sampling.n} examples to {args.export}")


def _train_lora(args) -> None:
    from reliability.training.idk_dataset import SamplingConfig, kn_dataset, load_samples, sample_items, samples_path
    from reliability.training.lora import TrainConfig, train_lora

    db = open_lab_db(args)
    items = items_from_args(db, args)
    sampling = config_from_args(SamplingConfig, args, "sampling")
    config = config_from_args(TrainConfig, args, "train")
    backend = _backend(args)
    path = samples_path(args.samples_dir, args.dataset, backend, sampling)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # several training processes must not sample into one file at once: sample first with idk-dataset
        wanted = {item.id for item in items}
        records = [r for r in load_samples(path) if r.item.id in wanted]
        if not records:
            raise ReliabilityError(f"no samples in {path}; run `python -m reliability idk-dataset` with the same settings first")
    else:
        progress = TqdmProgress("item")
        try:
            records = sample_items(backend, items, sampling, path, progress).records
        finally:
            progress.close()
    examples = kn_dataset(records, args.k)
    progress = TqdmProgress("step")
    try:
        result = train_lora(
            backend, examples, config, args.adapters_dir, progress, provenance={"sampling": sampling.decoding().as_dict(), "samples_file": str(path)}
        )
    finally:
        progress.close()
    card = result.card
    print(
        f"saved adapter {result.name} ({card['status']}) in {result.path}: {card['dataset']['examples']} examples, "
        f"{card['dataset']['idk_ratio']:.1%} IDK, {card['steps']} steps, final loss {_loss(card['final_loss'])}, {card['seconds']:.0f} s; "
        f"use it as the method lora:{result.name}"
    )


def _adapters(args) -> None:
    from reliability.training.adapters import default_adapters_dir, list_adapters

    found = list_adapters(args.adapters_dir)
    if args.json:
        print(json.dumps([{"name": a.name, "path": a.path, "card": a.card} for a in found], indent=2))
        return
    if not found:
        print(f"no adapters in {args.adapters_dir or default_adapters_dir()}")
    for a in found:
        card = a.card
        data = card.get("dataset", {})
        facts = (
            f"{card.get('base', {}).get('backend', '?')}/{card.get('base', {}).get('model_id', '?')}  "
            f"{data.get('k', '?')}@{data.get('n', '?')}  {'+'.join(data.get('modalities', {})) or '?'}  "
            f"alpha {card.get('hyperparameters', {}).get('alpha', '?')}  loss {card.get('final_loss', '?')}"
            if card else "no card (trained elsewhere)"
        )
        print(f"{a.method}  {card.get('status', '')}  {facts}")


def _experiment(args) -> None:
    from reliability.training import plots as experiment_plots
    from reliability.training import experiments
    from reliability.exports import write_text
    from reliability.training.idk_dataset import SamplingConfig
    from reliability.training.config import TrainConfig

    db = open_lab_db(args)
    config = config_from_args(experiments.ExperimentConfig, args, "experiment")
    sampling = config_from_args(SamplingConfig, args, "sampling")
    training = config_from_args(TrainConfig, args, "train")
    run = experiments.alpha_sweep if args.kind == "alpha-sweep" else experiments.transfer_matrix
    progress = _StageProgress()
    try:
        result = run(db, _backend(args), config, sampling, training, args.adapters_dir, args.samples_dir, progress)
    finally:
        progress.close()
    print(experiments.format_result(result))
    if args.output:
        data = {**dataclasses.asdict(result), "rows": [_json_row(r) for r in result.rows]}
        write_text(args.output, json.dumps(data, indent=2))
        print(f"wrote {len(result.rows)} rows to {args.output}")
    if args.figure:
        figure = experiment_plots.alpha_sweep_figure(result.rows) if args.kind == "alpha-sweep" else experiment_plots.transfer_heatmap(result.rows)
        write_text(args.figure, figure.to_html(include_plotlyjs=True, full_html=True))
        print(f"wrote the figure to {args.figure}")


def _build_adapter(args) -> None:
    from reliability.training.build import BuildConfig, build_adapter
    from reliability.training.config import TrainConfig
    from reliability.training.idk_dataset import SamplingConfig

    config = config_from_args(BuildConfig, args, "build")
    sampling = config_from_args(SamplingConfig, args, "sampling")
    training = config_from_args(TrainConfig, args, "train")
    db = open_lab_db(args)
    progress = _StageProgress()
    try:
        build_adapter(db, _backend(args), config, sampling, training, args.adapters_dir, args.samples_dir, progress, say=_say(progress))
    finally:
        progress.close()


def _say(progress: _StageProgress):
    """Print between progress bars: the current bar is closed first, so the text is not torn."""

    def say(text: str) -> None:
        progress.close()
        print(text, flush=True)

    return say


class _StageProgress:
    """One tqdm bar per experiment stage: a new bar whenever the stage label (before the first ':') changes."""

    def __init__(self):
        self.stage, self.bar = None, None

    def __call__(self, done: int, total: int, message: str) -> None:
        stage = message.split(":", 1)[0]
        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, TqdmProgress("step")
        self.bar(done, total, message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.stage, self.bar = None, None


def _backend(args):
    """The backend from --backend/--backend-arg; under `accelerate launch`, Qwen2-Audio goes on this process's GPU."""
    own_device = any(a.startswith(("device=", "device_map=")) for a in args.backend_arg)
    if args.backend == "qwen2-audio" and "LOCAL_RANK" in os.environ and not own_device:
        args.backend_arg = [*args.backend_arg, f"device=cuda:{os.environ['LOCAL_RANK']}"]
    return backend_from_args(args)


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc


def _shown(value: Any) -> str:
    return ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else str(value)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    """±inf RGI as the strings "inf"/"-inf": JSON has no infinity."""
    return {k: (str(v) if isinstance(v, float) and v in (float("inf"), float("-inf")) else v) for k, v in row.items()}
