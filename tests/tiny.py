"""A tiny random Qwen2-Audio saved like a real checkpoint, so tests and benchmarks run the real code path offline.

Nothing here is downloaded: the tokenizer is a byte-level BPE trained on a built-in corpus, the
weights are drawn from a seed. The folder it writes loads with `from_pretrained(path)` exactly as
Qwen/Qwen2-Audio-7B-Instruct does, through the same processor, chat template and generate code.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from reliability.errors import UnknownNameError

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
VOCAB_SIZE = 400  # bytes (256) + merges + special tokens: enough to make English words multi-byte tokens
MARKER = "tiny.json"  # written last, holds the build settings: a folder without it is a crashed build

# Model shapes by name: (language model, audio encoder) settings. "7b" is Qwen2-Audio-7B-Instruct's, for
# benchmarks with random weights (8.4 B parameters); "tiny" is the 2-layer model the tests run.
SHAPES = {
    "tiny": (
        dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2),
        dict(d_model=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64),
    ),
    "7b": (
        dict(
            vocab_size=156032, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
            num_key_value_heads=32, max_position_embeddings=8192, rms_norm_eps=1e-5,
        ),
        dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120),
    ),
}

# The real Qwen2-Audio-7B-Instruct template: a default system turn, and each audio content item
# rendered as "Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>\n" before the turn's text.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}"
    "<|im_start|>assistant\n"
    "{% endif %}"
)

# Words the lab's prompts and MMAU questions use, so that they tokenize into a few hundred real merges.
CORPUS = """
You are a helpful assistant. Listen to the audio and answer the question.
What is the main sound in the audio? Which instrument is playing? What is the speaker saying?
Choose one of the options: A, B, C or D. Answer with the option text only.
If you are not sure, answer: I don't know. I do not know the answer.
The answer is a dog barking. The answer is a cat. A bird is singing. Rain is falling on the roof.
A man is speaking. A woman is speaking. Two people talk in a quiet room. A child laughs.
The music is a piano. The music is a guitar. Drums and bass play a fast rhythm. A violin plays slowly.
The mood of the music is happy, sad, calm or angry. The tempo is fast. The song is in a minor key.
The train leaves at nine. The car engine starts. A door closes. Glass is breaking. Water is running.
Classify the audio as speech, sound or music. Transcribe the speech. Describe the sound. Describe the music.
Let us think step by step. First, listen to the audio. Then compare it with each option. Finally answer.
Question: Options: Audio 1: speech sound music yes no true false none of the above
"""


def build_tokenizer():
    """A byte-level BPE over CORPUS with Qwen's special tokens, wrapped as Qwen2Tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    # the full byte alphabet keeps every string encodable, however few merges the corpus yields
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(CORPUS.strip().splitlines(), trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    return Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        extra_special_tokens=list(SPECIAL_TOKENS[1:]),  # <|endoftext|> is already unk/eos/pad
        chat_template=CHAT_TEMPLATE,
    )


def build_processor():
    """The real Qwen2AudioProcessor around the tiny tokenizer and Whisper's 128-bin front end."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    return Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=build_tokenizer(),
        chat_template=CHAT_TEMPLATE,
    )


def build_model(tokenizer, seed: int = 0, std: float | None = 0.3):
    """A 2-layer, hidden-32 Qwen2AudioForConditionalGeneration with seeded random weights.

    `std` re-draws every trainable matrix from N(0, std): with the default init (0.02) every prompt
    gives the same argmax, which would make "audio changes the answer" checks vacuous. None keeps
    transformers' init.
    """
    import torch
    from transformers import Qwen2AudioForConditionalGeneration

    config = model_config(tokenizer, "tiny")
    torch.manual_seed(seed)
    model = Qwen2AudioForConditionalGeneration(config).eval()
    if std is not None:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in model.parameters():
                # norms stay at 1 and biases at 0; the frozen sinusoidal positions are not trainable
                if param.requires_grad and param.dim() >= 2:
                    param.copy_(torch.randn(param.shape, generator=gen) * std)
    model.generation_config = generation_config(tokenizer)
    return model


def model_config(tokenizer, shape: str = "tiny"):
    """A Qwen2AudioConfig of a named shape (see SHAPES) whose special token ids are the tokenizer's.

    A larger vocabulary than the tokenizer's is fine: the extra rows are never read.
    """
    from transformers import Qwen2AudioConfig

    if shape not in SHAPES:
        raise UnknownNameError("model shape", shape, list(SHAPES))
    text, audio = SHAPES[shape]
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    text_config = {
        "model_type": "qwen2",
        "vocab_size": len(tokenizer),
        "max_position_embeddings": 2048,
        **text,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    audio_config = {
        "model_type": "qwen2_audio_encoder",
        "num_mel_bins": 128,
        **audio,
        "max_source_positions": 1500,  # the encoder insists on 3000 mel frames (30 s); cannot shrink
    }
    return Qwen2AudioConfig(audio_config=audio_config, text_config=text_config, audio_token_index=ids["<|AUDIO|>"])


def generation_config(tokenizer):
    """As in the real Instruct checkpoint: a turn ends at <|im_end|>, a document at <|endoftext|>."""
    from transformers import GenerationConfig

    end, turn = tokenizer.convert_tokens_to_ids("<|endoftext|>"), tokenizer.convert_tokens_to_ids("<|im_end|>")
    return GenerationConfig(eos_token_id=[end, turn], pad_token_id=end, bos_token_id=end)


def save_tiny_qwen2_audio(path: str | os.PathLike, seed: int = 0, std: float | None = 0.3) -> Path:
    """Write a tiny model + processor to `path` (loadable with from_pretrained) and return it.

    A folder already holding a tiny model built with the same seed and std is reused as is.
    """
    path = Path(path)
    settings = {"seed": seed, "std": std}
    if (path / MARKER).is_file() and json.loads((path / MARKER).read_text()) == settings:
        return path
    processor = build_processor()
    model = build_model(processor.tokenizer, seed=seed, std=std)
    path.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target and move it in whole, so a concurrent reader never sees half a folder
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    (staging / MARKER).write_text(json.dumps(settings))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(staging, path)
    return path


def tiny_qwen2_audio(cache_dir: str | os.PathLike, seed: int = 0, std: float | None = 0.3) -> Path:
    """The tiny model for `seed` under `cache_dir`, built on first use."""
    return save_tiny_qwen2_audio(Path(cache_dir) / f"tiny-qwen2-audio-seed{seed}-std{std}", seed=seed, std=std)
