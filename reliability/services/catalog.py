"""What the lab database holds, for the app's pickers and filters: datasets, runs, backends, annotators, methods."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from annotations import store
from reliability.services.pool import Pool, store_errors


@dataclass
class Catalog:
    """Names the app's dropdowns offer, read from the lab database as it is now."""

    pool: Pool

    @store_errors
    def dataset_names(self) -> list[str]:
        """Every imported dataset, in import order."""
        return [d["name"] for d in store.list_datasets(self.pool.db())]

    @store_errors
    def run_choices(self, dataset: str | None = None) -> tuple[list[str], list[str]]:
        """(datasets with runs, most recently used first; backends with runs on `dataset`, default the first of those)."""
        runs = store.list_runs(self.pool.db())
        datasets = _recent_first(runs)
        dataset = dataset or next(iter(datasets), None)
        return datasets, sorted({r.backend for r in runs if r.dataset == dataset})

    @store_errors
    def filter_choices(self) -> dict[str, list[str]]:
        """Values the dashboard and queue filters can take: datasets (most recently used first), backends,
        annotators, methods."""
        db = self.pool.db()
        runs = store.list_runs(db)
        used = _recent_first(runs)
        datasets = used + [d["name"] for d in store.list_datasets(db) if d["name"] not in used]
        return {
            "datasets": datasets,
            "backends": sorted({r.backend for r in runs}),
            "annotators": sorted({r["annotator"] for r in store.label_rows(db)}),
            "methods": sorted({r.method for r in runs}),
        }


def _recent_first(runs: Sequence[store.Run]) -> list[str]:
    """The datasets of `runs` (oldest first, as list_runs gives them), the most recently used first."""
    return list(dict.fromkeys(r.dataset for r in reversed(runs)))
