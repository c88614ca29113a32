"""Model-specific IDK training sets: sample each item's answer N times in one pass, then derive the K@N set for every K.

The paper's recipe (arXiv 2505.19294): ask each training question N times with sampling; the target
is the gold answer when at least K of the N samples are correct, else "I don't know". One sampling
pass serves every K from 1 to N, so the samples are what is stored (per item: the N texts, their
judged outcomes and the number correct); the K@N sets are derived from them on demand.

Samples are asked with the baseline prompt and no adapter, because the set must describe what the
bare model knows. They persist as JSONL, one record per item, appended batch by batch, so an
interrupted run resumes where it stopped. A backend that can share one prefill between the N samples
(both model backends do, via `Decoding.num_samples`) gets one request per item, not N.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability import prompts
from reliability.audio import for_model, load_audio
from reliability.backends.base import Backend
from reliability.errors import AudioError, ReliabilityError, UnknownNameError
from reliability.judge import JUDGE_VERSION, judge
from reliability.methods import Baseline
from reliability.types import MODALITIES, Decoding, Item, Outcome, Request

Progress = Callable[[int, int, str], None]  # (done, total, message), as in reliability.evaluate
FULL, NONE = "full", "none"  # with the clip, or the same prompt without audio (as in reliability.evaluate)
TOTAL = "total"
SAMPLES_VERSION = "idk-samples-2"  # bump when a record's fields or the sampling request change meaning
SAMPLES_ENV = "RELIABILITY_SAMPLES"


@dataclass(frozen=True)
class SamplingConfig:
    """How the N answers per item are drawn. CLI flags map to these fields (help in each field's metadata)."""

    n: int = field(default=5, metadata={"help": "answers sampled per item, the N of K@N (the paper uses 5)"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature; lower makes the N answers more alike"})
    top_p: float = field(default=0.9, metadata={"help": "nucleus sampling mass"})
    max_new_tokens: int = field(
        default=24,
        metadata={"help": "answer budget in tokens: '(B) ' plus the option fits for 999 in 1000 MMAU options; on a CPU every token costs all N samples"},
    )
    seed: int = field(default=0, metadata={"help": "seed of each batch's sampling, for a reproducible dataset"})
    batch_size: int = field(default=6, metadata={"help": "items per backend call (each item carries N samples)"})
    condition: str = field(default=FULL, metadata={"help": "full (with the clip) or none (the same prompt without audio)"})

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.condition not in (FULL, NONE):
            raise UnknownNameError("condition", self.condition, [FULL, NONE])

    def decoding(self) -> Decoding:
        """The decoding every sampling request uses: N samples sharing one prefill."""
        return Decoding(
            do_sample=True, temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens,
            num_samples=self.n, seed=self.seed,
        )


@dataclass
class SampledItem:
    """One item's N sampled answers, judged: the stored unit of an IDK dataset."""

    item: Item
    texts: list[str]  # the N replies, in sampling order
    outcomes: list[str]  # judged outcome of each reply: correct / wrong / idk
    backend: dict[str, Any]  # Backend.describe() of the model that answered (no adapter)
    decoding: dict[str, Any]  # Decoding.as_dict() of the sampling
    condition: str  # "full" or "none"
    messages: list[dict[str, str]]  # the exact prompt (the baseline's messages; the clip is added by the backend)
    prompt_version: str = prompts.PROMPT_VERSION
    judge_version: str = JUDGE_VERSION
    version: str = SAMPLES_VERSION

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def n_correct(self) -> int:
        return sum(o == Outcome.CORRECT.value for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["item"]["choices"] = list(self.item.choices)
        data["n_correct"] = self.n_correct  # redundant, for readers of the file
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SampledItem":
        data = dict(data)
        data.pop("n_correct", None)
        item = dict(data.pop("item"))
        item["choices"] = tuple(item["choices"])
        return cls(item=Item(**item), **data)


@dataclass(frozen=True)
class TrainingExample:
    """One supervised example of a K@N dataset: the baseline prompt about the item, and the target reply."""

    item: Item
    messages: list[dict[str, str]]  # the prompt, as the backend receives it at inference (without the clip)
    target: str  # the gold answer's text, or prompts.IDK_REPLY
    k: int
    n: int
    n_correct: int
    condition: str  # "full": the clip goes with the prompt; "none": no audio

    @property
    def is_idk(self) -> bool:
        return self.n_correct < self.k

    def chat(self) -> dict[str, Any]:
        """A JSONL chat record: messages ending with the assistant's target, plus the audio path and provenance."""
        return {
            "messages": [*self.messages, {"role": "assistant", "content": self.target}],
            "audio": self.item.audio_path if self.condition == FULL else None,
            "dataset": self.item.dataset,
            "item_id": self.item.id,
            "modality": self.item.modality,
            "k": self.k,
            "n": self.n,
            "n_correct": self.n_correct,
            "idk": self.is_idk,
        }


@dataclass
class SamplingResult:
    """What one sampling call produced: every record in item order, and the items left out with why."""

    records: list[SampledItem]
    sampled: int = 0  # items sampled now (the others came from the file)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)


def default_samples_dir() -> Path:
    """$RELIABILITY_SAMPLES, else `idk-samples/` in the user's data folder (beside the lab database)."""
    if os.environ.get(SAMPLES_ENV):
        return Path(os.environ[SAMPLES_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("reliability-lab")) / "idk-samples"


def samples_path(root: str | os.PathLike | None, dataset: str, backend: Backend, config: SamplingConfig) -> Path:
    """Where the samples of one (dataset, model, decoding, condition) live under `root` (None: default_samples_dir()).

    The file name hashes everything that changes the samples, so another temperature or model never
    mixes with an earlier pass, and the same settings always find (and resume) their file.
    """
    from annotations.store import content_id

    ident = backend.describe()
    key = content_id(
        ident.get("backend"), ident.get("model_id"), config.decoding().as_dict(), config.condition, prompts.PROMPT_VERSION, SAMPLES_VERSION
    )
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset)
    return Path(root if root is not None else default_samples_dir()) / safe / f"{ident.get('backend')}-{key}.jsonl"


def load_samples(path: str | os.PathLike) -> list[SampledItem]:
    """Every record of a samples file ([] when it does not exist); a torn last line from a crash is ignored."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(SampledItem.from_json(json.loads(line)))
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            if number == len(lines):
                break  # the write in flight when the process died
            raise ReliabilityError(f"{path}:{number}: not a sampled-item record ({exc})") from exc
    return records


def append_samples(path: str | os.PathLike, records: Iterable[SampledItem]) -> None:
    """Append records as JSON lines, flushed to disk, so a crash loses at most the batch in flight."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record.as_json(), ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def sample_items(
    backend: Backend,
    items: Sequence[Item],
    config: SamplingConfig = SamplingConfig(),
    path: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> SamplingResult:
    """Sample and judge N answers per item with the baseline prompt on the bare model.

    :param path: JSONL file of earlier records (see `samples_path`); items already there are not asked
      again and new records are appended batch by batch. None: nothing is read or written.
    :param progress: called with (done, total, message) after each batch
    Items without an answer key, without audio under condition "full", or whose clip cannot be read are
    skipped and listed, never stop the run. Each item is one request carrying `n` samples, so backends
    that share a prefill between samples encode each prompt once. The request is the baseline method's
    own, so the samples come from the decoding path the baseline answers with (the cascade, for one,
    answers multiple-choice prompts by scoring its closed set of replies and samples from their softmax).
    """
    report = progress or (lambda done, total, message: None)
    known = {r.item.id: r for r in load_samples(path)} if path is not None else {}
    usable, skipped = _usable(items, config.condition)
    pending = [item for item in usable if item.id not in known]
    result = SamplingResult(records=[], skipped=skipped)
    done = len(usable) - len(pending)
    report(done, len(usable), f"{done} items sampled before, {len(pending)} to sample")
    decoding = config.decoding()
    method = Baseline()
    previous = backend.adapter
    backend.set_adapter(None)  # the samples describe the bare model, whatever adapter the app had active
    try:
        for start in range(0, len(pending), config.batch_size):
            batch = pending[start : start + config.batch_size]
            requests, ready = [], []
            for item in batch:
                try:
                    audio, audio_hash = _audio(item, config.condition)
                except AudioError as exc:
                    result.skipped.append((item.id, str(exc)))
                    continue
                # exactly the baseline's inference request (choices included: a backend may answer from them)
                requests.append(Request(method.messages(item), audio, decoding, item.choices, audio_hash))
                ready.append(item)
            records = []
            for item, request, gen in zip(ready, requests, backend.generate(requests) if requests else []):
                if len(gen.texts) != config.n:
                    raise ReliabilityError(f"backend {backend.name!r} returned {len(gen.texts)} samples, not {config.n}")
                outcomes = [judge(text, item.choices, item.answer).outcome.value for text in gen.texts]
                records.append(
                    SampledItem(item, list(gen.texts), outcomes, _identity(backend), decoding.as_dict(), config.condition, request.messages)
                )
            if path is not None:
                append_samples(path, records)
            for record in records:
                known[record.item.id] = record
            result.sampled += len(records)
            done += len(batch)
            report(done, len(usable), f"sampled {done}/{len(usable)} items × {config.n}")
    finally:
        backend.set_adapter(previous)
    result.records = [known[item.id] for item in usable if item.id in known]
    return result


def kn_dataset(records: Sequence[SampledItem], k: int) -> list[TrainingExample]:
    """The K@N training set: the gold answer where at least `k` of an item's N samples were correct, else IDK_REPLY."""
    examples = []
    for record in records:
        if not 1 <= k <= record.n:
            raise ValueError(f"K must be between 1 and N={record.n} (item {record.item.id!r}), got {k}")
        target = record.item.answer if record.n_correct >= k else prompts.IDK_REPLY
        examples.append(TrainingExample(record.item, record.messages, target, k, record.n, record.n_correct, record.condition))
    return examples


def idk_ratios(records: Sequence[SampledItem]) -> list[dict[str, Any]]:
    """The share of IDK targets for every K from 1 to N, per modality and in total (pooled over all items).

    Rows: {"k", "n", "group", "items", "idk", "ratio"} with ratio a fraction (None for no items). It can
    only rise with K: an item whose k-th sample is the first wrong one turns IDK at every larger K.
    """
    if not records:
        return []
    n = _common_n(records)
    groups: dict[str, list[SampledItem]] = {}
    for record in records:
        groups.setdefault(record.item.modality, []).append(record)
    rank = {m: i for i, m in enumerate(MODALITIES)}
    order = sorted(groups, key=lambda g: (rank.get(g, len(rank)), g))
    rows = []
    for k in range(1, n + 1):
        for group, members in [*((g, groups[g]) for g in order), (TOTAL, list(records))]:
            idk = sum(r.n_correct < k for r in members)
            rows.append({"k": k, "n": n, "group": group, "items": len(members), "idk": idk, "ratio": idk / len(members)})
    return rows


def format_ratios(rows: Sequence[dict[str, Any]]) -> str:
    """The IDK ratios as a text table: one line per K@N, one column per group."""
    if not rows:
        return "no samples"
    groups = list(dict.fromkeys(r["group"] for r in rows))
    by_k: dict[int, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_k.setdefault(r["k"], {})[r["group"]] = r
    header = ["K@N", *(f"{g} (n={by_k[1][g]['items']})" for g in groups)]
    lines = [header]
    for k, cells in by_k.items():
        lines.append([f"{k}@{cells[groups[0]]['n']}", *(f"{100 * cells[g]['ratio']:.1f} %" for g in groups)])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines)


def export_jsonl(examples: Sequence[TrainingExample], path: str | os.PathLike) -> int:
    """Write a K@N dataset as JSONL chat records (see TrainingExample.chat); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example.chat(), ensure_ascii=False) + "\n")
    return len(examples)


def _usable(items: Sequence[Item], condition: str) -> tuple[list[Item], list[tuple[str, str]]]:
    """Items evaluate would ask under `condition` that also have a key to judge their samples by."""
    from reliability.conditions import parse_condition
    from reliability.evaluate import askable  # evaluate imports the store; keep it off this module's import path

    skipped = [(item.id, "no answer key: its samples cannot be judged") for item in items if item.answer is None]
    ok, unaskable = askable([item for item in items if item.answer is not None], parse_condition(condition))
    return ok, skipped + unaskable


def _audio(item: Item, condition: str):
    """The samples a backend hears for an item (None under "none") and their hash."""
    if condition == NONE:
        return None, None
    clip = load_audio(item.audio_path)
    return for_model(clip)[0], clip.hash


def _identity(backend: Backend) -> dict[str, Any]:
    ident = backend.describe()
    return {"backend": ident.get("backend"), "model_id": ident.get("model_id")}


def _common_n(records: Sequence[SampledItem]) -> int:
    sizes = {r.n for r in records}
    if len(sizes) != 1:
        raise ReliabilityError(f"records mix sample counts {sorted(sizes)}; use one sampling pass")
    return sizes.pop()
