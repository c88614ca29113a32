"""GPU benchmark of the Qwen2-Audio backend: option scoring and generation throughput, peak memory, a LoRA step, decode vs bandwidth.

`--shape 7b --device cuda` builds Qwen2-Audio-7B-Instruct's shape (8.4 B parameters) with random
bfloat16 weights created on the GPU, paired with the offline tiny processor (nothing is downloaded),
and measures through the backend on 10 s clips: option scoring requests/s and generation tokens/s at
each batch size, peak GPU memory, one LoRA training step, and the batch-1 decode rate against the
memory-bandwidth ideal. `--shape tiny --device cpu` runs the same code on the tiny model in seconds, so
the tests keep it working. Prints one JSON line; docs/GPU.md has the command and the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from reliability.audio import SAMPLE_RATE  # noqa: E402
from reliability.backends.qwen2_audio import Qwen2AudioBackend  # noqa: E402
from reliability.types import Decoding, Item, Request  # noqa: E402
from tests.tiny import SHAPES, build_processor, generation_config, model_config  # noqa: E402

QUESTION = "Which sound is heard in the clip? Choose one of the options."
CHOICES = ("a dog barking", "a car engine starting", "rain falling on a roof", "a piano playing slowly")  # MMAU asks 4
# spec memory bandwidth in bytes/s, by a substring of torch.cuda.get_device_name(); first match wins
BANDWIDTH = (("H200", 4.8e12), ("H100 NVL", 3.9e12), ("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("A100", 2.0e12))
TARGETS = {"score_batch8_vs_1": 3.0, "generate_batch32_vs_1": 10.0, "decode_fraction_of_ideal": 0.5}


def build(shape: str, device: str, dtype: torch.dtype, batch_size: int = 8) -> Qwen2AudioBackend:
    """The backend around a random model of `shape`, created directly on `device` (no copy through host memory)."""
    from transformers import Qwen2AudioForConditionalGeneration

    processor = build_processor()
    torch.manual_seed(0)
    with torch.device(device):
        hf = Qwen2AudioForConditionalGeneration._from_config(model_config(processor.tokenizer, shape), dtype=dtype)
    hf.generation_config = generation_config(processor.tokenizer)
    return Qwen2AudioBackend.from_model(hf, processor, model_id=f"random-qwen2-audio-{shape}", batch_size=batch_size)


def clips(n: int, seconds: float) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32) for _ in range(n)]


def requests(n: int, seconds: float, decoding: Decoding, choices: tuple[str, ...] = ()) -> list[Request]:
    """n requests, each with its own clip of `seconds` (0: no audio)."""
    return [Request([{"role": "user", "content": QUESTION}], clip if seconds > 0 else None, decoding, choices) for clip in clips(n, seconds)]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def best_seconds(fn, device: str, repeats: int) -> float:
    """The fastest of `repeats` timed calls, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def decode_weight_bytes(hf) -> int:
    """Bytes read per decoded token: the language model's weights and output head, without the input
    embedding table (a step reads one row of it) and without the audio encoder (it runs once, in prefill)."""
    lm = hf.model.language_model
    embed = lm.get_input_embeddings().weight
    params = [p for p in lm.parameters() if p is not embed] + list(hf.get_output_embeddings().parameters())
    return sum(p.numel() * p.element_size() for p in params)


def bandwidth(device: str) -> tuple[float, str]:
    """The memory bandwidth the ideal decode rate is measured against: the card's spec where known, else a measured copy."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        for key, spec in BANDWIDTH:
            if key in name:
                return spec, f"spec of {name}"
    size = (1 << 30) if device.startswith("cuda") else (1 << 26)  # bytes
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), device, repeats=5)
    return 2 * size / seconds, "measured copy (read + write)"


def lora_step(backend: Qwen2AudioBackend, batch: int, seconds: float, device: str) -> dict:
    """One LoRA optimizer step at `batch` examples with clips, timed from the loop's start to the step's end."""
    from reliability.training.idk_dataset import TrainingExample
    from reliability.methods import Baseline
    from reliability.training.config import TrainConfig
    from reliability.training.lora import train_lora

    marks: list[float] = []

    def progress(step, total, message):
        sync(device)
        marks.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as folder:
        examples = []
        for i, clip in enumerate(clips(batch, seconds)):
            path = None
            if seconds > 0:
                path = str(Path(folder) / f"clip{i}.wav")
                sf.write(path, clip, SAMPLE_RATE)
            item = Item(f"b{i}", QUESTION, CHOICES, CHOICES[i % len(CHOICES)], "sound", path, "bench")
            condition = "full" if path else "none"
            examples.append(TrainingExample(item, Baseline().messages(item), item.answer, 1, 1, 1, condition))
        precision = "bf16" if backend.dtype == torch.bfloat16 else "fp32"
        config = TrainConfig(name="bench", batch_size=batch, grad_accum=1, dropout=0.0, precision=precision, overwrite=True)
        result = train_lora(backend, examples, config, Path(folder) / "adapters", progress=progress)
    assert len(result.losses) == 1 and len(marks) == 2, f"expected one step, got losses {result.losses}"
    return {"lora_batch": batch, "lora_step_seconds": round(marks[1] - marks[0], 3), "lora_loss": round(result.losses[0], 4)}


def run(args: argparse.Namespace) -> dict:
    """Every figure of the benchmark, as one flat dict."""
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if args.device.startswith("cuda") else torch.float32)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(args.device)
    start = time.perf_counter()
    backend = build(args.shape, args.device, dtype)
    sync(args.device)
    built = time.perf_counter() - start
    hf = backend.hf
    # random weights stop at random places; every row generating exactly new_tokens makes tokens/s comparable
    hf.generation_config.min_new_tokens = args.new_tokens
    figures = {
        "shape": args.shape,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "parameters": sum(p.numel() for p in hf.parameters()),
        "build_seconds": round(built, 2),
        "clip_seconds": args.clip_seconds,
        "choices": len(CHOICES),
        "new_tokens": args.new_tokens,
    }
    scoring, generating = {}, {}
    for batch in args.batches:
        backend.batch_size = batch
        scored = requests(batch, args.clip_seconds, Decoding(max_new_tokens=1), CHOICES)
        scoring[batch] = batch / best_seconds(lambda: backend.score_options(scored), args.device, args.repeats)
        asked = requests(batch, args.clip_seconds, Decoding(max_new_tokens=args.new_tokens))
        generating[batch] = batch * args.new_tokens / best_seconds(lambda: backend.generate(asked), args.device, args.repeats)
    figures["score_requests_per_s"] = {str(b): round(v, 3) for b, v in scoring.items()}
    figures["generate_tokens_per_s"] = {str(b): round(v, 2) for b, v in generating.items()}

    # batch-1 decode rate: n new tokens minus one new token leaves n-1 decode steps without the prefill
    backend.batch_size = 1
    hf.generation_config.min_new_tokens = 1
    prefill = best_seconds(lambda: backend.generate(requests(1, args.clip_seconds, Decoding(max_new_tokens=1))), args.device, args.repeats)
    hf.generation_config.min_new_tokens = args.new_tokens
    lone = requests(1, args.clip_seconds, Decoding(max_new_tokens=args.new_tokens))
    whole = best_seconds(lambda: backend.generate(lone), args.device, args.repeats)
    hf.generation_config.min_new_tokens = None
    decode = (args.new_tokens - 1) / max(whole - prefill, 1e-9)
    weight_bytes = decode_weight_bytes(hf)
    if args.bandwidth_gbs:
        bytes_per_s, source = args.bandwidth_gbs * 1e9, "given"
    else:
        bytes_per_s, source = bandwidth(args.device)
    ideal = bytes_per_s / weight_bytes
    figures.update(
        decode_tokens_per_s_batch1=round(decode, 2),
        decode_weight_bytes=weight_bytes,
        bandwidth_bytes_per_s=round(bytes_per_s),
        bandwidth_source=source,
        ideal_decode_tokens_per_s=round(ideal, 2),
        decode_fraction_of_ideal=round(decode / ideal, 3),
    )
    figures.update(lora_step(backend, args.lora_batch, args.clip_seconds, args.device))
    if args.device.startswith("cuda"):
        figures["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(args.device) / 2**30, 2)
    ratios = {}
    if 1 in scoring and 8 in scoring:
        ratios["score_batch8_vs_1"] = scoring[8] / scoring[1]
    if 1 in generating and 32 in generating:
        ratios["generate_batch32_vs_1"] = generating[32] / generating[1]
    ratios["decode_fraction_of_ideal"] = figures["decode_fraction_of_ideal"]
    figures["ratios"] = {k: round(v, 3) for k, v in ratios.items()}
    figures["targets_met"] = {k: v >= TARGETS[k] for k, v in ratios.items()}
    figures["total_seconds"] = round(time.perf_counter() - start, 1)
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny", help="model shape: tiny (tests) or 7b (Qwen2-Audio-7B)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:n]")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--batches", default="1,8,32", help="comma-separated batch sizes for scoring and generation")
    parser.add_argument("--clip-seconds", type=float, default=10.0, help="length of each request's clip; 0: no audio")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per figure (the best counts), after a warm-up")
    parser.add_argument("--lora-batch", type=int, default=8, help="examples in the timed LoRA step")
    parser.add_argument("--bandwidth-gbs", type=float, help="memory bandwidth in GB/s for the decode ideal (default: the card's spec, else measured)")
    args = parser.parse_args(argv)
    try:
        args.batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        parser.error(f"--batches takes comma-separated integers, got {args.batches!r}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible to torch")
    if args.new_tokens < 2 or min(args.batches) < 1 or args.repeats < 1 or args.lora_batch < 1 or args.clip_seconds < 0:
        parser.error("--new-tokens must be at least 2, batches, --repeats and --lora-batch at least 1, --clip-seconds at least 0")
    return args


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(run(parse_args(argv))))


if __name__ == "__main__":
    main()
