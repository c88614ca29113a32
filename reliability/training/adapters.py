"""Saved LoRA adapters on disk: where they live, which exist, their cards, and loading them onto a running backend.

An adapter is a folder `<adapters dir>/<name>/` in standard PEFT format (adapter_config.json +
adapter_model.safetensors) with the lab's `card.json` beside them. Adapters are looked for in the
user's adapters folder, then among those shipped with the lab (reliability/adapters/), so a user's
adapter of the same name wins. Every adapter found is offered as the method "lora:<name>"; one whose
card says it was trained on another base model or prompt is refused before it loads. Nothing here
imports torch, so the CLI and the app can list adapters cheaply.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.backends.base import Backend
from reliability.errors import BackendError, UnknownNameError
from reliability.methods import LORA_PREFIX

ADAPTERS_ENV = "RELIABILITY_ADAPTERS"
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "adapters"  # package data: adapters shipped in the repository
# card "base" entries an adapter must share with the running backend (Backend.adapter_base); others are only recorded
MUST_MATCH = ("backend", "model_id", "model_hash", "prompt_version")
REBUILD = "python -m reliability build-adapter (docs/LORA.md)"
CONFIG_FILE = "adapter_config.json"
CARD_FILE = "card.json"
WEIGHTS_FILE = "adapter_model.safetensors"
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")  # a folder name on every OS, and readable in "lora:<name>"


@dataclass(frozen=True)
class AdapterInfo:
    """A saved adapter: its name, folder and card (empty for an adapter trained elsewhere)."""

    name: str
    path: str
    card: dict[str, Any] = field(default_factory=dict)
    shipped: bool = False  # found among the adapters shipped with the lab, not in the user's folder

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


def list_adapters(adapters_dir: str | os.PathLike | None = None, user: bool = True) -> list[AdapterInfo]:
    """Every adapter, by name: the folders holding adapter_config.json in the user's `adapters_dir` (default:
    default_adapters_dir(); skipped with user=False), then the shipped ones of other names."""
    found: dict[str, AdapterInfo] = {}
    roots = [(Path(adapters_dir) if adapters_dir is not None else default_adapters_dir(), False)] if user else []
    for root, shipped in [*roots, (SHIPPED_DIR, True)]:
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if folder.name not in found and (folder / CONFIG_FILE).is_file():
                found[folder.name] = AdapterInfo(folder.name, str(folder), read_card(folder), shipped)
    return sorted(found.values(), key=lambda a: a.name)


def read_card(folder: str | os.PathLike) -> dict[str, Any]:
    """An adapter's card.json ({} when missing or unreadable: adapters trained elsewhere have none)."""
    try:
        return json.loads((Path(folder) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def get_adapter(name: str, adapters_dir: str | os.PathLike | None = None, user: bool = True) -> AdapterInfo:
    """The saved adapter of this name (the user's, else the shipped one), or UnknownNameError listing the saved ones."""
    found = {a.name: a for a in list_adapters(adapters_dir, user)}
    if name not in found:
        raise UnknownNameError("adapter", name, list(found))
    return found[name]


def loaded_adapters(backend: Backend) -> set[str]:
    """Names of the adapters a backend holds now (the model backends keep a dict or expose a method)."""
    held = getattr(backend, "adapters", None)
    if callable(held):
        held = held()
    return set(held or ())


def incompatibility(card: dict[str, Any], base: dict[str, Any]) -> str | None:
    """Why an adapter with this card cannot run on a backend whose Backend.adapter_base() is `base`, or None if it can.

    Only what both record is compared: a card without a base (an adapter trained elsewhere) is taken on trust.
    """
    trained = card.get("base") or {}
    if all(trained.get(k) in (None, base.get(k)) or base.get(k) is None for k in MUST_MATCH):
        return None
    return f"was trained on {_base_text(trained, base)} but the backend runs {_base_text(base, trained)}"


def _base_text(base: dict[str, Any], other: dict[str, Any]) -> str:
    """e.g. "qwen2.5-coder-1.5b (cascade-4)"; the backend and the model hash are named only where they tell the two apart."""
    text = str(base.get("model_id") or "?")
    if base.get("backend") != other.get("backend"):
        text = f"{base.get('backend')}/{text}"
    if base.get("model_id") == other.get("model_id") and base.get("model_hash") != other.get("model_hash"):
        text += f" [weights {base.get('model_hash')}]"
    return text + (f" ({base['prompt_version']})" if base.get("prompt_version") else "")


def check_compatible(adapter: AdapterInfo, backend: Backend) -> None:
    """Refuse, with one line saying why and how to retrain, an adapter trained on another base model or prompt version."""
    why = incompatibility(adapter.card, backend.adapter_base())
    if why:
        raise BackendError(f"adapter {adapter.name!r} {why}: retrain it with {REBUILD}")


def compatible_adapters(backend: Backend, adapters_dir: str | os.PathLike | None = None, user: bool = True) -> list[AdapterInfo]:
    """The saved adapters this backend can load (list_adapters less the ones check_compatible refuses)."""
    if not backend.supports_adapters:
        return []
    base = backend.adapter_base()
    return [a for a in list_adapters(adapters_dir, user) if incompatibility(a.card, base) is None]


def ensure_loaded(
    backend: Backend, names: Iterable[str], adapters_dir: str | os.PathLike | None = None, user: bool = True
) -> list[str]:
    """Load each named adapter onto the running backend unless it holds it already; returns the names loaded now.

    Adapters are found in the user's folder, then among the shipped ones (see list_adapters); one trained
    on another base model or prompt version is refused (check_compatible). The base model is not
    reloaded: each adapter attaches to it and the LoRA method switches to it for its calls.
    """
    wanted = list(dict.fromkeys(names))
    if wanted and not backend.supports_adapters:
        raise BackendError(f"backend {backend.name!r} cannot load LoRA adapters")
    held = loaded_adapters(backend)
    loaded = []
    for name in wanted:
        if name in held:
            continue
        adapter = get_adapter(name, adapters_dir, user)
        check_compatible(adapter, backend)
        backend.load_adapter(adapter.path, name)
        version = weights_version(adapter.path)
        if version:
            backend.adapter_versions[name] = version
        loaded.append(name)
    return loaded


def load_shipped(backend: Backend, adapters_dir: str | os.PathLike | None = None, user: bool = True) -> list[str]:
    """Load the shipped adapters this backend can run (a user's adapter of the same name shadows one); returns the names loaded now."""
    return ensure_loaded(backend, [a.name for a in compatible_adapters(backend, adapters_dir, user) if a.shipped], adapters_dir, user)


def weights_version(folder: str | os.PathLike) -> str | None:
    """12 hex digits of the SHA-256 of an adapter's weights file (tens of MB: well under a second); None without one."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def lora_names(methods: Iterable[str]) -> list[str]:
    """The adapter names of the "lora:<name>" entries in a list of method names."""
    return [m[len(LORA_PREFIX) :] for m in methods if m.startswith(LORA_PREFIX) and len(m) > len(LORA_PREFIX)]


@contextlib.contextmanager
def staged_folder(folder: Path, card: dict[str, Any]) -> Iterator[Path]:
    """A new folder to fill, moved in whole as `folder` (with `card` written into it) when the block ends without error.

    It is built beside the target: the app may list adapters while an adapter is being written.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        yield staging
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
