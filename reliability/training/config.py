"""LoRA training settings as a dataclass, free of torch so the CLI can build its flags without loading a model."""
from __future__ import annotations

from dataclasses import dataclass, field

PRECISIONS = ("auto", "bf16", "fp32")


@dataclass(frozen=True)
class TrainConfig:
    """LoRA hyperparameters and the training loop's settings. CLI flags map to these fields."""

    name: str = field(default="", metadata={"help": "adapter name: its folder and the method lora:<name> (default: from the dataset, K@N and alpha)"})
    rank: int = field(default=8, metadata={"help": "LoRA rank r"})
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha; the update is scaled by alpha / rank"})
    layers: int = field(default=0, metadata={"help": "LoRA on the language model's top N layers only (0: every layer); the frozen layers below need no backward pass"})
    dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch's input"})
    learning_rate: float = field(default=2e-4, metadata={"help": "AdamW learning rate (constant)"})
    epochs: int = field(default=1, metadata={"help": "passes over the dataset (the paper trains 1 epoch)"})
    batch_size: int = field(default=1, metadata={"help": "examples per forward pass"})
    grad_accum: int = field(default=4, metadata={"help": "forward passes per optimizer step (gradient accumulation)"})
    max_length: int = field(default=2048, metadata={"help": "examples longer than this many tokens are skipped, never cut"})
    seed: int = field(default=0, metadata={"help": "seeds the LoRA init, the shuffling and dropout"})
    precision: str = field(
        default="auto",
        metadata={"help": "bf16 (autocast matmuls; LoRA weights and optimizer stay float32), fp32, or auto: bf16 where the hardware has it (CUDA, CPUs with AVX512-BF16 or AMX)"},
    )
    overwrite: bool = field(default=False, metadata={"help": "replace a saved adapter of the same name"})

    def __post_init__(self):
        for name in ("rank", "epochs", "batch_size", "grad_accum", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.layers < 0:
            raise ValueError(f"layers must be 0 (all) or more, got {self.layers}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.alpha <= 0 or self.learning_rate <= 0:
            raise ValueError(f"alpha and learning_rate must be positive, got {self.alpha} and {self.learning_rate}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
