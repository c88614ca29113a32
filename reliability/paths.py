"""Where the lab database lives unless --db says otherwise, shared by the CLI and the app."""
from __future__ import annotations

import os

DEFAULT_DB_NAME = "lab.db"


def default_db() -> str:
    """The lab database in the user's data folder."""
    import platformdirs

    return os.path.join(platformdirs.user_data_dir("reliability-lab"), DEFAULT_DB_NAME)
