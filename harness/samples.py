"""Example by example: a stable id for every evaluation row, its text, and the samples export.

A cell stores its predictions by (eval split, row id); the text is the task's, read through the
same loader the cell used (the data mirror, or the Hub). Joined, each row gets an example id that
is the same in every run, on every machine and in any order of the rows: the first 16 hex digits
of SHA-256 over its text fields, each normalized (Unicode NFC, runs of whitespace as one space,
stripped) and joined by U+001F, then U+001E and its label (the class name, or the score to six
significant digits).

`harness export RUN --samples` writes JSON lines (format `harness-samples`, version 1): a header
line, then one line per (cell, evaluation row):

    {"format": "harness-samples", "version": 1, "run_ids": [...]}
    {"run_id", "cell_id", "task", "variant", "model", "seed", "eval_split", "row_id",
     "example_id", "text_a", "text_b", "label", "prediction", "probabilities" | "score"}

`label` and `prediction` are class names (or scores for a regression task); `probabilities`
maps each class name to the softmax of the stored logits; `text_b` is null for single texts.
`read_samples` reads the file back into a frame, refusing another format or version.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from harness.config import CellSpec, TaskSpec, TrainingSettings
from harness.errors import InputError
from harness.report.calibration import softmax

SAMPLES_FORMAT = "harness-samples"
SAMPLES_VERSION = 1
WORD = re.compile(r"\w+(?:'\w+)?")


def normalize(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).split())


def label_text(label: float | int, label_names: list[str] | None, regression: bool) -> str:
    """A label as the id and the export spell it: its class name, its id, or the score."""
    if regression:
        return f"{float(label):.6g}"
    if label_names and 0 <= int(label) < len(label_names):
        return label_names[int(label)]
    return str(int(label))


def example_id(texts: list[str | None], label: str) -> str:
    fields = "\x1f".join(normalize(text) for text in texts if text is not None)
    return hashlib.sha256(f"{fields}\x1e{label}".encode()).hexdigest()[:16]


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass
class TaskRows:
    """A task's evaluation rows with their text and example ids, indexed by (eval_split, row_id),
    and the words of its training split (for the unseen-word slices)."""

    task: TaskSpec
    eval: pd.DataFrame  # columns: text_a, text_b, label, label_text, example_id, words
    label_names: list[str] | None
    train_words: set[str]

    @property
    def regression(self) -> bool:
        return self.task.problem_type == "regression"


def load_task_rows(task: TaskSpec, data_dir: str | None) -> TaskRows:
    """Every evaluation row of the task (no `max_eval_examples` cut: a cell's rows are a subset
    of these, matched by row id), read through the cell's own loader."""
    from harness.tasks.data import load_task_data

    data = load_task_data(task, TrainingSettings(), data_dir)
    regression = task.problem_type == "regression"
    frames = []
    for name, rows in data.eval.items():
        split = name or task.splits.eval_splits()[name]
        labels = [label_text(value, data.label_names, regression) for value in rows.labels]
        second = rows.text_b if rows.text_b is not None else [None] * len(rows)
        frames.append(
            pd.DataFrame(
                {
                    "eval_split": split,
                    "row_id": rows.row_ids,
                    "text_a": rows.text_a,
                    "text_b": second,
                    "label": rows.labels,
                    "label_text": labels,
                    "example_id": [
                        example_id([a, b], label)
                        for a, b, label in zip(rows.text_a, second, labels, strict=True)
                    ],
                    "words": [
                        len(words(a)) + len(words(b or "")) for a, b in zip(rows.text_a, second, strict=True)
                    ],
                }
            )
        )
    train_words = {word for text in data.train.texts() for word in words(text)}
    frame = pd.concat(frames, ignore_index=True).set_index(["eval_split", "row_id"])
    return TaskRows(task, frame, data.label_names, train_words)


def task_rows_loader(records: pd.DataFrame, data_dir: str | None) -> Callable[[str], TaskRows | str]:
    """task name → its rows (read once), or why they cannot be read; the task's definition is
    the one its records ran with."""
    from harness.errors import DataMissingError

    cache: dict[str, TaskRows | str] = {}

    def rows(task: str) -> TaskRows | str:
        if task not in cache:
            config = records.loc[records["task"] == task, "config"].iloc[0]
            try:
                cache[task] = load_task_rows(CellSpec.model_validate(config).task, data_dir)
            except (DataMissingError, InputError, OSError) as error:
                cache[task] = f"the text of {task}'s evaluation rows could not be read: {error}"
        return cache[task]

    return rows


def cell_samples(record: pd.Series, predictions: pd.DataFrame, rows: TaskRows) -> Iterator[dict[str, Any]]:
    """One dict per evaluation row the cell predicted, in the export's fields."""
    names = record["label_names"] or rows.label_names
    keys = list(zip(predictions["eval_split"], predictions["row_id"], strict=True))
    known = rows.eval.reindex(keys)
    has_logits = "logits" in predictions and predictions["logits"].notna().all() and not rows.regression
    probs = softmax(np.stack(predictions["logits"].to_numpy())) if has_logits else None
    for index, (split, row_id) in enumerate(keys):
        text = known.iloc[index]
        label, prediction = predictions["label"].iat[index], predictions["prediction"].iat[index]
        line = {
            "run_id": record["run_id"],
            "cell_id": record["cell_id"],
            "task": record["task"],
            "variant": record["variant"],
            "model": record["model"],
            "seed": int(record["seed"]),
            "eval_split": split,
            "row_id": int(row_id),
            "example_id": None if pd.isna(text["example_id"]) else text["example_id"],
            "text_a": None if pd.isna(text["text_a"]) else text["text_a"],
            "text_b": None if pd.isna(text["text_b"]) else text["text_b"],
            "label": label_text(label, names, rows.regression),
            "prediction": label_text(prediction, names, rows.regression),
        }
        if rows.regression:
            line["score"] = float(prediction)
        elif probs is not None:
            classes = names or [str(i) for i in range(probs.shape[1])]
            line["probabilities"] = {
                name: round(float(p), 6) for name, p in zip(classes, probs[index], strict=True)
            }
        yield line


def write_samples(
    out: IO[str],
    records: pd.DataFrame,
    load_predictions: Callable[[str, str], pd.DataFrame],
    rows_of: Callable[[str], TaskRows | str],
) -> int:
    """The samples of every ok cell of `records` as JSON lines; returns the number of rows."""
    ok = records[records["status"] == "ok"]
    for task in dict.fromkeys(ok["task"]):
        found = rows_of(task)
        if isinstance(found, str):
            raise InputError("--samples", found, "point --data-dir (or HARNESS_DATA_DIR) at the data mirror")
    header = {"format": SAMPLES_FORMAT, "version": SAMPLES_VERSION, "run_ids": sorted(set(ok["run_id"]))}
    out.write(json.dumps(header) + "\n")
    count = 0
    for _, record in ok.iterrows():  # a cell at a time: IMDb's texts for every cell would not fit
        try:
            predictions = load_predictions(record["run_id"], record["cell_id"])
        except FileNotFoundError as error:
            raise InputError(
                "--samples", str(error), "export a run whose cells kept their predictions"
            ) from None
        for line in cell_samples(record, predictions, rows_of(record["task"])):
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_samples(path: Path) -> pd.DataFrame:
    """A samples file back as a frame, one row per (cell, evaluation row)."""
    with open(path, encoding="utf-8") as handle:
        first = handle.readline()
        try:
            header = json.loads(first)
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != SAMPLES_FORMAT:
            raise InputError(
                path,
                "not a samples file (its first line is not the harness-samples header)",
                "write one with `harness export RUN --samples --out FILE`",
            )
        if header.get("version") != SAMPLES_VERSION:
            raise InputError(
                path,
                f"samples format version {header.get('version')!r}; this harness reads "
                f"version {SAMPLES_VERSION}",
                "export the run again with this harness",
                "version",
            )
        return pd.DataFrame([json.loads(line) for line in handle if line.strip()])
