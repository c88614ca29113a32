"""The one interface every backend implements: a batch of requests in, generations out; LoRA training where one can."""
from __future__ import annotations

import abc
import contextlib
import re
import warnings

from reliability.errors import BackendError
from reliability.types import Generation, Request


class Backend(abc.ABC):
    """A model that answers chat prompts about a clip (or about no clip).

    Methods are written against this interface only, so every method runs on every backend.
    Subclasses that can hold LoRA adapters set `supports_adapters` and override the adapter calls;
    those whose language model can be trained (reliability.training.lora) set `supports_training` and
    override the training calls.
    """

    name: str = "base"
    supports_adapters: bool = False
    supports_training: bool = False

    def __init__(self, model_id: str = ""):
        self.model_id = model_id
        self.adapter: str | None = None  # name of the active adapter, None for the base model
        # name -> version of the weights loaded under it (reliability.training.adapters.ensure_loaded), so that runs of a
        # rebuilt adapter of the same name never reuse the old one's cached answers
        self.adapter_versions: dict[str, str] = {}

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

    def adapter_base(self) -> dict:
        """What an adapter trained on this backend depends on, known without loading the model: an adapter whose card
        records other values is refused (reliability.training.adapters.check_compatible). Backends add their model's
        hash and their prompt version where they have them."""
        return {"backend": self.name, "model_id": self.model_id}

    def training_model(self):
        """The transformers causal LM that LoRA trains: the trainer runs its `.model` (the decoder) and its embeddings."""
        raise _cannot_train(self.name)

    def adapter_host(self):
        """The object a new adapter attaches to: the training model, or the PeftModel around it once the backend loaded one."""
        return self.training_model()

    def training_tokenizer(self):
        """The training model's tokenizer: the trainer tokenises target replies with it and pads with its pad token."""
        raise _cannot_train(self.name)

    def lora_targets(self, top: int = 0) -> str:
        """PEFT target_modules regex of the modules LoRA wraps: the language model's projections, in its top `top` layers (0: all)."""
        return lm_target_modules_regex(self.training_model(), self.name, top)

    def training_prompt(self, request: Request) -> dict:
        """The prompt exactly as inference encodes it, on the CPU: "input_ids" (P,), plus any audio inputs the model takes."""
        raise _cannot_train(self.name)

    def training_inputs(self, batch: dict) -> dict:
        """A collated training batch as the training model takes it: on the device of its input embeddings."""
        device = self.training_model().get_input_embeddings().weight.device
        return {k: v.to(device) for k, v in batch.items()}


def _cannot_train(backend: str) -> BackendError:
    # the trainer names the trainable backends (reliability.backends.trainable_backends); the registry imports this module
    return BackendError(f"backend {backend!r} cannot be trained")


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


LM_PROJECTIONS = r"\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"


def lm_target_modules_regex(model, backend: str, top: int = 0) -> str:
    """A PEFT `target_modules` regex for the language model's attention and MLP projections only.

    An audio encoder also has `self_attn.q_proj`-style names, so a plain name list would wrap it
    too. The language model is found as the module path whose layers carry `mlp.gate_proj` (the
    Whisper-style encoder has fc1/fc2 instead), which holds whatever transformers calls the path.
    With `top` > 0 only the last `top` layers are wrapped: the frozen layers below then need no
    backward pass, which is most of a training step's cost on a CPU.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    found = [re.fullmatch(r"(.+)\.layers\.(\d+)\.mlp\.gate_proj", name) for name, _ in inner.named_modules()]
    found = [m for m in found if m]
    prefixes = {m.group(1) for m in found}
    if len(prefixes) != 1:
        raise BackendError(f"{backend}: expected one language model with mlp.gate_proj layers, found {sorted(prefixes)}")
    count = max(int(m.group(2)) for m in found) + 1
    if top < 0 or top > count:
        raise BackendError(f"{backend}: the language model has {count} layers; cannot train the top {top}")
    layers = r"\d+" if top in (0, count) else "(" + "|".join(str(i) for i in range(count - top, count)) + ")"
    return re.escape(prefixes.pop()) + r"\.layers\." + layers + LM_PROJECTIONS


@contextlib.contextmanager
def adapters_coexist():
    """Silence PEFT's warnings that adapters coexist and that deleting the active one activates another: both are
    intended where backends and the trainer hold several adapters (they re-apply their own choice right after)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(Already found a `peft_config`|Adapter .* was active which is now deleted)")
        yield
