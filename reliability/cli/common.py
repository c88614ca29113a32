"""What the command-line modules share: opening the lab database and the backend from the flags, a progress bar."""
from __future__ import annotations

import sys

from reliability.errors import BackendError
from reliability.options import key_value
from reliability.paths import default_db


def open_lab_db(args):
    """The lab database named by --db (default: default_db()), opened and migrated."""
    from annotations.db import open_db

    return open_db(args.db or default_db())


def backend_from_args(args):
    """The backend named by --backend (default: the lab's default), built with the --backend-arg values."""
    from reliability.backends import DEFAULT_BACKEND, get_backend

    name = args.backend or DEFAULT_BACKEND
    kwargs = dict(key_value(text) for text in args.backend_arg)
    try:
        return get_backend(name, **kwargs)
    except TypeError as exc:
        raise BackendError(f"backend {name!r} does not take {sorted(kwargs)}: {exc}") from exc


class TqdmProgress:
    """evaluate's progress callback drawn as a tqdm bar on stderr; the app passes its own callback instead."""

    def __init__(self, unit: str = "answer"):
        self.unit = unit
        self.bar = None

    def __call__(self, done: int, total: int, message: str) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=total, unit=self.unit, file=sys.stderr, dynamic_ncols=True)
        self.bar.set_description_str(message, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
