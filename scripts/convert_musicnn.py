"""Rebuild reliability/backends/cascade/musicnn_mtt.onnx from the musicnn wheel (dev time only: the lab never runs TensorFlow).

The `musicnn` 0.1.0 wheel (ISC) ships TF1 checkpoints. This script builds its MTT_musicnn graph once
with is_training fixed to False (so batch norm uses its moving averages and dropout is off),
restores the weights (a failed restore is an error here, not musicnn's silent bare `except`),
freezes the variables into constants, converts the graph with tf2onnx (opset 17), checks the ONNX
scores against TensorFlow's, and writes MUSICNN-LICENSE.txt beside it: the ISC notice and the provenance.

Run it in a throwaway virtual environment, never the project's (TensorFlow is about 1.3 GB):

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu tf_keras tf2onnx onnxruntime librosa
    /tmp/tfenv/bin/pip download musicnn==0.1.0 --no-deps -d /tmp/musicnn
    /tmp/tfenv/bin/python scripts/convert_musicnn.py --wheel /tmp/musicnn/musicnn-0.1.0-py3-none-any.whl

`--compare CLIP ...` also tags audio files three ways and prints the largest score differences:
musicnn's own TF pipeline (its float16 log mel), the same with a float32 log mel, and the lab's
MusicTagger on the ONNX file.

A rebuild gives the same weights and scores, but not the same bytes: tf2onnx numbers the nodes it
adds in an order that varies between runs. MUSICNN-LICENSE.txt records the SHA-256 of the file written.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the lab's front end, for --compare

from reliability.backends.cascade import music  # noqa: E402

OPSET = 17
MODEL = "MTT_musicnn"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frozen_graph(package: Path):
    """The MTT_musicnn inference graph with its weights as constants, and a TF function to run it."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # musicnn's tf.compat.v1.layers need tf_keras under TF 2.16+
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    from musicnn import models

    graph = tf.Graph()
    with graph.as_default(), tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, music.PATCH_FRAMES, music.N_MELS], name="x")
        logits = models.define_model(x, False, MODEL, len(music.MTT_LABELS))[0]
        tf.nn.sigmoid(logits, name="tags")
    with tf.compat.v1.Session(graph=graph) as sess:
        tf.compat.v1.train.Saver().restore(sess, str(package / MODEL) + "/")
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["model/tags"])

    run_graph = tf.Graph()
    with run_graph.as_default():
        tf.compat.v1.import_graph_def(frozen, name="")
    session = tf.compat.v1.Session(graph=run_graph)
    return frozen, lambda batch: session.run(music.OUTPUT_NAME, {music.INPUT_NAME: batch})


def convert(frozen, out: Path) -> None:
    import tf2onnx

    tf2onnx.convert.from_graph_def(
        frozen, input_names=[music.INPUT_NAME], output_names=[music.OUTPUT_NAME], opset=OPSET, output_path=str(out)
    )


def check(out: Path, run_tf) -> float:
    """Largest |ONNX - TF| score on patches of a synthetic sweep with noise (a realistic spread of log-mel values)."""
    rng = np.random.default_rng(0)
    t = np.arange(12 * 16000) / 16000
    samples = (0.3 * np.sin(2 * np.pi * (100 + 300 * t) * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    tagger = music.MusicTagger(model_path=out)
    return float(np.abs(tagger.patch_scores(samples) - run_tf(tagger.inputs(samples))).max())


def musicnn_taggram(clip: str, package: Path) -> np.ndarray:
    """musicnn's own extractor() on a file, in a fresh process: a second call in one process runs unrestored weights."""
    with tempfile.TemporaryDirectory() as tmp:
        code = (
            f"import sys, numpy; sys.path.insert(0, {str(package.parent)!r}); from musicnn.extractor import extractor; "
            f"numpy.save({tmp + '/t.npy'!r}, extractor({clip!r}, model={MODEL!r}, extract_features=False)[0])"
        )
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        return np.load(tmp + "/t.npy")


def compare(clips: list[str], out: Path, package: Path, run_tf) -> None:
    import librosa

    tagger = music.MusicTagger(model_path=out)
    for clip in clips:
        samples, _ = librosa.load(clip, sr=music.SAMPLE_RATE)  # as musicnn's batch_data loads a file
        mel = librosa.feature.melspectrogram(
            y=samples, sr=music.SAMPLE_RATE, hop_length=music.FFT_HOP, n_fft=music.FFT_SIZE, n_mels=music.N_MELS
        ).T
        librosa_float32 = run_tf(music.patches(np.log10(10000 * mel.astype(np.float32) + 1)))
        own = musicnn_taggram(clip, package)  # its float16 log mel
        lab = tagger.patch_scores(samples)
        top = ", ".join(f"{label} {score:.2f}" for label, score in tagger(samples)[:5])
        print(
            f"{clip}: {len(lab)} patches; max |lab - TF on librosa float32| {np.abs(lab - librosa_float32).max():.1e} "
            f"per patch, {np.abs(lab.mean(0) - librosa_float32.mean(0)).max():.1e} per clip; "
            f"max |lab - musicnn extractor (float16)| {np.abs(lab - own).max():.1e} per patch, "
            f"{np.abs(lab.mean(0) - own.mean(0)).max():.1e} per clip; top: {top}"
        )


def versions() -> str:
    from importlib.metadata import version

    return ", ".join(f"{name} {version(name)}" for name in ("tensorflow", "tf_keras", "tf2onnx", "onnx"))


def provenance(wheel: Path, package: Path, out: Path) -> str:
    licence = (package.parent / "musicnn-0.1.0.dist-info" / "LICENSE.md").read_text().strip()
    return f"""musicnn_mtt.onnx is the MTT_musicnn model of the musicnn package (Jordi Pons, Xavier Serra;
https://github.com/jordipons/musicnn), trained on MagnaTagATune, converted to ONNX. Its licence (ISC):

{licence}

Provenance
- source: {wheel.name} from PyPI, SHA-256 {sha256(wheel)}
- converted by scripts/convert_musicnn.py: graph built with is_training=False, weights restored from
  musicnn/{MODEL}/, frozen with convert_variables_to_constants, converted with tf2onnx (opset {OPSET})
- tools: {versions()}
- command: python scripts/convert_musicnn.py --wheel {wheel.name}
- input {music.INPUT_NAME}: float32 [batch, {music.PATCH_FRAMES}, {music.N_MELS}] log10(10000 mel + 1) patches of 3 s
  (16 kHz, n_fft {music.FFT_SIZE}, hop {music.FFT_HOP}, {music.N_MELS} mels); output {music.OUTPUT_NAME}: float32
  [batch, 50] sigmoids of the MTT tags in musicnn/configuration.py's MTT_LABELS order
- musicnn_mtt.onnx SHA-256 {sha256(out)}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="musicnn-0.1.0-py3-none-any.whl (pip download musicnn==0.1.0 --no-deps)")
    parser.add_argument("--out", type=Path, default=music.MODEL_PATH, help="where to write the ONNX file")
    parser.add_argument("--compare", nargs="*", default=[], metavar="CLIP", help="audio files to tag with TF and ONNX")
    args = parser.parse_args()
    if not args.wheel.is_file():
        sys.exit(f"no wheel at {args.wheel}: pip download musicnn==0.1.0 --no-deps -d DIR")
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(args.wheel) as zf:
            zf.extractall(tmp)
        sys.path.insert(0, tmp)
        package = Path(tmp) / "musicnn"
        frozen, run_tf = frozen_graph(package)
        convert(frozen, args.out)
        print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); max |ONNX - TF| {check(args.out, run_tf):.2e}")
        compare(args.compare, args.out, package, run_tf)
        notice = args.out.with_name("MUSICNN-LICENSE.txt")
        notice.write_text(provenance(args.wheel, package, args.out))
        print(f"wrote {notice}")


if __name__ == "__main__":
    main()
