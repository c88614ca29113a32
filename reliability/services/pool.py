"""What every service of a running app shares: one database connection per thread, the backends and their model locks.

Its `store_errors` decorator is the services' edge: the database's own errors leave a service as StoreError,
so the UI shows every failure of the lab as one ReliabilityError line.
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import sqlite_utils

from annotations.db import open_db
from reliability.backends import BACKENDS, MENU_ONLY_AS_DEFAULT, get_backend
from reliability.backends.base import Backend
from reliability.errors import BackendError, ReliabilityError, StoreError, translating
from reliability.methods import method_names
from reliability.services.settings import Settings
from reliability.training.adapters import AdapterInfo, compatible_adapters, list_adapters, load_shipped


def store_errors(fn: Callable) -> Callable:
    """Raise the database's errors (sqlite3.Error) out of `fn` as StoreError; a generator's too, as it runs."""
    return translating(fn, sqlite3.Error, lambda exc: StoreError(f"the lab database refused: {exc}"))


class ModelGate:
    """A backend's model lock that counts the requests holding or waiting for it, so a waiting user can be told."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.queued = 0  # requests holding the lock or waiting for it

    def join(self, delta: int) -> None:
        """Enter (+1) or leave (-1) the line."""
        with self._count_lock:
            self.queued += delta

    def acquire(self, timeout: float = -1) -> bool:
        return self._lock.acquire(timeout=timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> ModelGate:
        self.join(1)
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.join(-1)


class Pool:
    """The connections, backends and folders one running app shares between its users and services."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._local = threading.local()  # sqlite3 connections may not cross threads
        self._backends: dict[str, Backend] = {}
        # one build per name at a time, and no lock shared between names: a backend that takes minutes to fail
        # (a checkpoint that is not here) never holds up another user's Compare on another backend
        self._build_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_lock = threading.Lock()  # guards only the dict of build locks, never a build
        self._failed: dict[str, tuple[float, str]] = {}  # name -> (when its build failed, the one-line reason)
        # one model call at a time per backend: a LoRA method switches the shared model's adapter
        self._model_locks: dict[str, ModelGate] = defaultdict(ModelGate)
        self._warm: set[str] = set()

    @property
    def uploads_dir(self) -> str:
        return os.path.join(self.settings.data_dir, "uploads")

    @property
    def exports_dir(self) -> str:
        return os.path.join(self.settings.data_dir, "exports")

    def db(self) -> sqlite_utils.Database:
        """This thread's connection to the lab database (opened and migrated on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = open_db(self.settings.db_path)
        return db

    def check(self) -> list[str]:
        """Problems a user should see on opening the app (an unusable database), as one line each."""
        try:
            self.db()
        except ReliabilityError as exc:
            return [str(exc)]
        return []

    def backend_names(self) -> list[str]:
        """Backends offered in the UI: the default first; scripted and openai only when they are the default."""
        default = self.settings.backend
        return [default] + [n for n in BACKENDS if n != default and n not in MENU_ONLY_AS_DEFAULT]

    def backend_allowed(self, name: str) -> bool:
        """Whether a request may name this backend: the menu's, plus those the app was started to allow."""
        return name in self.backend_names() or name in self.settings.extra_backends

    def get_backend(self, name: str | None = None) -> Backend:
        """The backend of this name, built on first use (outside any lock another name waits on) and shared
        afterwards. A failed build is remembered for `settings.retry_failed_s`: until then the same one-line
        error comes back at once instead of a second long wait."""
        name = name or self.settings.backend
        backend = self._backends.get(name)
        if backend is not None:
            return backend
        with self._locks_lock:
            lock = self._build_locks[name]
        with lock:
            if name in self._backends:
                return self._backends[name]
            failed = self._failed.get(name)
            if failed is not None and time.monotonic() - failed[0] < self.settings.retry_failed_s:
                left = self.settings.retry_failed_s - (time.monotonic() - failed[0])
                raise BackendError(f"{failed[1]} (failed {time.monotonic() - failed[0]:.0f} s ago; tried again in {left:.0f} s)")
            try:
                self._backends[name] = self._build(name)
            except BackendError as exc:
                self._failed[name] = (time.monotonic(), str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                raise
            self._failed.pop(name, None)
            return self._backends[name]

    def _build(self, name: str) -> Backend:
        """Construct a backend; every failure is one BackendError line (a model's own errors included)."""
        kwargs = self.settings.backend_kwargs if name == self.settings.backend else {}
        try:
            return get_backend(name, **kwargs)
        except TypeError as exc:
            raise BackendError(f"backend {name!r} does not take {sorted(kwargs)}: {exc}") from exc
        except ImportError as exc:
            raise BackendError(f"backend {name!r} needs a package that is not installed: {exc}") from exc
        except BackendError:
            raise
        except Exception as exc:  # e.g. a loader's own error; remembered like the others
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else "no detail"
            raise BackendError(f"backend {name!r} could not be built ({type(exc).__name__}: {first})") from exc

    def is_warm(self, name: str | None = None) -> bool:
        """Whether the backend has answered (or loaded) already, so the next answer needs no model load."""
        return (name or self.settings.backend) in self._warm

    def mark_warm(self, name: str) -> None:
        """Note that the backend has answered: its model is loaded."""
        self._warm.add(name)

    def warm(self, name: str | None = None) -> None:
        """Load a backend's model now (the app does this in the background at start), where it can load eagerly,
        with the shipped adapters it can run, so that lora:default answers without a wait too."""
        name = name or self.settings.backend
        backend = self.get_backend(name)
        load = getattr(backend, "load", None)
        if callable(load):
            load()
        with self.model_lock(name):
            load_shipped(backend, self.settings.adapters_dir, user=bool(self.settings.adapters_dir))
        self.mark_warm(name)

    def saved_adapters(self) -> list[AdapterInfo]:
        """LoRA adapters saved in the adapters folder, then the shipped ones, with their cards; read from disk at each call,
        so an adapter saved by another session or process is there at once."""
        return list_adapters(self.settings.adapters_dir, user=bool(self.settings.adapters_dir))

    def adapters(self, backend: str | None = None) -> list[AdapterInfo]:
        """The saved adapters a backend (default: the app's) can load: trained on its model and prompt version."""
        return compatible_adapters(self.get_backend(backend), self.settings.adapters_dir, user=bool(self.settings.adapters_dir))

    def method_names(self) -> list[str]:
        """Every method the Compare tab offers: the built-in ones, then one per adapter the default backend can load."""
        return [*method_names(), *(a.method for a in self.adapters())]

    def default_methods(self) -> list[str]:
        """The methods ticked when a page opens and asked when an API call names none: the built-in ones and the
        shipped adapters the default backend can load (lora:default)."""
        return [*method_names(), *(a.method for a in self.adapters() if a.shipped)]

    def model_lock(self, name: str | None = None) -> ModelGate:
        """The lock held while a backend's model answers: hold it to change the model (e.g. train an adapter)
        without a Compare request answering in between."""
        return self._model_locks[name or self.settings.backend]
