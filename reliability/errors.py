"""Domain exceptions shown to the user as one clear line (the UI turns them into gr.Error).

A leaf module: annotations/ imports it too, so it imports nothing of the project (tests/test_architecture.py).
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable


class ReliabilityError(Exception):
    """Base of every error the lab reports to a user."""


class AudioError(ReliabilityError):
    """Audio that cannot be used: empty, corrupt, not audio, or too long."""


class UnknownNameError(ReliabilityError, KeyError):
    """A backend, method or other registered name that does not exist."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(self.known)}")

    def __str__(self) -> str:
        return self.args[0]


class ItemError(ReliabilityError, ValueError):
    """An item that cannot be asked: no question, no choices, answer not among choices."""


class BackendError(ReliabilityError):
    """A backend that cannot be loaded or run (missing package, bad model path, bad adapter)."""


DISTRIBUTION = "reliability-lab"  # the name pyproject.toml installs the lab under


def install_hint(extra: str) -> str:
    """The command that installs an optional part of the lab: one of pyproject.toml's extras."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def missing_package(error: ImportError, purpose: str, extra: str) -> BackendError:
    """A missing third-party package as one line naming the extra that installs it."""
    package = error.name or str(error)
    return BackendError(f"{purpose} needs the package {package!r}, which is not installed: {install_hint(extra)}")


class NothingToAskError(ItemError):
    """A command that could answer no item: every one was skipped. Says why in one line, counting each reason."""

    def __init__(self, skipped: list[tuple[str, str]], what: str = "nothing to ask"):
        self.skipped = skipped
        super().__init__(f"{what}: {skipped_line(skipped)}")


def skipped_line(skipped: list[tuple[str, str]]) -> str:
    """(item id, reason) pairs as one line: how many items were skipped for each reason, the commonest first."""
    counts: dict[str, int] = {}
    for _, reason in skipped:
        counts[reason] = counts.get(reason, 0) + 1
    reasons = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = "; ".join(f"{n} × {reason}" for reason, n in reasons[:3])
    more = f"; {len(reasons) - 3} other reasons" if len(reasons) > 3 else ""
    return f"{len(skipped)} item(s) skipped ({shown}{more})"


class StoreError(ReliabilityError):
    """A lab database that cannot be opened or written: bad path, read-only file, not a database."""


class DatasetError(ReliabilityError, ValueError):
    """A dataset or predictions file that cannot be imported; `problems` lists every bad record with its reason."""

    def __init__(self, message: str, problems: list | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


def translating(fn: Callable, catch: type[BaseException] | tuple[type[BaseException], ...], convert: Callable) -> Callable:
    """`fn` (a plain or a generator function) with each exception of type `catch` raised as `convert(exc)` instead.

    A converter that hands back the exception itself re-raises it unchanged. For a generator the
    exceptions raised while it runs are converted, not only those of the call.
    """

    def swap(exc: BaseException):
        new = convert(exc)
        if new is exc:
            raise exc
        raise new from exc

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except catch as exc:
                swap(exc)

        return generator

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except catch as exc:
            swap(exc)

    return call
