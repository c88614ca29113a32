"""The Text prior tab's service: the diagnostics report of the runs already in the lab database (no model is asked)."""
from __future__ import annotations

from dataclasses import dataclass

from reliability.diagnostics.measures import DiagnosticsReport
from reliability.diagnostics.runs import load_report
from reliability.services.pool import Pool, store_errors


@dataclass
class DiagnosticsService:
    """Reports of stored diagnostics runs."""

    pool: Pool

    @store_errors
    def report(self, dataset: str, backend: str | None = None, human: bool = True) -> DiagnosticsReport:
        """The report of `dataset`'s stored runs on `backend` (default: the latest run's); human verdicts override
        the parser where `human`."""
        return load_report(self.pool.db(), dataset, backend, human=human)
