"""Backend registry: names map to lazy "module:Class" strings so startup never imports torch."""
from __future__ import annotations

import importlib

from reliability.backends.base import Backend
from reliability.errors import UnknownNameError

DEFAULT_BACKEND = "cascade"

BACKENDS: dict[str, str] = {
    "cascade": "reliability.backends.cascade:CascadeBackend",
    "qwen2-audio": "reliability.backends.qwen2_audio:Qwen2AudioBackend",
    "openai": "reliability.backends.openai_backend:OpenAIBackend",
    "scripted": "reliability.backends.scripted:ScriptedBackend",
}

# offered in the app's menu only when the command line chose them: the test backend, and openai,
# which means nothing without its server's arguments
MENU_ONLY_AS_DEFAULT = ("scripted", "openai")


def backend_class(name: str) -> type[Backend]:
    """Resolve a registered backend name to its class (imports its module)."""
    if name not in BACKENDS:
        raise UnknownNameError("backend", name, list(BACKENDS))
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def get_backend(name: str = DEFAULT_BACKEND, **kwargs) -> Backend:
    """Build a backend by name; kwargs go to its constructor (e.g. model_id, device)."""
    return backend_class(name)(**kwargs)


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "MENU_ONLY_AS_DEFAULT", "Backend", "backend_class", "get_backend"]
