"""Saved LoRA adapters on disk: where they live, which exist, their cards, and loading them onto a running backend.

An adapter is a folder `<adapters dir>/<name>/` in standard PEFT format (adapter_config.json +
adapter_model.safetensors) with the lab's `card.json` beside them. Every adapter found is offered as
the method "lora:<name>". Nothing here imports torch, so the CLI and the app can list adapters cheaply.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.backends.base import Backend
from reliability.errors import BackendError, UnknownNameError
from reliability.methods import LORA_PREFIX

ADAPTERS_ENV = "RELIABILITY_ADAPTERS"
CONFIG_FILE = "adapter_config.json"
CARD_FILE = "card.json"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")  # a folder name on every OS, and readable in "lora:<name>"


@dataclass(frozen=True)
class AdapterInfo:
    """A saved adapter: its name, folder and card (empty for an adapter trained elsewhere)."""

    name: str
    path: str
    card: dict[str, Any] = field(default_factory=dict)

    @property
    def method(self) -> str:
        return f"{LORA_PREFIX}{self.name}"


def default_adapters_dir() -> Path:
    """$RELIABILITY_ADAPTERS, else `adapters/` in the user's data folder (beside the lab database)."""
    if os.environ.get(ADAPTERS_ENV):
        return Path(os.environ[ADAPTERS_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("reliability-lab")) / "adapters"


def check_name(name: str) -> str:
    """An adapter name usable as a folder and in "lora:<name>", or ValueError naming the rule."""
    if not NAME_RE.fullmatch(name or ""):
        raise ValueError(f"adapter name {name!r}: use letters, digits, '.', '_' or '-' (at most 80, not starting with '.', '_' or '-')")
    return name


def list_adapters(adapters_dir: str | os.PathLike | None = None) -> list[AdapterInfo]:
    """Every adapter folder (one holding adapter_config.json) in `adapters_dir`, by name; [] if it does not exist."""
    root = Path(adapters_dir) if adapters_dir is not None else default_adapters_dir()
    if not root.is_dir():
        return []
    found = []
    for folder in sorted(root.iterdir()):
        if (folder / CONFIG_FILE).is_file():
            found.append(AdapterInfo(folder.name, str(folder), read_card(folder)))
    return found


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """An adapter's card.json ({} when missing or unreadable: adapters trained elsewhere have none)."""
    try:
        return json.loads((Path(folder) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def get_adapter(name: str, adapters_dir: str | os.PathLike | None = None) -> AdapterInfo:
    """The saved adapter of this name, or UnknownNameError listing the saved ones."""
    found = {a.name: a for a in list_adapters(adapters_dir)}
    if name not in found:
        raise UnknownNameError("adapter", name, list(found))
    return found[name]


def loaded_adapters(backend: Backend) -> set[str]:
    """Names of the adapters a backend holds now (the model backends keep a dict or expose a method)."""
    held = getattr(backend, "adapters", None)
    if callable(held):
        held = held()
    return set(held or ())


def ensure_loaded(backend: Backend, names: Iterable[str], adapters_dir: str | os.PathLike | None = None) -> list[str]:
    """Load each named adapter onto the running backend unless it holds it already; returns the names loaded now.

    The base model is not reloaded: each adapter attaches to it and the LoRA method switches to it
    for its calls.
    """
    wanted = list(dict.fromkeys(names))
    if wanted and not backend.supports_adapters:
        raise BackendError(f"backend {backend.name!r} cannot load LoRA adapters")
    held = loaded_adapters(backend)
    loaded = []
    for name in wanted:
        if name in held:
            continue
        backend.load_adapter(get_adapter(name, adapters_dir).path, name)
        loaded.append(name)
    return loaded


def lora_names(methods: Iterable[str]) -> list[str]:
    """The adapter names of the "lora:<name>" entries in a list of method names."""
    return [m[len(LORA_PREFIX) :] for m in methods if m.startswith(LORA_PREFIX) and len(m) > len(LORA_PREFIX)]
