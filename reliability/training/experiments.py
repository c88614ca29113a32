"""Training experiments: the LoRA alpha sweep and the cross-modal transfer matrix, from K@N samples to ΔCon / ΔHum / RGI.

Both run the same pipeline: sample the training items N times (reliability.training.idk_dataset, cached in a
JSONL file), derive the K@N set, train one adapter per setting (reliability.training.lora; an adapter
whose card shows the same settings is reused), evaluate the baseline and every adapter on the
evaluation items (reliability.evaluate, cached in the lab database), and compare each adapter with the
baseline, paired by item. Re-running an experiment redoes only what is missing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlite_utils

from annotations import store
from reliability import metrics
from reliability.training.adapters import ensure_loaded, list_adapters, loaded_adapters
from reliability.backends.base import Backend
from reliability.errors import ReliabilityError
from reliability.evaluate import evaluate
from reliability.training.idk_dataset import SamplingConfig, TrainingExample, idk_ratios, kn_dataset, sample_items, samples_path
from reliability.methods import LORA_PREFIX
from reliability.types import MODALITIES, Decoding, Item

if TYPE_CHECKING:  # train_lora imports torch; this module is imported by the CLI and the app at start
    from reliability.training.config import TrainConfig

Progress = Callable[[int, int, str], None]  # (done, total, message) of the current stage; the message names the stage
BASELINE = "baseline"
TOTAL = metrics.TOTAL


@dataclass(frozen=True)
class ExperimentConfig:
    """Which items an experiment trains and evaluates on. CLI flags map to these fields."""

    dataset: str = field(default="", metadata={"help": "imported dataset the training items come from"})
    eval_dataset: str = field(default="", metadata={"help": "dataset to evaluate on (default: the training dataset)"})
    holdout: float = field(
        default=0.0,
        metadata={"help": "with one dataset: the share of its items kept out of training and evaluated on (0: train and evaluate on all, in-sample)"},
    )
    k: int = field(default=5, metadata={"help": "K of K@N: the gold answer is the target when at least K of N samples are correct"})
    modality: str = field(default="", metadata={"help": "train on items of this modality only (default: all); evaluation keeps every modality"})
    limit: int = field(default=0, metadata={"help": "use only the first N items of each dataset (0: all)"})
    alphas: tuple[float, ...] = field(default=(4.0, 16.0, 64.0, 256.0), metadata={"help": "LoRA alphas of the sweep"})
    normalize: str = field(default="total", metadata={"help": "ΔCon / ΔHum denominator: total (all items) or group"})
    batch_size: int = field(default=8, metadata={"help": "items per backend call while evaluating"})

    def __post_init__(self):
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout}")
        if self.eval_dataset and self.eval_dataset != self.dataset and self.holdout:
            raise ValueError("holdout splits one dataset; with a separate eval_dataset leave it at 0")


@dataclass
class ExperimentResult:
    """Rows of an experiment (plain dicts, rates as fractions), with what it trained and evaluated on."""

    kind: str  # "alpha_sweep", "lora" (one adapter, train_and_compare) or "transfer"
    rows: list[dict[str, Any]]
    adapters: list[str]  # adapter names, in row order
    idk_ratios: list[dict[str, Any]]  # of the training samples, every K@N (reliability.training.idk_dataset.idk_ratios)
    train_items: int  # training items actually used (with an answer key and, under "full", a clip)
    eval_items: int
    in_sample: bool  # True: evaluated on the very items it trained on
    baseline: dict[str, Any] = field(default_factory=dict)  # the baseline's score per group
    notes: list[str] = field(default_factory=list)


def split_items(db: sqlite_utils.Database, config: ExperimentConfig) -> tuple[list[Item], list[Item], bool]:
    """(training items, evaluation items, in_sample) as the config says; the holdout split is a stable hash of item ids."""
    limit = config.limit or None
    items = store.get_items(db, config.dataset, limit=limit)
    if config.eval_dataset and config.eval_dataset != config.dataset:
        train, held, in_sample = items, store.get_items(db, config.eval_dataset, limit=limit), False
    elif not config.holdout:
        train, held, in_sample = items, items, True
    else:
        held = [item for item in items if _unit(item.id) < config.holdout]
        train = [item for item in items if _unit(item.id) >= config.holdout]
        in_sample = False
        if not held or not train:
            raise ReliabilityError(f"holdout {config.holdout} of {len(items)} items leaves one side empty; use more items")
    if config.modality:
        train = [item for item in train if item.modality == config.modality]
    return train, held, in_sample


def alpha_sweep(
    db: sqlite_utils.Database,
    backend: Backend,
    config: ExperimentConfig,
    sampling: SamplingConfig = SamplingConfig(),
    training: TrainConfig | None = None,
    adapters_dir: str | Path | None = None,
    samples_dir: str | Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> ExperimentResult:
    """Train one adapter per alpha on the K@N set and compare each with the baseline (ΔCon, ΔHum, RGI per modality and total).

    :param training: LoRA settings (default TrainConfig()); its alpha and name are set per sweep point
    :param samples_dir: root of the K@N samples files (None: reliability.training.idk_dataset.default_samples_dir())
    :param stop: set it to stop after the current sampling or evaluation batch or training step (all saved)
    """
    return _sweep("alpha_sweep", config.alphas, db, backend, config, sampling, training, adapters_dir, samples_dir, progress, stop)


def train_and_compare(
    db: sqlite_utils.Database,
    backend: Backend,
    config: ExperimentConfig,
    sampling: SamplingConfig = SamplingConfig(),
    training: TrainConfig | None = None,
    adapters_dir: str | Path | None = None,
    samples_dir: str | Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> ExperimentResult:
    """One adapter with `training`'s settings (alpha included), compared with the baseline: a one-point sweep.

    The adapter gets a readable name ("<dataset>-<K>at<N>-alpha<alpha>") and is reused when one was trained with the same settings.
    """
    alpha = _training(training).alpha
    return _sweep("lora", (alpha,), db, backend, config, sampling, training, adapters_dir, samples_dir, progress, stop)


def _sweep(kind, alphas, db, backend, config, sampling, training, adapters_dir, samples_dir, progress, stop) -> ExperimentResult:
    train_items, eval_items, in_sample = split_items(db, config)
    records, examples, notes = _examples(backend, train_items, config, sampling, samples_dir, progress, stop)
    base = _training(training)
    names = []
    for i, alpha in enumerate(alphas):
        _check_stop(stop)
        setting = dataclasses.replace(base, alpha=float(alpha))
        label = f"train alpha {alpha:g} ({i + 1}/{len(alphas)})"
        names.append(_train(db, backend, examples, setting, sampling, adapters_dir, label, progress, stop))
    outcomes, groups, baseline = _evaluate(db, backend, eval_items, names, config, sampling.condition, adapters_dir, progress, stop)
    rows = []
    for alpha, name in zip(alphas, names):
        for group, row in _compare(baseline, outcomes[name], groups, config.normalize).items():
            rows.append({"alpha": float(alpha), "adapter": name, "group": group, **row})
    return ExperimentResult(
        kind, rows, names, idk_ratios(records), len(records), len(eval_items), in_sample, _baseline_scores(baseline, groups), notes
    )


def transfer_matrix(
    db: sqlite_utils.Database,
    backend: Backend,
    config: ExperimentConfig,
    sampling: SamplingConfig = SamplingConfig(),
    training: TrainConfig | None = None,
    adapters_dir: str | Path | None = None,
    samples_dir: str | Path | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> ExperimentResult:
    """Train one adapter per modality (sound, music, speech) and evaluate each on every modality: the RGI matrix.

    Rows: {"train", "eval", ...comparison}: `train` a modality trained on, `eval` a modality evaluated
    on or "total". A modality without training items gets no adapter (and a note).
    """
    train_items, eval_items, in_sample = split_items(db, config)
    records, examples, notes = _examples(backend, train_items, config, sampling, samples_dir, progress, stop)
    base = _training(training)
    trained: list[tuple[str, str]] = []  # (modality, adapter)
    present = [m for m in MODALITIES if any(e.item.modality == m for e in examples)]
    for m in MODALITIES:
        if m not in present:
            notes.append(f"no {m} training items: no {m} adapter")
    for i, modality in enumerate(present):
        _check_stop(stop)
        subset = [e for e in examples if e.item.modality == modality]
        label = f"train on {modality} ({i + 1}/{len(present)})"
        trained.append((modality, _train(db, backend, subset, base, sampling, adapters_dir, label, progress, stop)))
    outcomes, groups, baseline = _evaluate(db, backend, eval_items, [n for _, n in trained], config, sampling.condition, adapters_dir, progress, stop)
    rows = []
    for modality, name in trained:
        for group, row in _compare(baseline, outcomes[name], groups, config.normalize).items():
            rows.append({"train": modality, "eval": group, "adapter": name, **row})
    return ExperimentResult(
        "transfer", rows, [n for _, n in trained], idk_ratios(records), len(records), len(eval_items), in_sample,
        _baseline_scores(baseline, groups), notes,
    )


def format_result(result: ExperimentResult) -> str:
    """The result as text for the terminal: the rows (total and per modality), then notes."""
    key = "train" if result.kind == "transfer" else "alpha"
    header = [key, "eval" if key == "train" else "group", "n", "Acc", "Rel", "Rej", "ΔCon", "ΔHum", "RGI"]
    lines = [header]
    for r in result.rows:
        first = f"{r['alpha']:g}" if key == "alpha" else r["train"]
        group = r["group"] if key == "alpha" else r["eval"]
        lines.append([first, group, str(r["n"]), *(_pct(r[c]) for c in ("acc", "rel", "rej", "delta_con", "delta_hum")), r["rgi_label"]])
    text = _table(lines)
    facts = f"trained on {result.train_items} items, evaluated on {result.eval_items}" + (" (in-sample: the same items)" if result.in_sample else "")
    return "\n".join([facts, text, *(f"note: {n}" for n in result.notes)])


def format_method_rows(rows: list[dict[str, Any]]) -> str:
    """compare_methods' rows as a text table: per method, one line per group."""
    header = ["method", "group", "n", "Acc", "Rel", "Rej", "ΔCon", "ΔHum", "RGI"]
    lines = [header] + [
        [r["method"], r["group"], str(r["n"]), *(_pct(r[c]) for c in ("acc", "rel", "rej", "delta_con", "delta_hum")), r["rgi_label"]]
        for r in rows
    ]
    return _table(lines)


def _table(lines: list[list[str]]) -> str:
    """Rows of cells as aligned text columns."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


# ---------------------------------------------------------------- stages


def _examples(backend, items, config: ExperimentConfig, sampling: SamplingConfig, samples_dir, progress, stop):
    """K@N samples of the training items (resumed from their file) and the K@N training set."""
    if not items:
        raise ReliabilityError(f"no training items in dataset {config.dataset!r}")
    if not 1 <= config.k <= sampling.n:
        raise ValueError(f"K must be between 1 and N={sampling.n}, got {config.k}")
    path = samples_path(samples_dir, config.dataset, backend, sampling)
    result = sample_items(backend, items, sampling, path, _stage(progress, f"sample {sampling.n} answers per item", stop))
    if not result.records:
        raise ReliabilityError(f"no usable training items in {config.dataset!r}: " + "; ".join(f"{i}: {r}" for i, r in result.skipped[:5]))
    notes = [f"{len(result.skipped)} training items skipped (e.g. {result.skipped[0][0]}: {result.skipped[0][1]})"] if result.skipped else []
    return result.records, kn_dataset(result.records, config.k), notes


def _train(db, backend, examples: Sequence[TrainingExample], setting, sampling: SamplingConfig, adapters_dir, label: str, progress, stop) -> str:
    """Train (or reuse) the adapter of these settings: an adapter whose card holds the same fingerprint of everything
    that shaped it is reused; a new one gets a readable name (reliability.training.lora.default_name), numbered when
    taken by a saved adapter, by runs in the notebook (whose cached answers came from another adapter of that name)
    or by an adapter the backend holds."""
    from reliability.training.lora import COMPLETE, dataset_summary, default_name, free_name, train_lora

    summary = dataset_summary(examples)
    fingerprint = _fingerprint(summary, sampling, setting, [e.item.id for e in examples], backend.describe().get("model_id"))
    saved = list_adapters(adapters_dir)
    same = [a for a in saved if not a.shipped and a.card.get("fingerprint") == fingerprint]
    if same and same[0].card.get("status") == COMPLETE:
        _stage(progress, label)(1, 1, f"reusing adapter {same[0].name}")
        return same[0].name
    # a stopped run's checkpoint is trained again under its own name
    answered = {r.method[len(LORA_PREFIX) :] for r in store.list_runs(db) if r.method.startswith(LORA_PREFIX)}
    taken = {a.name for a in saved} | answered | loaded_adapters(backend)
    name = same[0].name if same else free_name(default_name(summary, setting), taken)
    result = train_lora(
        backend, examples, dataclasses.replace(setting, name=name, overwrite=bool(same)), adapters_dir,
        _stage(progress, label), stop, provenance={"sampling": sampling.decoding().as_dict()}, fingerprint=fingerprint,
    )
    if result.status != COMPLETE:
        raise ReliabilityError(f"stopped while training {name}; a checkpoint was saved, run the experiment again to redo it")
    return name


def _evaluate(db, backend, items, adapters: Sequence[str], config: ExperimentConfig, condition: str, adapters_dir, progress, stop, methods: Sequence[str] = ()):
    """Outcomes of the baseline, of each adapter and of each other method on the evaluation items; (outcomes by
    adapter or method name, groups, baseline).

    The condition is the training set's: adapters trained without audio are evaluated without audio.
    """
    _check_stop(stop)
    ensure_loaded(backend, adapters, adapters_dir)
    names = [BASELINE, *(f"{LORA_PREFIX}{name}" for name in adapters), *methods]
    datasets = sorted({item.dataset for item in items})
    if len(datasets) != 1:
        raise ReliabilityError(f"evaluation items must come from one dataset, got {datasets}")
    result = evaluate(db, backend, items, names, Decoding(), config.batch_size, condition, _stage(progress, "evaluate baseline and adapters", stop))
    runs = store.run_outcomes(db, result.run_ids)
    wanted = {item.id for item in items}
    by_method = {}
    for method, run_id in zip([BASELINE, *adapters, *methods], result.run_ids):
        by_method[method] = {k: v for k, v in runs[run_id].outcomes.items() if k in wanted}
    groups = {item.id: item.modality for item in items}
    return by_method, groups, by_method.pop(BASELINE)


def compare_methods(
    db: sqlite_utils.Database,
    backend: Backend,
    items: Sequence[Item],
    methods: Sequence[str],
    config: ExperimentConfig,
    condition: str,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> list[dict[str, Any]]:
    """Training-free methods against the baseline on the evaluation items, as an experiment's rows: {"method", "group", ...}."""
    outcomes, groups, baseline = _evaluate(db, backend, items, [], config, condition, None, progress, stop, methods)
    return [
        {"method": method, "group": group, **row}
        for method in methods
        for group, row in _compare(baseline, outcomes[method], groups, config.normalize).items()
    ]


def _compare(baseline, outcomes, groups, normalize: str) -> dict[str, dict[str, Any]]:
    """Per group and total: the adapter's scores and its comparison with the baseline on the items both answered."""
    comparisons = metrics.compare_by_group(baseline, outcomes, groups, normalize)
    scores = metrics.by_group({k: v for k, v in outcomes.items() if k in baseline}, {k: groups[k] for k in outcomes if k in baseline})
    rows = {}
    for group, comp in comparisons.items():
        score = scores[group]
        rows[group] = {
            "n": comp.n, "acc": score.acc, "rel": score.rel, "rej": score.rej,
            "delta_con": comp.delta_con, "delta_hum": comp.delta_hum, "rgi": comp.rgi, "rgi_label": comp.rgi_label,
        }
    return rows


def _baseline_scores(baseline, groups) -> dict[str, Any]:
    return {g: {"n": s.n, "acc": s.acc, "rel": s.rel, "rej": s.rej} for g, s in metrics.by_group(baseline, groups).items()}


def _training(training: TrainConfig | None) -> TrainConfig:
    from reliability.training.config import TrainConfig

    return training if training is not None else TrainConfig()


def _fingerprint(summary, sampling: SamplingConfig, setting, item_ids, model_id) -> str:
    settings = {k: v for k, v in dataclasses.asdict(setting).items() if k not in ("name", "overwrite")}
    blob = repr((summary, sampling.decoding().as_dict(), sampling.condition, settings, sorted(item_ids), model_id))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _stage(progress: Progress | None, label: str, stop: threading.Event | None = None) -> Progress:
    """Progress of one stage, its message prefixed with the stage's label; with `stop`, a set stop ends the stage.

    Sampling and evaluation report after each batch is saved, so stopping there loses nothing.
    """

    def report(done: int, total: int, message: str) -> None:
        if progress is not None:
            progress(done, total, f"{label}: {message}")
        _check_stop(stop)

    return report


def _check_stop(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise ReliabilityError("experiment stopped")


def _unit(item_id: str) -> float:
    """A stable number in [0, 1) per item id, for the holdout split."""
    return int(hashlib.sha256(item_id.encode()).hexdigest()[:8], 16) / 16**8


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"
