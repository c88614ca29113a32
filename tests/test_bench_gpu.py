"""The GPU benchmark stays runnable: its 7B model builds (on the meta device) with Qwen2-Audio-7B's shape, and it runs on the tiny model."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_gpu.py"
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_7b_model_has_qwen2_audio_7b_shape(bench):
    # the meta device holds shapes only: the code that builds 8.4 B parameters on a GPU, run without the memory
    backend = bench.build("7b", "meta", torch.bfloat16)
    hf = backend.hf
    assert sum(p.numel() for p in hf.parameters()) == pytest.approx(8.4e9, rel=0.01)
    assert {p.device.type for p in hf.parameters()} == {"meta"} and hf.dtype == torch.bfloat16
    assert (backend.device, backend.dtype) == ("meta", torch.bfloat16), "the backend takes the model's device and dtype"
    text, audio = hf.config.text_config, hf.config.audio_config
    assert (text.hidden_size, text.num_hidden_layers, text.intermediate_size, text.vocab_size) == (4096, 32, 11008, 156032)
    assert (audio.d_model, audio.encoder_layers, audio.encoder_attention_heads, audio.encoder_ffn_dim, audio.num_mel_bins) == (1280, 32, 20, 5120, 128)
    assert hf.config.audio_token_id == backend.processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")
    # a decode step reads the 32 layers and the output head: about 6.5 B bf16 parameters
    assert bench.decode_weight_bytes(hf) == pytest.approx(2 * 6.48e9 + 2 * 0.639e9, rel=0.01)


def test_the_benchmark_runs_on_the_tiny_model_and_prints_one_json_line(bench, capsys):
    bench.main(["--shape", "tiny", "--device", "cpu", "--batches", "1,2", "--new-tokens", "2", "--repeats", "1",
                "--clip-seconds", "1", "--lora-batch", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    figures = json.loads(lines[0])
    assert (figures["shape"], figures["device"], figures["dtype"]) == ("tiny", "cpu", "float32")
    assert set(figures["score_requests_per_s"]) == set(figures["generate_tokens_per_s"]) == {"1", "2"}
    assert all(v > 0 for v in [*figures["score_requests_per_s"].values(), *figures["generate_tokens_per_s"].values()])
    assert figures["lora_batch"] == 2 and figures["lora_step_seconds"] > 0 and figures["lora_loss"] > 0
    assert figures["ideal_decode_tokens_per_s"] > 0 and "decode_fraction_of_ideal" in figures["targets_met"]


def test_bad_flags_are_one_line_errors(bench, capsys):
    with pytest.raises(SystemExit):
        bench.parse_args(["--batches", "1,eight"])
    assert "comma-separated integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.parse_args(["--shape", "70b"])
