"""The order annotators see tasks in: shuffled per annotator with a seed, stratified so any prefix is balanced."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def stratified_order(tasks: Sequence[T], key: Callable[[T], str], group: Callable[[T], str], seed: str) -> list[T]:
    """`tasks` shuffled within each group by a hash of (seed, key), then interleaved by each task's share of its
    group, so that every prefix holds the groups in proportion (each within one task of its exact share).

    :param key: a task's stable identity (the same task lands in the same place for the same seed)
    :param group: a task's stratum (its modality)
    :param seed: what makes one order differ from another, e.g. the annotator's name and the mode
    """
    groups: dict[str, list[T]] = defaultdict(list)
    for task in tasks:
        groups[group(task)].append(task)
    placed = []
    for name, members in groups.items():
        members.sort(key=lambda t: _hash(seed, key(t)))
        offset = _hash(seed, "group", name)  # which group leads at equal shares, fixed per seed
        placed += [((i + 0.5) / len(members), offset, task) for i, task in enumerate(members)]
    placed.sort(key=lambda p: (p[0], p[1]))
    return [task for _, _, task in placed]


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
