"""Where a small model's training step goes, and the step made faster, side by side with a
baseline commit in one run.

The model: the from-scratch transformer at d_model 32, 2 heads, d_ff 32, one layer, learned
positions, whole-word vocabulary of 20,000, 200 tokens, batch 32 (the Keras "text
classification with Transformer" example), on full IMDb (25,000 reviews, 2 epochs, tested on
all 25,000 test reviews).

1. Breakdown: the harness's own pieces (`collate`, the adapter's model, `loss_fn`,
   `make_optimizer`, gradient clipping, the schedule, a `Progress` message through the
   executor's throttle onto a process queue) timed phase by phase over real IMDb batches, in
   the current tree and in a git worktree of the baseline commit.
2. Side by side: the same suite run by `harness run` from both trees, alternately, one after
   the other in this one invocation: train examples/s (the loop's steady-state figure) and
   test accuracy. The cnn and the rnn are run the same way on 4,000 reviews, one epoch, to show
   that they did not get slower.

Goal: the transformer ≥ 1.6× the baseline's train examples/s at equal accuracy (±0.5 points).

    python benchmarks/step_overhead.py [--baseline d366ec3] [--out benchmarks/results/step_overhead.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = "d366ec3"  # main before this work
TRANSFORMER = {
    "vocab_size": 20000,
    "tokenization": "word",
    "d_model": 32,
    "num_heads": 2,
    "d_ff": 32,
    "num_layers": 1,
    "positions": "learned",
}
PHASES = ["batch", "forward", "backward", "clip", "optimizer", "schedule", "bookkeeping"]
GOAL_SPEEDUP, GOAL_ACCURACY = 1.6, 0.5


# ----------------------------------------------------------------------------- breakdown


def breakdown(steps: int, adapter_name: str, params: dict, batch_size: int, data_dir: str | None) -> dict:
    """Milliseconds per training step in each phase, over `steps` real IMDb batches.

    Uses only what the baseline also has, so that this function runs in either tree."""
    import multiprocessing as mp

    import numpy as np
    import torch
    from torch import nn

    from harness.batching import collate, encode, train_batches
    from harness.config import ModelSpec, TrainingSettings
    from harness.events import Progress
    from harness.executors.base import throttled
    from harness.models.registry import TaskInfo, get_adapter
    from harness.tasks.data import load_task_data
    from harness.tasks.registry import BUILTIN_DIR, load_task
    from harness.train import linear_schedule, loss_fn, make_optimizer

    try:  # what a cell's process does; the baseline tree has no such module
        from harness.allocator import keep_freed_memory

        keep_freed_memory()
    except ImportError:
        pass
    settings = TrainingSettings(max_seq_length=200, batch_size=batch_size, max_train_examples=4000)
    data = load_task_data(load_task(BUILTIN_DIR / "imdb.yaml"), settings, data_dir)
    adapter = get_adapter(ModelSpec(adapter=adapter_name, params=params))
    tokenizer = adapter.tokenizer(data.train, settings)
    encoded = encode(tokenizer, data.train, settings.max_seq_length)
    info = TaskInfo(2, False, settings.max_seq_length, len(tokenizer), tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = adapter.build(info)
    model.train()
    optimizer = make_optimizer(model, settings)
    schedule = linear_schedule(optimizer, 10, steps + 20)
    queue = mp.get_context("spawn").Queue()
    emit = throttled(queue.put)
    batches = train_batches(encoded.lengths, settings.batch_size, np.random.default_rng(0))[: steps + 20]
    totals = dict.fromkeys(PHASES, 0.0)
    for step, indices in enumerate(batches, 1):
        clock = [time.perf_counter()]
        batch = collate(encoded, indices)
        clock.append(time.perf_counter())
        loss = loss_fn(model(batch), batch["labels"])
        clock.append(time.perf_counter())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clock.append(time.perf_counter())
        nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
        clock.append(time.perf_counter())
        optimizer.step()
        clock.append(time.perf_counter())
        schedule.step()
        clock.append(time.perf_counter())
        emit(Progress("train", 1, 1, step, len(batches), loss.item()))
        clock.append(time.perf_counter())
        if step > 20:  # the first steps allocate and warm caches
            for phase, start, end in zip(PHASES, clock[:-1], clock[1:], strict=True):
                totals[phase] += end - start
    queue.close()
    return {phase: 1000 * seconds / steps for phase, seconds in totals.items()}


# ----------------------------------------------------------------------------- side by side


def suite_yaml(name: str, models: list[dict], training: dict) -> str:
    return json.dumps(  # JSON is YAML
        {
            "name": name,
            "tasks": [{"name": "imdb", "training": {"max_seq_length": 200}}],
            "models": models,
            "seeds": [0],
            "training": {"batch_size": 32, "eval_batch_size": 128, **training},
            "device": "cpu",
        }
    )


def run_tree(tree: Path, suite: Path, store: Path, data_dir: str | None) -> list[dict]:
    """`harness run` of `suite` with the harness of `tree`; its records."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    if data_dir:
        env["HARNESS_DATA_DIR"] = data_dir
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "harness", "run", str(suite), "--store", str(store)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    print(f"  {tree.name}: {suite.stem} in {time.perf_counter() - started:.0f} s (exit {done.returncode})")
    if done.returncode != 0:
        raise SystemExit(f"harness run failed in {tree}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    query = "SELECT model, metrics, train_examples_per_s, train_seconds FROM records WHERE status = 'ok'"
    import sqlite3

    with sqlite3.connect(store) as db:
        rows = db.execute(query).fetchall()
    return [
        {"model": m, "accuracy": json.loads(x)["accuracy"], "ex_s": r, "train_s": s} for m, x, r, s in rows
    ]


def breakdown_in(tree: Path, model: dict, steps: int, data_dir: str | None) -> dict:
    """`breakdown` of one suite model entry, run by a fresh interpreter importing the harness of `tree`."""
    batch_size = model.get("training", {}).get("batch_size", 32)
    call = f"breakdown({steps}, {model['adapter']!r}, {model['params']!r}, {batch_size}, {data_dir!r})"
    code = (
        f"import json, sys; sys.path.insert(0, {str(REPO_ROOT / 'benchmarks')!r}); "
        f"from step_overhead import breakdown; print(json.dumps({call}))"
    )
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"breakdown failed in {tree}:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git commit to compare with")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "step_overhead.md")
    parser.add_argument("--steps", type=int, default=100, help="breakdown steps per tree")
    parser.add_argument("--data-dir", default=os.environ.get("HARNESS_DATA_DIR"))
    args = parser.parse_args()

    from harness.trackers.machine import cpu_model

    work = Path(tempfile.mkdtemp(prefix="step-overhead-"))
    base = work / "baseline"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=REPO_ROOT, check=True
    )
    trees = {"baseline": base, "current": REPO_ROOT}
    try:
        transformer = {"adapter": "transformer", "label": "transformer-d32", "params": TRANSFORMER}
        no_attention_dropout = transformer | {
            "label": "transformer-d32-attn0",
            "params": TRANSFORMER | {"attention_dropout": 0.0},
        }
        small = [
            {"adapter": "cnn", "label": "cnn", "params": {"vocab_size": 20000}},
            {
                "adapter": "rnn",
                "label": "rnn",
                "params": {"vocab_size": 20000},
                "training": {"batch_size": 64},
            },
        ]
        print("breakdown")
        split = {}
        for model in [transformer, no_attention_dropout, *small]:
            for tree in ("baseline", "current"):
                if tree == "baseline" and "attention_dropout" in model["params"]:
                    continue  # the baseline has no such parameter
                split[tree, model["label"]] = breakdown_in(trees[tree], model, args.steps, args.data_dir)
        suites = {
            "transformer": suite_yaml("step-overhead-transformer", [transformer], {"epochs": 2}),
            "transformer-attn0": suite_yaml("step-overhead-attn0", [no_attention_dropout], {"epochs": 2}),
            "small": suite_yaml(
                "step-overhead-small",
                small,
                {"epochs": 1, "max_train_examples": 4000, "max_eval_examples": 2000},
            ),
        }
        paths = {}
        for key, text in suites.items():
            paths[key] = work / f"{key}.yaml"
            paths[key].write_text(text)
        print("side by side")
        results: dict[tuple[str, str], list[dict]] = {}
        plan = [
            ("baseline", "transformer"),
            ("current", "transformer"),
            ("current", "transformer-attn0"),
            ("baseline", "small"),
            ("current", "small"),
        ]
        for tree, key in plan:
            store = work / f"{tree}-{key}.db"
            results[tree, key] = run_tree(trees[tree], paths[key], store, args.data_dir)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=REPO_ROOT, check=False)

    def row(tree: str, key: str, model: str) -> dict:
        return next(r for r in results[tree, key] if r["model"] == model)

    old = row("baseline", "transformer", "transformer-d32")
    same = row("current", "transformer", "transformer-d32")
    attn0 = row("current", "transformer-attn0", "transformer-d32-attn0")
    import torch

    lines = [
        "# A small model's training step: where the time goes, and the step made faster",
        "",
        f"`python benchmarks/step_overhead.py --baseline {args.baseline}`; {cpu_model()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%dT%H:%M%z')}.",
        "",
        "Transformer d_model 32, 2 heads, d_ff 32, 1 layer, learned positions, 20,000 whole words, "
        "200 tokens, batch 32, dropout 0.1.",
        "",
        f"## Breakdown (ms per step, {args.steps} IMDb batches after 20 warm-up steps)",
        "",
        "| model | tree | " + " | ".join(PHASES) + " | total | ex/s |",
        "|---|---|" + "---:|" * (len(PHASES) + 2),
    ]
    for (tree, label), phases in split.items():
        total = sum(phases.values())
        cells = " | ".join(f"{phases[p]:.2f}" for p in PHASES)
        batch = 64 if label == "rnn" else 32
        lines.append(f"| {label} | {tree} | {cells} | {total:.2f} | {batch * 1000 / total:,.0f} |")
    lines += [
        "",
        "## Side by side: `harness run`, full IMDb (25,000 → 25,000), 2 epochs",
        "",
        "| tree | model | train ex/s | speed-up | test accuracy | Δ | train s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in [("baseline", old), ("current", same), ("current", attn0)]:
        lines.append(
            f"| {name} | {r['model']} | {r['ex_s']:,.0f} | {r['ex_s'] / old['ex_s']:.2f}× | "
            f"{r['accuracy']:.2f} | {r['accuracy'] - old['accuracy']:+.2f} | {r['train_s']:.0f} |"
        )
    lines += [
        "",
        "## The cnn and the rnn (4,000 reviews, 1 epoch)",
        "",
        "| model | baseline train ex/s | current train ex/s | ratio |",
        "|---|---:|---:|---:|",
    ]
    for model in ("cnn", "rnn"):
        b, c = row("baseline", "small", model), row("current", "small", model)
        lines.append(f"| {model} | {b['ex_s']:,.0f} | {c['ex_s']:,.0f} | {c['ex_s'] / b['ex_s']:.2f}× |")
    verdicts = []
    for label, r in [("same model", same), ("attention_dropout 0", attn0)]:
        speedup, delta = r["ex_s"] / old["ex_s"], r["accuracy"] - old["accuracy"]
        met = speedup >= GOAL_SPEEDUP and abs(delta) <= GOAL_ACCURACY
        verdicts.append(f"- {label}: {speedup:.2f}×, Δ {delta:+.2f} points: {'met' if met else 'missed'}")
    lines += ["", f"Goal: ≥ {GOAL_SPEEDUP}× at ±{GOAL_ACCURACY} points.", "", *verdicts, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
