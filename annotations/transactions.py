"""How the lab database is written: one write transaction that queues behind other writers, and the `*_at` timestamp."""
from __future__ import annotations

import contextlib
import datetime
import sqlite3
from collections.abc import Iterator

import sqlite_utils

from reliability.errors import StoreError


@contextlib.contextmanager
def writing(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction that takes the write lock first (BEGIN IMMEDIATE), committed on success.

    A deferred transaction that reads and then writes fails at once with "database is locked" in WAL
    mode when another process committed in between (the busy timeout does not apply to that case);
    taking the lock up front makes concurrent writers queue instead.
    """
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise StoreError(f"cannot write to the lab database: {exc}") from exc
    try:
        yield db
    except BaseException:
        db.rollback()
        raise
    db.commit()


def now() -> str:
    """The current UTC time as stored in every `*_at` column (microseconds order labels made in one second)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds")
