"""What this machine's CPU (and GPU) can do, detected, recorded, never assumed.

The CPU model varies between machines of one kind (AMD EPYC with AVX512-BF16, Intel Xeon
with AMX, older ones with neither), so a backend that needs bf16 asks here, and every
record carries the answer it got.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

FLAGS_OF_INTEREST = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_fp16")


@cache
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_bf16() -> bool:
    """Native bf16 arithmetic (AVX512-BF16 or AMX): without it bf16 is emulated, and slower."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def bf16_supported(device: torch.device) -> tuple[bool, str]:
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, "" if ok else f"{torch.cuda.get_device_name(device)} has no bf16 support"
    if cpu_has_bf16():
        return True, ""
    return False, "this CPU has neither AVX512-BF16 nor AMX (bf16 would be emulated, slower than fp32)"


def int8_engine() -> str:
    """The quantized-kernel library that `int8` packs its weights for. oneDNN where the CPU
    has AMX-INT8: there it ran MiniLM-L6's int8 linears 1.32x faster than PyTorch's x86
    (FBGEMM) default (741 against 559 ex/s at batch 128, same Intel Xeon, side by side);
    elsewhere torch's default, which nothing here has measured against."""
    if "amx_int8" in cpu_flags() and "onednn" in torch.backends.quantized.supported_engines:
        return "onednn"
    return torch.backends.quantized.engine


def capabilities(device: torch.device) -> dict[str, object]:
    """What a record keeps: the CPU's relevant flags, torch's CPU kernel level, the GPU."""
    found: dict[str, object] = {flag: flag in cpu_flags() for flag in FLAGS_OF_INTEREST}
    found["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    found["int8_engine"] = int8_engine()
    if device.type == "cuda":
        found["cuda_device"] = torch.cuda.get_device_name(device)
        found["cuda_bf16"] = torch.cuda.is_bf16_supported()
        found["cuda_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return found
