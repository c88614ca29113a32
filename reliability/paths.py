"""Where the lab's files live: the database unless --db says otherwise (the user's data folder) and the files shipped
inside the package (question files, demo clips, model files), shared by the CLI and the app."""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

DEFAULT_DB_NAME = "lab.db"


def default_db() -> str:
    """The lab database in the user's data folder."""
    import platformdirs

    return os.path.join(platformdirs.user_data_dir("reliability-lab"), DEFAULT_DB_NAME)


def package_file(*parts: str) -> Path:
    """A file or folder shipped inside the `reliability` package (pyproject.toml's package data), wherever it is installed."""
    # an installed package is a folder on disk (pip never installs it zipped), so its resources are plain paths
    return Path(str(files("reliability").joinpath(*parts)))


def demo_items() -> Path:
    """The demo questions (a JSON list in the `mmau` import format, audio relative to it)."""
    return package_file("demo", "items.json")


def demo_clips() -> Path:
    return package_file("demo", "clips")


def metrics_doc() -> Path | None:
    """docs/METRICS.md in a checkout of the repository (the Dashboard serves and links it); None in an installed package."""
    path = Path(__file__).resolve().parent.parent / "docs" / "METRICS.md"
    return path if path.is_file() else None
