"""Deployment benchmark: each trained model of `suites/deploy.yaml` under every inference
backend, side by side in one run on the full SST-2 dev set, and the goals checked as ratios
against eager measured in the same cell.

Goals (MiniLM-L6 fine-tuned on SST-2): int8 ≥ 2× eager inference examples/s at ≤ 1 point
accuracy loss; ONNX Runtime ≥ 1.5× eager at equal accuracy (±0.1); and, on a CPU with native
bf16, training under bf16 autocast (`amp_cpu`) ≥ 1.5× fp32 training examples/s at ±0.5 points.
The bf16 training speed-up is judged side by side (`train_precision.py`: fp32 and bf16 bouts
interleaved in one process), the accuracy on the two suite cells' full trainings; the cells'
own speed ratio, taken minutes apart, is printed beside it.

    python benchmarks/deploy.py [--store results/deploy/harness.db] [--out benchmarks/results/deploy.md]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd
from rich.console import Console
from train_precision import interleaved_training

from harness.report.deployed import deployed_table
from harness.runner import run_suite
from harness.store import load_records

REPO_ROOT = Path(__file__).resolve().parents[1]
SUITE = REPO_ROOT / "suites" / "deploy.yaml"
MODEL = "minilm-l6"
BF16_MODEL = "minilm-l6-bf16-trained"
GOALS = {  # backend → (least speed-up over eager, largest accuracy loss, largest accuracy gain)
    "int8": (2.0, 1.0, None),
    "onnx": (1.5, 0.1, 0.1),
}


def fmt(value, spec: str = ".2f") -> str:
    return "" if value is None else format(value, spec)


def onnxruntime_matmul_peak(threads: int, size: int = 2048, seconds: float = 2.0) -> float | None:
    """ONNX Runtime's own fp32 GEMM (MLAS) on the square matmul the peak is measured with, best
    of repeats for about `seconds`: whether the ceiling is the machine's or only torch's BLAS's.
    None without onnxruntime."""
    from harness.profile import fastest_call_seconds  # imports torch: not before the suite has run

    try:
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError:
        return None
    square = [size, size]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["c"])],
        "matmul",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, square) for name in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, square)],
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    generator = np.random.default_rng(0)
    feed = {name: generator.standard_normal(square, dtype=np.float32) for name in ("a", "b")}
    return 2 * size**3 / fastest_call_seconds(lambda: session.run(None, feed), seconds)


def timing_windows(ok: pd.DataFrame) -> list[str]:
    """Each backend's examples/s in its two processes (the mirrored sweeps: eager first and
    last): how far the machine moved while a cell ran, beside ratios whose goals have margins
    of that size. Eager for every model, every backend for MiniLM."""

    def windows(result: dict) -> str:
        return " and ".join(f"{rate:,.1f}" for rate in result.get("rates_by_process", []))

    eager = "; ".join(
        f"{model} {windows(deployed['eager'])}"
        for model, deployed in zip(ok["model"], ok["deployed"], strict=True)
    )
    lines = [
        "Eager examples/s in the cell's first and last backend process (speed-ups divide by the "
        f"faster): {eager}."
    ]
    minilm = ok[ok["model"] == MODEL]
    if len(minilm):
        backends = "; ".join(
            f"{name} {windows(result)}"
            for name, result in minilm["deployed"].iloc[0].items()
            if result.get("status") == "ok"
        )
        lines += ["", f"{MODEL}, each backend's two processes (mirrored order): {backends}."]
    return lines


def roofline(eager: pd.Series) -> list[str]:
    """How close eager fp32 inference already is to this machine's fp32 matmul peak (measured
    now, in fresh processes, with the cell's threads): what an fp32 backend could still gain.
    ONNX Runtime's own GEMM is timed beside it, so the ceiling is not one library's."""
    from harness.profile import measure_peaks  # imports torch: not before the suite has run

    threads = int(eager["threads"])
    peaks = measure_peaks("cpu", threads)
    # the eager backend's own process, the figure the speed-ups divide by (not the cell's evaluation)
    achieved = eager["flops_per_example"] * eager["deployed"]["eager"]["infer_examples_per_s"]
    fp32, bf16 = peaks["float32"], peaks["bfloat16"]
    if not fp32 or not achieved:
        return ["Headroom: not measured."]
    bf16_text = f", bf16 peak {bf16 / 1e9:,.0f} GFLOP/s" if bf16 else ""
    onnxruntime_peak = onnxruntime_matmul_peak(threads)
    onnxruntime_text = (
        f" (ONNX Runtime's own GEMM on the same 2048² matmul: {onnxruntime_peak / 1e9:,.0f} GFLOP/s)"
        if onnxruntime_peak
        else ""
    )
    return [
        f"Headroom: eager fp32 MiniLM computes {achieved / 1e9:,.0f} GFLOP/s at batch 128 (forward FLOPs "
        f"of a mean-length row × examples/s; padding not counted), {achieved / fp32:.0%} of this machine's "
        f"fp32 dense-matmul peak of {fp32 / 1e9:,.0f} GFLOP/s measured after the run{onnxruntime_text}"
        f"{bf16_text}: the peak leaves an fp32 backend (ONNX Runtime) {fp32 / achieved:.2f}× of headroom "
        "at this batch."
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=REPO_ROOT / "results" / "deploy" / "harness.db")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "deploy.md")
    parser.add_argument("--resume", action="store_true", help="finish the latest run instead of a new one")
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"))
    args = parser.parse_args()
    summary = run_suite(SUITE, args.store, Console(), args.data_dir, resume=args.resume)
    records = load_records(args.store, [summary.run_id])
    ok = records[records["status"] == "ok"]
    table = deployed_table(ok, "accuracy", list(dict.fromkeys(ok["model"])))
    lines = [
        "# Deployment benchmark",
        "",
        f"`python benchmarks/deploy.py`, run {summary.run_id}: `suites/deploy.yaml`,",
        "SST-2 dev (872 sentences),",
        f"eval batch 128 for examples/s, batch 1 for latency, peak MB the resident set of the backend's "
        "own process (interpreter and libraries included); "
        f"{ok['cpu_model'].iloc[0]}, "
        f"{int(ok['threads'].iloc[0])} threads; CPU flags: "
        + ", ".join(k for k, v in ok["capabilities"].iloc[0].items() if v is True),
        "",
        "| model | backend | accuracy | Δ | infer ex/s | speed-up | p50 ms | p95 ms | peak MB | size MB"
        " | prepare s | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in table.rows:
        lines.append(
            f"| {row.model} | {row.backend} | {fmt(row.primary)} | {fmt(row.delta, '+.2f')} | "
            f"{fmt(row.infer_examples_per_s, ',.1f')} | {fmt(row.speedup)}{'×' if row.speedup else ''} | "
            f"{fmt(row.latency_p50_ms)} | {fmt(row.latency_p95_ms)} | {fmt(row.peak_mb, ',.0f')} | "
            f"{fmt(row.size_mb)} | {fmt(row.prepare_seconds, '.1f')} | {row.reason} |"
        )
    lines += ["", "Goals (MiniLM-L6):", ""]
    missed = 0
    for backend, (speedup, loss, gain) in GOALS.items():
        row = next((r for r in table.rows if r.model == MODEL and r.backend == backend), None)
        met = (
            row is not None
            and row.status == "ok"
            and (row.speedup or 0) >= speedup
            and (row.delta or 0) >= -loss
            and (gain is None or (row.delta or 0) <= gain)
        )
        missed += not met
        band = f"Δ ≥ −{loss}" + (f" and ≤ +{gain}" if gain is not None else "")
        got = f"{fmt(row.speedup)}×, Δ {fmt(row.delta, '+.2f')}" if row is not None else "not measured"
        lines.append(f"- {backend}: ≥ {speedup}× at {band}: {got} — {'met' if met else 'MISSED'}")
    by_model = ok.set_index("model")
    if {MODEL, BF16_MODEL} <= set(by_model.index):
        fp32, bf16 = by_model.loc[MODEL], by_model.loc[BF16_MODEL]
        ratio = bf16["train_examples_per_s"] / fp32["train_examples_per_s"]
        gap = bf16["metric.accuracy"] - fp32["metric.accuracy"]
        supported = bool(fp32["capabilities"].get("avx512_bf16") or fp32["capabilities"].get("amx_bf16"))
        interleaved = interleaved_training(SUITE, MODEL, args.data_dir, rounds=8, rows=640)
        side_by_side = interleaved.median if interleaved is not None else None
        met = supported and side_by_side is not None and side_by_side >= 1.5 and abs(gap) <= 0.5
        missed += not met
        lines.append(
            f"- bf16 training (CPU bf16: {'yes' if supported else 'no'}): ≥ 1.5× fp32 train ex/s at ±0.5: "
            f"{interleaved.describe() if interleaved else 'not measured'}; the two cells' whole trainings "
            f"{ratio:.2f}× ({bf16['train_examples_per_s']:.1f} vs {fp32['train_examples_per_s']:.1f} ex/s, "
            f"minutes apart), accuracy {bf16['metric.accuracy']:.2f} vs {fp32['metric.accuracy']:.2f} "
            f"({gap:+.2f}) — {'met' if met else 'MISSED'}"
        )
    lines += ["", *timing_windows(ok)]
    if MODEL in by_model.index:
        lines += ["", *roofline(by_model.loc[MODEL])]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 1 if missed or summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
