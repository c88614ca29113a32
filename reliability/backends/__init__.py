"""Backend registry: names map to lazy "module:Class" strings so startup never imports torch."""
from __future__ import annotations

import importlib

from reliability.backends.base import Backend
from reliability.errors import UnknownNameError, missing_package

DEFAULT_BACKEND = "cascade"

BACKENDS: dict[str, str] = {
    "cascade": "reliability.backends.cascade:CascadeBackend",
    "qwen2-audio": "reliability.backends.qwen2_audio:Qwen2AudioBackend",
    "openai": "reliability.backends.openai_backend:OpenAIBackend",
    "scripted": "reliability.backends.scripted:ScriptedBackend",
}

# what the app says under its backend menu: who answers, and what that model cannot do
BACKEND_NOTES: dict[str, str] = {
    "cascade": (
        "**Not an audio LLM.** Whisper base (transcript), YAMNet (sound tags), musicnn (music tags) and loudness are "
        "written down as text evidence, and Qwen2.5-Coder-1.5B picks among the options or says \"I don't know\" when the "
        "evidence does not clearly lift one option over the others, or when the options are names, colours or numbers "
        "nobody says in the clip. MCoT reasons over the evidence before it picks. It hears only what the listeners write: "
        "no pitch, emotion, speaker or order of events. On 121 questions about real recordings (docs/DEV_SET.md) the "
        "baseline answered 70 % of the answerable ones correctly; IDK prompting kept 53 of its 62 right answers and "
        "abstained on all 33 unanswerable ones; the shipped LoRA adapter (lora:default) kept 54 and abstained on 14. "
        "Limits: reliability/demo/MODEL_CARD.md."
    ),
    "qwen2-audio": "Qwen2-Audio through transformers: the model hears the clip itself (the first 30 s).",
    "openai": "A model behind an OpenAI-compatible server (vLLM, a hosted API, or `python -m reliability serve`).",
    "scripted": "Scripted replies for tests: not a model.",
}

# the extra of pyproject.toml that installs what each backend imports (the scripted one needs nothing more)
BACKEND_EXTRAS: dict[str, str] = {"cascade": "cascade", "qwen2-audio": "qwen", "openai": "openai"}

# offered in the app's menu only when the command line chose them: the test backend, and openai,
# which means nothing without its server's arguments
MENU_ONLY_AS_DEFAULT = ("scripted", "openai")


def backend_class(name: str) -> type[Backend]:
    """Resolve a registered backend name to its class (imports its module)."""
    if name not in BACKENDS:
        raise UnknownNameError("backend", name, list(BACKENDS))
    module, _, cls = BACKENDS[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        if name not in BACKEND_EXTRAS or (exc.name or "").split(".")[0] in ("reliability", "annotations"):
            raise
        raise missing_package(exc, f"backend {name!r}", BACKEND_EXTRAS[name]) from exc


def get_backend(name: str = DEFAULT_BACKEND, **kwargs) -> Backend:
    """Build a backend by name; kwargs go to its constructor (e.g. model_id, device)."""
    return backend_class(name)(**kwargs)


def trainable_backends() -> list[str]:
    """Names of the backends whose language model LoRA can train (imports every backend's module)."""
    return [name for name in sorted(BACKENDS) if backend_class(name).supports_training]


__all__ = [
    "BACKENDS", "BACKEND_EXTRAS", "BACKEND_NOTES", "DEFAULT_BACKEND", "MENU_ONLY_AS_DEFAULT", "Backend", "backend_class", "get_backend", "trainable_backends",
]
