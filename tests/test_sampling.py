"""Task order: shuffled per seed, the same for the same seed, and every prefix balanced across groups."""
from __future__ import annotations

from collections import Counter

from annotations.sampling import stratified_order

# import order as MMAU's file has it: one modality after another
TASKS = [(f"{m}-{i}", m) for m, n in (("sound", 333), ("music", 334), ("speech", 333)) for i in range(n)]


def order(seed: str) -> list[tuple[str, str]]:
    return stratified_order(TASKS, key=lambda t: t[0], group=lambda t: t[1], seed=seed)


def test_every_prefix_holds_the_groups_in_proportion():
    tasks = order("ana")
    assert sorted(tasks) == sorted(TASKS)
    for size in range(1, len(tasks) + 1):
        counts = Counter(m for _, m in tasks[:size])
        for modality, total in Counter(m for _, m in TASKS).items():
            assert abs(counts[modality] - size * total / len(TASKS)) <= 1, (size, counts)


def test_the_order_is_fixed_per_seed_and_differs_between_seeds():
    assert order("ana") == order("ana")
    assert [t for t, _ in order("ana")] != [t for t, _ in order("bob")]
    within = [t for t, m in order("ana") if m == "sound"]
    assert within != sorted(within, key=lambda t: int(t.split("-")[1]))  # shuffled, not in import order


def test_unequal_groups_still_interleave():
    tasks = [(f"a{i}", "a") for i in range(90)] + [(f"b{i}", "b") for i in range(10)]
    first = stratified_order(tasks, key=lambda t: t[0], group=lambda t: t[1], seed="s")[:20]
    assert Counter(g for _, g in first) == {"a": 18, "b": 2}
