"""Batch evaluation: a dataset × methods × backend, every answer cached in the store, resumable, with progress.

The answers table is the generation cache: an answer is keyed by its run (backend, model, adapter,
method, prompt version, decoding settings, dataset, condition) and its item, and it records the hash
of the clip it was asked about. A re-run asks only for items with no answer or whose clip changed.
Every batch is committed as soon as it is judged, so a crash or Ctrl-C loses at most the batch in
flight and running the same call again finishes the work, each item answered exactly once.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import sqlite_utils

from annotations import store
from reliability.audio import Clip, load_audio
from reliability.backends.base import Backend
from reliability.conditions import FULL, NONE, Condition, apply_condition, parse_condition
from reliability.datasets import imported_items, judge_as_shown
from reliability.errors import AudioError, ItemError, NothingToAskError
from reliability.judge import JUDGE_VERSION, judge
from reliability.methods import Method, ask, get_method, validate_item
from reliability.types import Decoding, Item

Progress = Callable[[int, int, str], None]  # (done, total, message); the CLI draws it with tqdm, the app in the UI
REJUDGE_CHUNK = 1000  # answers per transaction when re-judging


@dataclass
class EvalResult:
    """What one evaluate call did."""

    run_ids: list[str]  # one per method, in the order given
    answered: int = 0  # answers generated now
    cached: int = 0  # answers already in the store, not asked again
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item id, reason)


def evaluate(
    db: sqlite_utils.Database,
    backend: Backend,
    items: Sequence[Item],
    methods: Sequence[str | Method],
    decoding: Decoding = Decoding(),
    batch_size: int = 8,
    condition: str = FULL,
    progress: Progress | None = None,
) -> EvalResult:
    """Answer every item with every method, reusing every answer already stored.

    :param items: items of one dataset, already imported into `db`
    :param methods: method names ("baseline", "idk", "lora:<adapter>") or Method objects
    :param batch_size: items per backend call; also the most work a crash can lose
    :param condition: "full" (with the clip), "none" (the same prompt without audio) or a fragment such
      as "n3_chunk2" (reliability.conditions); answers record the hash of the item's whole clip
    :param progress: called with (done, total, message) after the cache check and after every batch
    Items that cannot be asked (no audio file under an audio condition, an unreadable clip, an invalid
    item) are skipped and listed in the result, never stop the run. A run is stored with its first answer: when no
    item can be answered, NothingToAskError says why (counting the skipped items per reason) and nothing is stored.
    """
    cond = parse_condition(condition)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    datasets = {item.dataset for item in items}
    if not datasets:
        raise ItemError("no items to evaluate")
    if len(datasets) > 1:
        raise ItemError(f"items of one dataset at a time, got {sorted(datasets)}")
    methods = [get_method(m) if isinstance(m, str) else m for m in methods]
    report = progress or (lambda done, total, message: None)
    askable_items, skipped = askable(items, cond)
    if not askable_items:
        raise NothingToAskError(skipped)
    result = EvalResult(run_ids=[], skipped=skipped)
    total, done = len(items) * len(methods), 0
    dataset = next(iter(datasets))
    for method in methods:
        identity = (dataset, backend.describe(), method.describe(backend), decoding, cond.name)
        run_id = store.run_id_for(*identity)
        result.run_ids.append(run_id)
        pending = _uncached(db, run_id, askable_items, cond)
        unstored = bool(pending)  # a run is stored with its first answer
        result.cached += len(askable_items) - len(pending)
        done += len(items) - len(pending)
        report(done, total, f"{method.name}: {len(askable_items) - len(pending)} cached, {len(pending)} to ask")
        for batch in _batches(pending, batch_size):
            clips, hashes, failed = _load_clips(db, batch, cond)
            result.skipped += failed
            bad = {item_id for item_id, _ in failed}
            ready = [(item, clip, h) for item, clip, h in zip(batch, clips, hashes) if item.id not in bad]
            if ready:
                answers = ask(method, backend, [r[0] for r in ready], [r[1] for r in ready], decoding)
                if unstored:
                    store.get_or_create_run(db, *identity, JUDGE_VERSION)
                    unstored = False
                store.save_answers(db, run_id, answers, [r[2] for r in ready], JUDGE_VERSION)
            result.answered += len(ready)
            done += len(batch)
            report(done, total, f"{method.name}: {done}/{total}")
    stored = {run.id for run in store.list_runs(db, dataset, cond.name)}
    if not stored.issuperset(result.run_ids):  # every clip failed to load: no run was stored
        raise NothingToAskError(result.skipped, "nothing answered")
    return result


def rejudge(db: sqlite_utils.Database, run_ids: Sequence[str] | None = None, progress: Progress | None = None) -> int:
    """Re-judge stored answers judged by an older judge version, without asking any model; returns how many.

    The confidence (the probability of the chosen option) is kept when the judge reads the same option,
    and cleared when it reads another: the option probabilities it came from are not stored.
    """
    rows = store.answers_to_rejudge(db, JUDGE_VERSION, run_ids)
    imported = imported_items(db, (row["run_id"] for row in rows))  # their letters follow the source's options
    report = progress or (lambda done, total, message: None)
    for start in range(0, len(rows), REJUDGE_CHUNK):
        chunk = rows[start : start + REJUDGE_CHUNK]
        updates = []
        for row in chunk:
            stored = imported.get(row["id"])
            verdict = judge_as_shown(row["text"], stored) if stored else judge(row["text"], row["choices"], row["answer"])
            updates.append((row["id"], verdict, row["confidence"] if verdict.choice == row["choice"] else None))
        store.update_judgements(db, updates, JUDGE_VERSION)
        report(start + len(chunk), len(rows), f"re-judged with {JUDGE_VERSION}")
    return len(rows)


def askable(items: Sequence[Item], cond: Condition) -> tuple[list[Item], list[tuple[str, str]]]:
    """Items a method can be asked, and (item id, reason) for the others."""
    ok, skipped = [], []
    for item in items:
        try:
            validate_item(item)
        except ItemError as exc:
            skipped.append((item.id, str(exc)))
            continue
        if cond.name != NONE and item.audio_path is None:
            skipped.append((item.id, "no audio file (imported without --audio-dir); run it with no audio"))
            continue
        ok.append(item)
    return ok, skipped


def _uncached(db: sqlite_utils.Database, run_id: str, items: Sequence[Item], cond: Condition) -> list[Item]:
    """Items with no stored answer in this run, or whose clip changed since it was answered."""
    stored = store.answered(db, run_id)
    answered = [item for item in items if item.id in stored]
    current = _current_hashes(db, answered) if cond.name != NONE else {}
    return [item for item in items if item.id not in stored or stored[item.id] != current.get(item.id)]


def _current_hashes(db: sqlite_utils.Database, items: Sequence[Item]) -> dict[str, str | None]:
    """Item id -> hash of its clip as the file is now; a file unchanged since it was last hashed is not decoded."""
    known = store.known_audio_hashes(db, [item.audio_path for item in items])
    hashes, learned = {}, []
    for item in items:
        try:
            stat = os.stat(item.audio_path)
        except OSError:
            hashes[item.id] = None  # gone: not a cache hit; asking it will report why
            continue
        entry = known.get(item.audio_path)
        if entry is not None and entry[:2] == (stat.st_size, stat.st_mtime_ns):
            hashes[item.id] = entry[2]
            continue
        try:
            clip = load_audio(item.audio_path)
        except AudioError:
            hashes[item.id] = None
            continue
        hashes[item.id] = clip.hash
        learned.append((item.audio_path, stat.st_size, stat.st_mtime_ns, clip.hash))
    store.remember_audio_hashes(db, learned)
    return hashes


def _load_clips(
    db: sqlite_utils.Database, batch: Sequence[Item], cond: Condition
) -> tuple[list[Clip | None], list[str | None], list[tuple[str, str]]]:
    """The clips a batch is asked about (under the condition), the hashes of the items' whole clips, and
    (item id, reason) for clips that cannot be read or cut."""
    if cond.name == NONE:
        return [None] * len(batch), [None] * len(batch), []
    clips, hashes, failed, learned = [], [], [], []
    for item in batch:
        try:
            clip, stat = _read(item.audio_path)
            heard = apply_condition(clip, cond)
        except AudioError as exc:
            failed.append((item.id, str(exc)))
            clips.append(None)
            hashes.append(None)
            continue
        clips.append(heard)
        hashes.append(clip.hash)
        learned.append((item.audio_path, stat.st_size, stat.st_mtime_ns, clip.hash))
    store.remember_audio_hashes(db, learned)
    return clips, hashes, failed


def _read(path: str) -> tuple[Clip, os.stat_result]:
    """A decoded clip and its file's stat, taken first: a file rewritten in between then fails the
    size/mtime check next time instead of passing with a stale hash."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise AudioError(f"audio file {path}: {exc.strerror}") from exc
    return load_audio(path), stat


def _batches(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
