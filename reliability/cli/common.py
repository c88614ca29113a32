"""What the command-line modules share: opening the lab database and the backend from the flags, the items --limit picks, a progress bar."""
from __future__ import annotations

import argparse
import sys

from reliability.errors import BackendError
from reliability.options import key_value
from reliability.paths import default_db


def open_lab_db(args):
    """The lab database named by --db (default: default_db()), opened and migrated."""
    from annotations.db import open_db

    return open_db(args.db or default_db())


def add_limit_arguments(p) -> None:
    """--limit and how it picks: a seeded sample stratified by modality, or with --file-order the first N."""
    p.add_argument(
        "--limit", type=positive,
        help="only N items: a seeded sample stratified by modality, so every modality keeps its share (see --file-order)",
    )
    p.add_argument("--file-order", action="store_true", help="with --limit: the first N items in import order instead")
    p.add_argument("--limit-seed", type=int, default=0, help="with --limit: the seed of the stratified sample (default: 0)")


def items_from_args(db, args):
    """The items of --dataset (and --modality) that --limit, --file-order and --limit-seed pick, in import order."""
    from annotations import store
    from annotations.sampling import stratified_order

    items = store.get_items(db, args.dataset, args.modality)
    if args.limit is None or args.file_order:
        return items[: args.limit]
    picked = stratified_order(items, key=lambda i: i.id, group=lambda i: i.modality, seed=f"limit:{args.limit_seed}")
    chosen = {item.id for item in picked[: args.limit]}
    return [item for item in items if item.id in chosen]


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


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
