"""What one running app is configured with: its database, folders, backend and the services' tunables."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reliability.backends import DEFAULT_BACKEND
from reliability.types import Decoding


@dataclass
class Settings:
    """The settings every service of a running app reads (the command line's, or a test's)."""

    db_path: str  # the lab database (SQLite); created with its folder if missing
    data_dir: str  # the app's own folder: uploads/ (kept clips) and exports/ (downloads) live here
    backend: str = DEFAULT_BACKEND  # the default backend's name
    backend_kwargs: dict[str, Any] = field(default_factory=dict)  # constructor arguments of the default backend
    adapters_dir: str | None = None  # folder of saved LoRA adapters (reliability.training.adapters), one sub-folder each
    examples_path: str | None = None  # a JSON list of example items (reliability/demo/items.json), audio relative to it
    max_seconds: float = 120.0  # longest clip accepted from an upload
    decoding: Decoding = Decoding()  # decoding of every Compare answer (greedy)
    n_boot: int = 1000  # bootstrap resamples of the dashboard's intervals
    queue_seed: str = "0"  # with the annotator's name, fixes the shuffled order of their tasks
    extra_backends: tuple[str, ...] = ()  # backends a request may name beyond the menu's (app.py --allow-backend)
    retry_failed_s: float = 300.0  # a backend whose build failed is not tried again before this
