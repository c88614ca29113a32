"""The one interface every backend implements: a batch of requests in, generations out."""
from __future__ import annotations

import abc

from reliability.errors import BackendError
from reliability.types import Generation, Request


class Backend(abc.ABC):
    """A model that answers chat prompts about a clip (or about no clip).

    Methods are written against this interface only, so every method runs on every backend.
    Subclasses that can hold LoRA adapters set `supports_adapters` and override the adapter calls.
    """

    name: str = "base"
    supports_adapters: bool = False

    def __init__(self, model_id: str = ""):
        self.model_id = model_id
        self.adapter: str | None = None  # name of the active adapter, None for the base model

    @abc.abstractmethod
    def generate(self, requests: list[Request]) -> list[Generation]:
        """Answer each request; return one Generation per request, in order."""

    def agent_step(self, step: str, requests: list[Request]) -> list[Generation]:
        """Answer one helper step of the Task Agent for each request: "classify" or a tool name (prompts.AGENT_TOOLS).

        By default the model answers the step's prompt itself, as in the paper. A backend whose
        ears are separate tools (the cascade) answers from them instead.
        """
        return self.generate(requests)

    def choice_reply(self, choices: tuple[str, ...], index: int) -> str:
        """How this backend's reply names choice `index`; the LoRA trainer writes its targets this way."""
        return choices[index]

    def load_adapter(self, path: str, name: str) -> None:
        """Load a saved PEFT adapter under `name` without reloading the base model."""
        raise NotImplementedError(f"backend {self.name!r} cannot load adapters")

    def set_adapter(self, name: str | None) -> None:
        """Activate a loaded adapter by name, or the bare base model with None."""
        if name is not None:
            raise NotImplementedError(f"backend {self.name!r} cannot load adapters")
        self.adapter = None

    def describe(self) -> dict:
        """Identity recorded with every run: which backend, model and adapter answered."""
        return {"backend": self.name, "model_id": self.model_id, "adapter": self.adapter}


def with_clip_part(request: Request, backend: str, part: dict) -> list[dict]:
    """The request's chat turns with `part` (the clip, in the backend's format) opening the first user turn."""
    turns = [dict(m) for m in request.messages]
    if request.audio is None:
        return turns
    first_user = next((i for i, m in enumerate(turns) if m["role"] == "user"), None)
    if first_user is None:
        raise BackendError(f"{backend}: a request with audio needs a user turn to attach it to")
    turns[first_user] = {"role": "user", "content": [part, {"type": "text", "text": turns[first_user]["content"]}]}
    return turns
