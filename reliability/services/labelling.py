"""The labelling service: annotators' verdicts on model answers, their own answers to items, and their task queues."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from annotations import store
from annotations.sampling import stratified_order
from reliability.errors import ItemError, StoreError
from reliability.services.pool import Pool, store_errors
from reliability.types import Item

VERDICT_MODE, HUMAN_MODE = "verdict", "human"  # annotate: judge model answers / answer items yourself
IDK_CHOICE = store.IDK_CHOICE  # what a human picks to abstain
VIA_VERDICT, VIA_COMPARE, VIA_API = store.VIA_VERDICT, store.VIA_COMPARE, store.VIA_API  # where an annotator saw a key
QUEUE_LIMIT = 5000  # most tasks one queue holds; far more than one labelling session
NO_KEY, NO_AUDIO, KEY_SEEN = "no answer key", "no audio", "you saw the key"  # why an item is not a human-baseline task


@dataclass(frozen=True)
class Task:
    """One thing for an annotator to label: a model answer to judge, or an item to answer themselves."""

    kind: str  # VERDICT_MODE or HUMAN_MODE
    item: Item
    answer_id: str | None = None  # verdict tasks: the answer judged
    method: str | None = None
    model_id: str | None = None
    text: str | None = None  # verdict tasks: the model's raw reply
    parser_choice: str | None = None
    parser_outcome: str | None = None
    parsed: bool = True
    n_labels: int = 0  # verdicts by anyone on this answer
    mine: str | None = None  # this annotator's current verdict (or own choice, or IDK_CHOICE)
    key_seen: bool = False  # human tasks: the annotator saw the key after answering, so the answer can no longer change

    @property
    def key(self) -> str:
        """What identifies the task across refreshes."""
        return self.answer_id or f"{self.item.dataset}/{self.item.id}"

    def as_dict(self) -> dict[str, Any]:
        item = self.item
        data = {
            "kind": self.kind, "key": self.key, "dataset": item.dataset, "item_id": item.id, "question": item.question,
            "choices": list(item.choices), "modality": item.modality, "has_audio": item.audio_path is not None,
            "mine": self.mine, "key_seen": self.key_seen,
        }
        if self.kind == VERDICT_MODE:
            # the answer key is shown only to judge a model's answer; a human answering must not see it
            data.update(
                answer_key=item.answer, answer_id=self.answer_id, method=self.method, model_id=self.model_id,
                text=self.text, parser_choice=self.parser_choice, parser_outcome=self.parser_outcome,
                parsed=self.parsed, n_labels=self.n_labels,
            )
        return data


@dataclass
class Queue:
    """An annotator's tasks under one filter, where to resume, and how many are done."""

    annotator: str
    mode: str
    tasks: list[Task]
    position: int  # the first task this annotator has not labelled (0 when all are done)
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> items under the filters that are not tasks

    @property
    def done(self) -> int:
        return sum(t.mine is not None for t in self.tasks)

    @property
    def by_modality(self) -> dict[str, tuple[int, int]]:
        """Modality -> (labelled, tasks)."""
        return modality_counts(self.tasks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "annotator": self.annotator, "mode": self.mode, "total": len(self.tasks), "done": self.done,
            "position": self.position, "left_out": self.left_out,
            "by_modality": {m: {"done": d, "total": n} for m, (d, n) in self.by_modality.items()},
            "tasks": [t.as_dict() for t in self.tasks],
        }


def modality_counts(tasks: Sequence[Task]) -> dict[str, tuple[int, int]]:
    """Modality -> (labelled, tasks), modalities in the order they first appear."""
    counts: dict[str, list[int]] = {}
    for t in tasks:
        done_total = counts.setdefault(t.item.modality, [0, 0])
        done_total[0] += t.mine is not None
        done_total[1] += 1
    return {m: (d, n) for m, (d, n) in counts.items()}


@dataclass
class LabelService:
    """Labels stored in the lab database, and each annotator's queue of what to label next."""

    pool: Pool

    @store_errors
    def label(self, answer_id: str, annotator: str, verdict: str, note: str = "") -> dict[str, Any]:
        """Store (or change) an annotator's verdict on a model answer: correct, wrong or idk."""
        label_id = store.add_label(self.pool.db(), answer_id, annotator, verdict, note)
        return {"label_id": label_id, "kind": store.VERDICT, "answer_id": answer_id, "annotator": annotator.strip(), "verdict": verdict}

    @store_errors
    def human_answer(self, dataset: str, item_id: str, annotator: str, choice: str | None) -> dict[str, Any]:
        """Store (or change) an annotator's own answer to an item (an option, or None / "I don't know").

        Refused (ItemError / StoreError) for an item whose clip is missing and for one whose key the annotator has seen.
        """
        db = self.pool.db()
        item = store.get_item(db, dataset, item_id)
        if item.audio_path is not None and not os.path.isfile(item.audio_path):
            raise ItemError(f"the clip of item {item_id!r} is missing ({item.audio_path}): a human answer needs it, so none is stored")
        label_id = store.add_human_answer(db, dataset, item_id, annotator, choice or None)
        return {
            "label_id": label_id, "kind": store.HUMAN_ANSWER, "dataset": dataset, "item_id": item_id,
            "annotator": annotator.strip(), "choice": choice or IDK_CHOICE,
        }

    @store_errors
    def saw_keys(self, annotator: str, items: Sequence[tuple[str, str]], via: str) -> None:
        """Record that the annotator has seen the keys of these (dataset, item id) pairs: no human answer to them after."""
        if (annotator or "").strip():
            store.saw_keys(self.pool.db(), annotator, items, via)

    @store_errors
    def queue(
        self,
        annotator: str,
        mode: str = VERDICT_MODE,
        dataset: str | None = None,
        modality: str | None = None,
        method: str | None = None,
        unsure_only: bool = False,
        unlabelled_only: bool = False,
        limit: int = QUEUE_LIMIT,
    ) -> Queue:
        """The annotator's tasks with their own labels so far, resuming at the first unlabelled.

        The order is shuffled per annotator (and the settings' `queue_seed`) and stratified by modality, so that
        any prefix covers the modalities in proportion. Human-baseline tasks are the items with a key and their
        clip that the annotator has not seen the key of before answering; `left_out` counts the others by reason.

        :param mode: VERDICT_MODE (judge stored answers) or HUMAN_MODE (answer items with a key and a clip yourself)
        :param unsure_only: only answers the parser could not read (verdict mode)
        :param unlabelled_only: leave out what this annotator has labelled already
        """
        if not (annotator or "").strip():
            raise StoreError("an annotator name is required: type your name first")
        annotator = store.check_annotator(annotator)
        if mode not in (VERDICT_MODE, HUMAN_MODE):
            raise ItemError(f"annotation mode {mode!r} is not one of {[VERDICT_MODE, HUMAN_MODE]}")
        db = self.pool.db()
        mine = {
            (r["answer_id"] if r["kind"] == store.VERDICT else f"{r['dataset']}/{r['item_id']}"): r
            for r in store.label_rows(db, dataset)
            if r["annotator"] == annotator and r["current"]
        }
        if mode == VERDICT_MODE:
            entries = store.label_queue(db, dataset, None, modality, method, None, unsure_only, QUEUE_LIMIT)
            tasks = [
                Task(
                    VERDICT_MODE, e.item, e.answer_id, e.method, e.model_id, e.text, e.choice, str(e.outcome), e.parsed,
                    e.n_labels, mine[e.answer_id]["verdict"] if e.answer_id in mine else None,
                )
                for e in entries
            ]
            left_out: dict[str, int] = {}
        else:
            tasks, left_out = self._human_tasks(annotator, dataset, modality, mine)
        seed = f"{self.pool.settings.queue_seed}/{annotator}/{mode}"
        tasks = stratified_order(tasks, key=lambda t: t.key, group=lambda t: t.item.modality, seed=seed)[:limit]
        if unlabelled_only:
            tasks = [t for t in tasks if t.mine is None]
        position = next((i for i, t in enumerate(tasks) if t.mine is None), 0)
        return Queue(annotator, mode, tasks, position, left_out)

    def _human_tasks(
        self, annotator: str, dataset: str | None, modality: str | None, mine: dict[str, dict[str, Any]]
    ) -> tuple[list[Task], dict[str, int]]:
        db = self.pool.db()
        names = [dataset] if dataset else [d["name"] for d in store.list_datasets(db)]
        seen = store.key_views(db, annotator, dataset)
        tasks, left_out = [], {NO_KEY: 0, NO_AUDIO: 0, KEY_SEEN: 0}
        for item in (s.item for name in names for s in store.stored_items(db, name, modality)):
            label = mine.get(f"{item.dataset}/{item.id}")
            key_seen = (item.dataset, item.id) in seen
            if item.answer is None:
                left_out[NO_KEY] += 1
            elif item.audio_path is None or not os.path.isfile(item.audio_path):
                left_out[NO_AUDIO] += 1
            elif key_seen and label is None:
                left_out[KEY_SEEN] += 1
            else:
                tasks.append(Task(HUMAN_MODE, item, mine=None if label is None else (label["choice"] or IDK_CHOICE), key_seen=key_seen))
        return tasks, {reason: n for reason, n in left_out.items() if n}
