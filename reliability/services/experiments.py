"""The Experiments tab's service: sample the IDK dataset and run LoRA experiments on the lab database and its backends."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reliability.services.pool import Pool, store_errors
from reliability.training.config import TrainConfig
from reliability.training.experiments import ExperimentConfig, ExperimentResult, split_items
from reliability.training.idk_dataset import Progress, SamplingConfig, SamplingResult, sample_items, samples_path

SAMPLES_FOLDER = "idk-samples"  # under the app's data folder
Experiment = Callable[..., ExperimentResult]  # train_and_compare, alpha_sweep or transfer_matrix


@dataclass
class ExperimentService:
    """Experiments over the shared database and backends; the caller holds the backend's model lock."""

    pool: Pool

    @property
    def samples_dir(self) -> str:
        return os.path.join(self.pool.settings.data_dir, SAMPLES_FOLDER)

    @store_errors
    def sample(self, config: ExperimentConfig, sampling: SamplingConfig, backend: str, progress: Progress) -> tuple[SamplingResult, Path]:
        """Sample N answers per training item of the config (resuming the samples file); returns them and the file."""
        train, _, _ = split_items(self.pool.db(), config)
        engine = self.pool.get_backend(backend)
        path = samples_path(self.samples_dir, config.dataset, engine, sampling)
        return sample_items(engine, train, sampling, path, progress), path

    @store_errors
    def run(
        self,
        experiment: Experiment,
        config: ExperimentConfig,
        sampling: SamplingConfig,
        training: TrainConfig,
        backend: str,
        progress: Progress,
        stop: threading.Event,
    ) -> ExperimentResult:
        """Run one experiment on the backend, its adapters saved in the adapters folder."""
        return experiment(
            self.pool.db(), self.pool.get_backend(backend), config, sampling, training, self.pool.settings.adapters_dir,
            self.samples_dir, progress, stop,
        )
