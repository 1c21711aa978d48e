"""Classify texts with the model exported beside this file (by `harness export-model`).

    from loader import load
    model = load()                                   # reads export.json beside this file
    model.classify(["a gripping, funny film"])       # [("positive", 0.93)]; a score for regression
    model.outputs(["..."], pairs=None)               # the raw logits (rows, classes) or scores (rows,)

Needs, by the format in export.json: `transformers` and `torch` ("transformers"); `torch`,
`transformers` and text-classifier-harness, whose classes the pickled module is ("torch");
`onnxruntime` and `transformers` (for the tokenizer) ("onnx"). Rows are encoded as the harness
encoded them (its tokenizer, length and truncation side), sorted by length and padded per batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class Exported:
    def __init__(self, folder: Path = HERE):
        from transformers import AutoTokenizer

        self.settings = json.loads((folder / "export.json").read_text())
        self.format = self.settings["format"]
        source = folder if self.format == "transformers" else folder / "tokenizer"
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.tokenizer.truncation_side = self.settings["truncation_side"]
        if self.format == "transformers":
            from transformers import AutoModelForSequenceClassification

            self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
        elif self.format == "torch":
            import torch

            self.model = torch.load(folder / "model.pt", weights_only=False).eval()
        else:
            import onnxruntime

            self.session = onnxruntime.InferenceSession(
                str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
            )

    def _batch(self, texts: list[str], pairs: list[str] | None) -> dict[str, np.ndarray]:
        encoded = self.tokenizer(
            texts,
            pairs,
            truncation=True,
            max_length=self.settings["max_seq_length"],
            padding=True,
            return_tensors="np",
        )
        ids = encoded["input_ids"].astype(np.int64)
        types = encoded.get("token_type_ids")
        return {
            "input_ids": ids,
            "attention_mask": encoded["attention_mask"].astype(np.int64),
            "token_type_ids": np.zeros_like(ids)
            if types is None or pairs is None
            else types.astype(np.int64),
        }

    def _run(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        if self.format == "onnx":
            names = [node.name for node in self.session.get_inputs()]
            return self.session.run(None, {name: batch[name] for name in names})[0]
        import torch

        tensors = {name: torch.from_numpy(value) for name, value in batch.items()}
        with torch.no_grad():
            if self.format == "transformers":
                inputs = {k: v for k, v in tensors.items() if k in self.tokenizer.model_input_names}
                logits = self.model(**inputs).logits
                return (logits.squeeze(-1) if self.model.config.num_labels == 1 else logits).numpy()
            return self.model(tensors).numpy()

    def outputs(self, texts: list[str], pairs: list[str] | None = None) -> np.ndarray:
        """Logits (rows, classes), or scores (rows,) for regression, in the order of `texts`."""
        lengths = [
            len(ids)
            for ids in self.tokenizer(
                texts, pairs, truncation=True, max_length=self.settings["max_seq_length"]
            )["input_ids"]
        ]
        order = np.argsort(-np.asarray(lengths), kind="stable")  # as the harness batches: longest first
        size, parts = self.settings["batch_size"], []
        for start in range(0, len(texts), size):
            rows = order[start : start + size]
            chosen_pairs = None if pairs is None else [pairs[i] for i in rows]
            parts.append(self._run(self._batch([texts[i] for i in rows], chosen_pairs)))
        out = np.concatenate(parts)
        restored = np.empty_like(out)
        restored[order] = out
        return restored

    def classify(self, texts: list[str], pairs: list[str] | None = None) -> list:
        """(label, probability) per text; the score itself for a regression model."""
        out = self.outputs(texts, pairs)
        if out.ndim == 1:
            return [float(score) for score in out]
        probs = np.exp(out - out.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        labels = self.settings["labels"] or [str(i) for i in range(out.shape[1])]
        return [(labels[int(i)], float(p[i])) for p, i in zip(probs, probs.argmax(axis=1), strict=True)]


def load(folder: Path | str = HERE) -> Exported:
    return Exported(Path(folder))
