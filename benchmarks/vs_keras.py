"""The harness against the lecture's Keras models on the same job, side by side in one run:
peak resident memory, training speed and IMDb test accuracy.

The jobs (full IMDb: 25,000 reviews to train, all 25,000 test reviews to score; a whole-word
vocabulary of 20,000; batch 32; Adam at 1e-3):

- transformer: Keras's "text classification with Transformer" (token and learned position
  embeddings of 32, one block of 2 heads with a feed-forward of 32, mean pooling, 200 tokens,
  2 epochs) against the harness's `transformer` adapter at the same sizes;
- cnn: 128 filters of width 7 over 128-wide embeddings of 500 tokens, 3 epochs: Keras's
  "text classification from scratch" (its two strided convolutions) against the harness's
  `cnn` adapter with one width-7 bank of 128 filters.

Keras 3 runs on its torch backend (`KERAS_BACKEND=torch`, the torch the harness uses), in a
process of its own started for each job; its figure is that whole process's peak resident set
(`VmHWM`), imports, data and all. The harness's figure is its cell's, as the record stores it
(`peak_rss_mb`: the cell's process over all its phases). Keras reads the reviews from the same
parquet files and splits them into words the way its `TextVectorization` does by default
(lowercase, punctuation stripped, whitespace).

    pip install -e ".[bench]"          # Keras 3
    python benchmarks/vs_keras.py      # both jobs, about 25 minutes on 2 cores

Goal: the harness cell's peak ≤ 1.1× Keras's whole-process peak, at its speed and accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from step_overhead import TRANSFORMER  # noqa: E402

IMDB = Path("hf/datasets/stanfordnlp/imdb/plain_text")
VOCAB, BATCH = 20_000, 32


@dataclass(frozen=True)
class Job:
    tokens: int
    epochs: int
    keep_end: bool  # a longer review keeps its end (Keras `pad_sequences`, which pads in front too)
    model: dict  # the harness's model entry


JOBS = {
    "transformer": Job(
        tokens=200,
        epochs=2,
        keep_end=True,
        model={
            "adapter": "transformer",
            "label": "transformer-d32",
            "params": TRANSFORMER,  # the Keras example's sizes (mean pooling is the default)
        },
    ),
    "cnn": Job(  # `TextVectorization(output_sequence_length=500)` keeps a review's start
        tokens=500,
        epochs=3,
        keep_end=False,
        model={
            "adapter": "cnn",
            "label": "cnn-128x7",
            "params": {
                "vocab_size": VOCAB,
                "tokenization": "word",
                "embed_dim": 128,
                "num_filters": 128,
                "kernel_sizes": [7],
            },
        },
    ),
}
GOAL = 1.1


# ----------------------------------------------------------------------------- the Keras side


def words(text: str) -> list[str]:
    """Keras `TextVectorization`'s default standardize and split: lowercase, strip punctuation."""
    return re.sub(r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]", "", text.lower()).split()


def keras_inputs(data_dir: Path, job: Job):
    """Both splits as padded id arrays (0 pad, 1 out of vocabulary, as TextVectorization does)."""
    import numpy as np
    import pyarrow.parquet as pq

    splits = {
        name: pq.read_table(data_dir / IMDB / f"{name}-00000-of-00001.parquet").to_pydict()
        for name in ("train", "test")
    }
    counts = Counter(word for text in splits["train"]["text"] for word in words(text))
    index = {word: i + 2 for i, (word, _) in enumerate(counts.most_common(VOCAB - 2))}
    arrays = {}
    for name, split in splits.items():
        ids = np.zeros((len(split["text"]), job.tokens), dtype="int32")
        for row, text in enumerate(split["text"]):
            row_ids = [index.get(word, 1) for word in words(text)]
            if job.keep_end:
                row_ids = row_ids[-job.tokens :]
                ids[row, job.tokens - len(row_ids) :] = row_ids
            else:
                row_ids = row_ids[: job.tokens]
                ids[row, : len(row_ids)] = row_ids
        arrays[name] = (ids, np.asarray(split["label"], dtype="int32"))
    return arrays


def keras_transformer(tokens: int):
    import keras
    from keras import layers, ops

    class TokenAndPositionEmbedding(layers.Layer):
        def __init__(self):
            super().__init__()
            self.token_emb = layers.Embedding(VOCAB, 32)
            self.pos_emb = layers.Embedding(tokens, 32)

        def call(self, x):
            return self.token_emb(x) + self.pos_emb(ops.arange(0, ops.shape(x)[-1], 1))

    class TransformerBlock(layers.Layer):
        def __init__(self, embed_dim=32, num_heads=2, ff_dim=32, rate=0.1):
            super().__init__()
            self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
            self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
            self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
            self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
            self.dropout1, self.dropout2 = layers.Dropout(rate), layers.Dropout(rate)

        def call(self, inputs):
            out1 = self.layernorm1(inputs + self.dropout1(self.att(inputs, inputs)))
            return self.layernorm2(out1 + self.dropout2(self.ffn(out1)))

    inputs = layers.Input(shape=(tokens,))
    x = TransformerBlock()(TokenAndPositionEmbedding()(inputs))
    x = layers.Dropout(0.1)(layers.GlobalAveragePooling1D()(x))
    x = layers.Dropout(0.1)(layers.Dense(20, activation="relu")(x))
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def keras_cnn(tokens: int):
    import keras
    from keras import layers

    inputs = keras.Input(shape=(tokens,), dtype="int32")
    x = layers.Dropout(0.5)(layers.Embedding(VOCAB, 128)(inputs))
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Dropout(0.5)(layers.Dense(128, activation="relu")(layers.GlobalMaxPooling1D()(x)))
    outputs = layers.Dense(2, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def keras_side(job: str, data_dir: Path, threads: int) -> dict:
    """Runs in its own process: the Keras job, and that process's peak."""
    os.environ["KERAS_BACKEND"] = "torch"
    import keras
    import torch

    from harness.trackers.memory import peak_rss_mb  # the cells' own figure: VmHWM

    torch.set_num_threads(threads)
    keras.utils.set_random_seed(0)
    spec = JOBS[job]
    arrays = keras_inputs(data_dir, spec)
    model = (keras_transformer if job == "transformer" else keras_cnn)(spec.tokens)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
    started = time.perf_counter()
    model.fit(x_train, y_train, batch_size=BATCH, epochs=spec.epochs, verbose=0)
    train_s = time.perf_counter() - started
    _, accuracy = model.evaluate(x_test, y_test, batch_size=BATCH, verbose=0)
    return {
        "peak_rss_mb": peak_rss_mb(),
        "train_s": train_s,
        "train_examples_per_s": len(y_train) * spec.epochs / train_s,
        "accuracy": 100 * accuracy,
    }


# ----------------------------------------------------------------------------- the harness side


def harness_side(job: str, data_dir: Path, threads: int, folder: Path) -> dict:
    """`harness run` of the job as a one-cell suite (its own process, as every cell); its record."""
    from harness.store import load_records

    spec = JOBS[job]
    truncation = "left" if spec.keep_end else "right"
    suite = {
        "name": f"vs-keras-{job}",
        "tasks": [
            {"name": "imdb", "training": {"max_seq_length": spec.tokens, "truncation_side": truncation}}
        ],
        "models": [spec.model],
        "seeds": [0],
        "threads": threads,
        "device": "cpu",
        "training": {"epochs": spec.epochs, "batch_size": BATCH, "learning_rate": 1e-3},
    }
    path, store = folder / f"{job}.yaml", folder / f"{job}.db"
    path.write_text(json.dumps(suite))  # JSON is YAML
    env = dict(os.environ, HARNESS_DATA_DIR=str(data_dir))
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(path), "--store", str(store)],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"harness run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    (record,) = load_records(store).to_dict("records")
    return {
        "peak_rss_mb": record["peak_rss_mb"],
        "train_s": record["train_seconds"],
        "train_examples_per_s": record["train_examples"] * spec.epochs / record["train_seconds"],
        "accuracy": record["metric.accuracy"],
    }


# ----------------------------------------------------------------------------- the table


def row(job: str, side: str, figures: dict) -> str:
    return (
        f"| {job} | {side} | {figures['peak_rss_mb']:,.0f} | {figures['train_examples_per_s']:,.0f} "
        f"| {figures['accuracy']:.2f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", nargs="+", choices=list(JOBS), default=list(JOBS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("HARNESS_DATA_DIR", "../shared/data"))
    )
    parser.add_argument("--keras-side", choices=list(JOBS), help=argparse.SUPPRESS)  # the Keras process
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "vs_keras.md")
    args = parser.parse_args()
    data_dir = args.data_dir.resolve()
    if args.keras_side:
        print(json.dumps(keras_side(args.keras_side, data_dir, args.threads)))
        return

    from _publish import publish

    from harness.trackers.machine import cpu_model

    lines = [
        f"# The harness against Keras 3 (torch backend) on full IMDb ({cpu_model()}, {args.threads} threads)",
        "",
        "| job | side | peak resident MiB | train examples/s | test accuracy |",
        "|---|---|---:|---:|---:|",
    ]
    verdicts = []
    with tempfile.TemporaryDirectory() as folder:
        for job in args.jobs:
            keras_run = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--keras-side",
                    job,
                    "--threads",
                    str(args.threads),
                    "--data-dir",
                    str(data_dir),
                ],
                capture_output=True,
                text=True,
            )
            if keras_run.returncode != 0:
                raise SystemExit(f"the Keras side failed:\n{keras_run.stderr[-3000:]}")
            keras = json.loads(keras_run.stdout.strip().splitlines()[-1])
            ours = harness_side(job, data_dir, args.threads, Path(folder))
            lines += [row(job, "Keras (whole process)", keras), row(job, "harness (the cell)", ours)]
            ratio = ours["peak_rss_mb"] / keras["peak_rss_mb"]
            speed = ours["train_examples_per_s"] / keras["train_examples_per_s"]
            verdict = "met" if ratio <= GOAL else "missed"
            verdicts.append(
                f"- {job}: memory {ratio:.2f}× Keras's (goal ≤ {GOAL}×: {verdict}), "
                f"training {speed:.2f}× as fast, accuracy {ours['accuracy'] - keras['accuracy']:+.2f} points"
            )
    publish("\n".join([*lines, "", *verdicts, ""]), args.out)


if __name__ == "__main__":
    main()
