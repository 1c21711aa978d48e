"""Fused attention (`F.scaled_dot_product_attention`) against the formula written out.

The reference is `harness.models.transformer.reference_attention`, softmax(QKᵀ/√d_k)V
with a key-padding mask, exactly what the transformer adapter runs with
`attention: reference`; the fused side is the call the adapter makes by default.
Both get the same q, k, v of shape (batch, heads, length, d_k) (the adapter's
defaults: 4 heads of 32) and the same key-padding mask (a quarter of the rows
padded over their last 25%), without dropout, and must agree to float tolerance.

Per length: the median time of forward + backward (gradients for q, k, v) after
warm-up, the device synchronised around each clock read, and the peak tensor
memory of one such step above what was allocated before it (CUDA:
`max_memory_allocated`; CPU: torch's CPU allocator as the profiler sees it, see
`harness.profile`).

    python benchmarks/attention.py                                   # lengths 128..1024
    python benchmarks/attention.py --seq-lens 128,256 --repeats 3    # a quick check
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from _publish import publish

from harness.profile import step_peak_memory_mb
from harness.trackers.machine import cpu_model
from harness.train import synchronize

RESULTS = Path(__file__).resolve().parent / "results"

try:
    from harness.models.transformer import reference_attention
except ImportError:  # the adapter not there yet: the same formula, inline

    def reference_attention(q, k, v, mask, dropout_p: float = 0.0):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, T, T)
        weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, H, T, T)
        return F.dropout(weights, p=dropout_p, training=dropout_p > 0) @ v  # (B, H, T, d_k)


def fused_attention(q, k, v, mask):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def inputs(batch: int, heads: int, length: int, d_k: int, device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    q, k, v = (
        torch.randn(batch, heads, length, d_k, generator=generator).to(device).requires_grad_()
        for _ in range(3)
    )
    key_mask = torch.ones(batch, length, dtype=torch.bool)  # (B, T), True = real token
    padded_rows = max(1, batch // 4)
    key_mask[:padded_rows, length - length // 4 :] = False
    return q, k, v, key_mask[:, None, None, :].to(device)  # mask (B, 1, 1, T)


def measure(
    attend: Callable, q, k, v, mask, repeats: int, warmup: int, device: torch.device
) -> tuple[float, float]:
    """Median fwd+bwd milliseconds and peak step memory (MB) of `attend`."""
    grad_out = torch.randn_like(q)

    def step() -> None:
        attend(q, k, v, mask).backward(grad_out)

    def clear() -> None:
        q.grad = k.grad = v.grad = None

    for _ in range(warmup):
        clear()
        step()
    times = []
    for _ in range(repeats):
        clear()
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    clear()
    peak, _ = step_peak_memory_mb(step, device)
    return statistics.median(times) * 1000, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seq-lens", default="128,256,512,1024")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=RESULTS / "attention.md")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    lengths = sorted({int(n) for n in args.seq_lens.split(",") if n.strip()})
    rows = []
    for length in lengths:
        q, k, v, mask = inputs(args.batch_size, args.heads, length, args.head_dim, device)
        with torch.no_grad():
            real = mask.squeeze(1).squeeze(1)[:, None, :, None]  # (B, 1, T, 1): rows of real queries
            difference = (
                ((fused_attention(q, k, v, mask) - reference_attention(q, k, v, mask)) * real).abs().max()
            )
        fused_ms, fused_mb = measure(fused_attention, q, k, v, mask, args.repeats, args.warmup, device)
        ref_ms, ref_mb = measure(reference_attention, q, k, v, mask, args.repeats, args.warmup, device)
        rows.append((length, ref_ms, fused_ms, ref_mb, fused_mb, float(difference)))
        print(
            f"T={length}: reference {ref_ms:.2f} ms / {ref_mb:.1f} MB, fused {fused_ms:.2f} ms / "
            f"{fused_mb:.1f} MB",
            flush=True,
        )

    lines = [
        "# Fused vs reference attention (forward + backward)",
        "",
        f"batch {args.batch_size}, {args.heads} heads × d_k {args.head_dim}, key-padding mask, no dropout, "
        f"median of {args.repeats} after {args.warmup} warm-up; {args.device} "
        f"({cpu_model() if device.type == 'cpu' else torch.cuda.get_device_name(device)}), "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {datetime.now(timezone.utc).isoformat(timespec='minutes')}.",
        "",
        "| length | reference ms | fused ms | time ratio ref/fused | reference MB | fused MB | "
        "memory ratio ref/fused | max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for length, ref_ms, fused_ms, ref_mb, fused_mb, difference in rows:
        memory_ratio = f"{ref_mb / fused_mb:.2f}" if fused_mb > 0 else "n/a"
        lines.append(
            f"| {length} | {ref_ms:.2f} | {fused_ms:.2f} | {ref_ms / fused_ms:.2f} | {ref_mb:.1f} | "
            f"{fused_mb:.1f} | {memory_ratio} | {difference:.1e} |"
        )
    lines += [
        "",
        "MB: peak tensor memory of one forward + backward above what was allocated before it "
        "(q, k, v, the upstream gradient); the gradients of q, k and v (3 × B·H·T·d_k floats) "
        "are counted on both sides.",
    ]
    text = "\n".join(lines) + "\n"
    publish(text, args.out)


if __name__ == "__main__":
    main()
