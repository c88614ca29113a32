"""Open the lab's SQLite file: WAL mode, a long busy timeout, foreign keys, migrations applied."""
from __future__ import annotations

import os
import sqlite3
import stat

import sqlite_utils

from annotations.migrations import migrate
from reliability.errors import StoreError

BUSY_TIMEOUT_MS = 30_000  # an annotator's write waits for a running evaluation's batch instead of failing
MEMORY = ":memory:"


def open_db(path: str | os.PathLike = MEMORY) -> sqlite_utils.Database:
    """Open (creating it and its folder if needed) the lab database at `path` and migrate it.

    :param path: a file path, or ":memory:" for a throwaway database (tests)
    Raises StoreError with the path and the reason when the folder cannot be created, the file is
    read-only, or the file is not an SQLite database.
    """
    path = os.fspath(path)
    if path != MEMORY:
        _check_path(path)
    try:
        # plugins are off: a user's installed sqlite-utils plugins must not change the lab's connection
        db = sqlite_utils.Database(path, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        # with WAL, NORMAL never corrupts and keeps every commit through a crash or SIGKILL of the process;
        # only a power cut may drop the last commits, which a re-run redoes. It makes each batch's commit cheap.
        db.execute("PRAGMA synchronous = NORMAL")
        if path != MEMORY:
            db.enable_wal()
        migrate(db)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path}: cannot open the lab database ({exc})") from exc
    return db


def _check_path(path: str) -> None:
    if os.path.isdir(path):
        raise StoreError(f"{path}: is a folder, not a database file")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the folder {folder} ({exc.strerror})") from exc
    if os.path.exists(path):
        # the mode bits are checked too: root may write anywhere, but a file made read-only means "do not touch"
        if not os.access(path, os.W_OK) or not os.stat(path).st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise StoreError(f"{path}: the database file is read-only")
    elif not os.access(folder, os.W_OK):
        raise StoreError(f"{path}: the folder {folder} is not writable")
