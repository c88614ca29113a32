"""The lab's services behind the app and its API, one module per job; `Services` bundles those of one running app.

Nothing here imports gradio: the UI (reliability/ui/) calls these plain methods, and the tests call them directly.
One `Services` serves every user of a running app: its `Pool` holds one SQLite connection per thread and
builds each backend once, behind a lock.
"""
from __future__ import annotations

from dataclasses import dataclass

from reliability.services.catalog import Catalog
from reliability.services.compare import CompareService
from reliability.services.dashboard import DashboardService
from reliability.services.diagnostics import DiagnosticsService
from reliability.services.experiments import ExperimentService
from reliability.services.labelling import LabelService
from reliability.services.modality import ModalityService
from reliability.services.pool import Pool
from reliability.services.settings import Settings


@dataclass
class Services:
    """The services one running app shares between its users."""

    pool: Pool  # connections, backends, model locks, folders
    catalog: Catalog  # names for the pickers and filters
    modality: ModalityService  # a clip's speech / music / sound, detected
    compare: CompareService
    labels: LabelService
    dashboard: DashboardService
    experiments: ExperimentService
    diagnostics: DiagnosticsService

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Every service over one pool made from `settings`."""
        pool = Pool(settings)
        catalog = Catalog(pool)
        modality = ModalityService(pool)
        return cls(
            pool, catalog, modality, CompareService(pool, modality), LabelService(pool), DashboardService(pool, catalog),
            ExperimentService(pool), DiagnosticsService(pool),
        )
