"""`harness export-model`: a kept model (`keep_models: true`) as a folder one ships.

What the folder holds, by backend:

- `eager` of a Hugging Face model: a `transformers` folder (weights, config with the label
  names, tokenizer): `AutoModelForSequenceClassification.from_pretrained(folder)` loads it;
- `eager` or `int8` of another model: `model.pt` (the whole module) and `tokenizer/`:
  `torch.load`, with this package installed;
- `onnx`, `onnx-int8`: `model.onnx` and `tokenizer/`: ONNX Runtime, no torch, no harness;

and, in every folder, `export.json` (what `loader.py` needs: format, labels, sequence length,
truncation side), `loader.py` (a small documented `classify(texts)`), and `README.md`: a model
card whose metadata is Hugging Face's model-index (task, dataset, split, each metric's value
with its interval over the run's seeds) and whose text gives the recipe, calibration, probes,
the deployed speed and memory with the machine that measured them, and the code and data
fingerprints. The backends are the deploy phase's own builders (`deploy/backends.py`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from harness.deploy.backends import BACKENDS
from harness.deploy.catalog import unsupported_reason
from harness.deploy.phase import model_unsupported
from harness.report.calibration import cell_calibration
from harness.report.scores import machine_name
from harness.report.stats import t_interval

LOADER = Path(__file__).with_name("export_loader.py")
FORMATS = {"eager": "torch", "int8": "torch", "onnx": "onnx", "onnx-int8": "onnx"}


@dataclass(frozen=True)
class Exported:
    folder: Path
    format: str  # transformers | torch | onnx
    size_mb: float


def export_model(
    record: pd.Series,
    siblings: pd.DataFrame,
    predictions: pd.DataFrame,
    store_folder: Path,
    backend: str,
    out: Path,
) -> Exported:
    """Write `record`'s kept model under `backend` to `out` (created; must not hold files).
    `siblings` are the records of the same task and variant (the other seeds), for intervals."""
    model = torch.load(store_folder / record["model_dir"] / "model.pt", weights_only=False).eval()
    reason = unsupported_reason(backend, torch.device("cpu")) or model_unsupported(model, backend)
    if reason is not None:
        raise ValueError(f"{backend}: {reason}")
    tokenizer_folder = store_folder / record["model_dir"] / "tokenizer"
    out.mkdir(parents=True, exist_ok=True)
    is_hf = record["config"]["model"]["adapter"] == "hf"
    kind = "transformers" if is_hf and backend == "eager" else FORMATS[backend]
    if kind == "transformers":
        write_transformers(model, record, tokenizer_folder, out)
    elif kind == "torch":
        torch.save(BACKENDS[backend](model, {}, torch.device("cpu"), out).module, out / "model.pt")
        shutil.copytree(tokenizer_folder, out / "tokenizer")
    else:
        write_onnx(model, tokenizer_folder, backend, out)
    training = record["config"]["training"]
    settings = {
        "format": kind,
        "labels": record["label_names"],
        "max_seq_length": training["max_seq_length"],
        "truncation_side": training.get("truncation_side", "right"),
        "batch_size": training["eval_batch_size"],
    }
    (out / "export.json").write_text(json.dumps(settings, indent=2) + "\n")
    shutil.copy(LOADER, out / "loader.py")
    (out / "README.md").write_text(model_card(record, siblings, predictions, backend, kind))
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file()) / 1024**2
    return Exported(out, kind, size)


def write_transformers(model: torch.nn.Module, record: pd.Series, tokenizer_folder: Path, out: Path) -> None:
    from transformers import AutoTokenizer

    inner = model.model  # HFClassifier wraps the transformers model
    labels = record["label_names"] or []
    inner.config.id2label = dict(enumerate(labels)) if labels else inner.config.id2label
    inner.config.label2id = {label: index for index, label in enumerate(labels)} or inner.config.label2id
    inner.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_folder).save_pretrained(out)


def write_onnx(model: torch.nn.Module, tokenizer_folder: Path, backend: str, out: Path) -> None:
    """The deploy phase's ONNX builder (export, then quantization for onnx-int8), traced on two
    short texts; the builder writes `model.onnx` and, quantized, `model-int8.onnx`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    encoded = tokenizer(["an example row", "and another one to trace"], padding=True, return_tensors="pt")
    example = {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "token_type_ids": encoded.get("token_type_ids", torch.zeros_like(encoded["input_ids"])),
    }
    with tempfile.TemporaryDirectory() as folder:
        BACKENDS[backend](model, example, torch.device("cpu"), Path(folder))
        built = Path(folder) / ("model-int8.onnx" if backend == "onnx-int8" else "model.onnx")
        shutil.copy(built, out / "model.onnx")
    shutil.copytree(tokenizer_folder, out / "tokenizer")


def scores(record: pd.Series, backend: str) -> dict[str, float]:
    """The metrics of `backend` as the cell measured it (eager's are the record's own); empty
    when the cell did not serve that backend."""
    if backend == "eager":
        return dict(record["metrics"])
    served = (record.get("deployed") or {}).get(backend) or {}
    return dict(served.get("metrics") or {}) if served.get("status") == "ok" else {}


def model_card(
    record: pd.Series, siblings: pd.DataFrame, predictions: pd.DataFrame, backend: str, kind: str
) -> str:
    """README.md: model-index metadata (Hugging Face's), then the recipe and every measured figure."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    task = record["config"]["task"]
    split = str(predictions["eval_split"].iloc[0]) if len(predictions) else ""
    dataset = task["dataset"].get("path") or task["name"]
    results = []
    for metric, value in scores(record, backend).items():
        over = t_interval([scores(sibling, backend).get(metric) for _, sibling in siblings.iterrows()])
        args = {"seeds": over.n, "mean": over.mean, "ci95_half_width": over.half_width}
        results.append(
            EvalResult(
                task_type="text-classification",
                dataset_type=dataset,
                dataset_name=task.get("title") or task["name"],
                dataset_config=task["dataset"].get("name"),
                dataset_split=split,
                metric_type=metric,
                metric_value=round(float(value), 4),
                metric_args=args,
            )
        )
    data = ModelCardData(
        model_name=f"{record['variant']} on {task['name']} (seed {record['seed']}, {backend})",
        eval_results=results,
        library_name="transformers" if kind == "transformers" else None,
        tags=["text-classification", "text-classifier-harness", record["config"]["model"]["adapter"]],
    )
    return str(
        ModelCard(f"---\n{data.to_yaml()}\n---\n" + card_text(record, predictions, backend, kind, split))
    )


def card_text(record: pd.Series, predictions: pd.DataFrame, backend: str, kind: str, split: str) -> str:
    """The card's text (below its model-index metadata): scores, calibration, probes, the
    deployed cost, the recipe and the provenance, each section from the cell's record."""
    lines = [
        f"# {record['variant']} on {record['config']['task']['name']}",
        "",
        f"Exported by text-classifier-harness from run `{record['run_id']}`, cell `{record['cell_id']}`, "
        f"as `{backend}` ({kind}). `loader.py` beside this card classifies texts (`classify([...])`).",
        *_score_lines(record, backend, split),
        *_calibration_lines(predictions),
        *_probe_lines(record),
        *_deployed_lines(record, backend),
        *_recipe_lines(record),
        *_provenance_lines(record),
    ]
    return "\n".join(lines)


def _score_lines(record: pd.Series, backend: str, split: str) -> list[str]:
    lines = [
        "",
        "## Scores",
        "",
        f"As `{backend}`, on the `{split}` split ({record['eval_examples']:,} rows); the model-index "
        "gives the mean and 95% interval over the run's seeds of this variant beside this seed's value.",
        "",
        "| metric | value |",
        "|---|---:|",
        *(f"| {name} | {value:.2f} |" for name, value in scores(record, backend).items()),
    ]
    if not scores(record, backend):
        lines.append(
            f"\nThe cell did not serve `{backend}` (its suite's `deploy:` did not list it): no score."
        )
    return lines


def _calibration_lines(predictions: pd.DataFrame) -> list[str]:
    if "logits" not in predictions or not len(predictions):
        return []
    figures = cell_calibration(np.stack(predictions["logits"]), predictions["label"].to_numpy())
    return ["", "## Calibration", "", f"ECE {figures['ece']:.2f}%, Brier {figures['brier']:.4f}, "
            f"NLL {figures['nll']:.4f} (eager, on the same rows)."]  # fmt: skip


def _probe_lines(record: pd.Series) -> list[str]:
    probes = {
        name: result for name, result in (record.get("probes") or {}).items() if result["status"] == "ok"
    }
    if not probes:
        return []
    return ["", "## Robustness probes", "", "| probe | metrics on perturbed rows |", "|---|---|"] + [
        f"| {name} | {', '.join(f'{k} {v:.2f}' for k, v in result['metrics'].items())} |"
        for name, result in probes.items()
    ]


def _deployed_lines(record: pd.Series, backend: str) -> list[str]:
    served = (record.get("deployed") or {}).get(backend) or {}
    if served.get("status") != "ok":
        return [
            "",
            "## Deployed",
            "",
            f"The cell did not measure `{backend}` (its suite's `deploy:` did not list it).",
        ]
    return [
        "",
        "## Deployed",
        "",
        f"As `{backend}` on {machine_name(record)}: {served['infer_examples_per_s']:,.0f} examples/s "
        f"at batch {record['config']['training']['eval_batch_size']}, one example p50 "
        f"{served['latency_p50_ms']:.2f} ms / p95 {served['latency_p95_ms']:.2f} ms, "
        f"peak memory {served['peak_mb']:,.0f} MB ({served['memory_kind']}).",
    ]


def _recipe_lines(record: pd.Series) -> list[str]:
    """The model and training settings the cell ran with (an equal-size cell: its chosen widths)."""
    config, model = record["config"], record["config"]["model"]
    sizing = record.get("sizing") or {}
    lines = ["", "## Recipe", ""]
    if sizing:  # an equal-size suite's cell: the widths its budget chose replace the suite's
        model = model | {"params": model["params"] | sizing["widths"]}
        lines += [
            f"Sized to {sizing['target']:,.0f} {sizing['kind']} by the suite's `budget`: "
            f"{sizing['value']:,.0f} ({sizing['error']:+.1%}), widths "
            + ", ".join(f"{name} {value}" for name, value in sizing["widths"].items())
            + ".",
            "",
        ]
    return lines + [
        "```json",
        json.dumps({"model": model, "training": config["training"]}, indent=2, default=str),
        "```",
    ]


def _provenance_lines(record: pd.Series) -> list[str]:
    return [
        "",
        "## Provenance",
        "",
        f"- code: text-classifier-harness {record.get('code_version')}, commit {record.get('git_commit')}"
        f"{' (with uncommitted changes)' if record.get('git_dirty') else ''}, "
        f"source hash {record.get('code_hash')}",
        f"- data fingerprint {record.get('data_fingerprint')}, vocabulary hash {record.get('vocab_hash')}",
        f"- trained on {machine_name(record)}, {record.get('finished_at')}",
        "",
    ]
