"""The inference backends, declared once: name, whether it computes as eager does, what it is,
and the check of whether this machine can run it. Everything else reads this table: the suite
schema (`deploy:` accepts these names), the deploy phase (exactness, support), `harness list
backends`, and `backends.py`, whose builders register against these names.

This module imports no torch at import time (the suite schema reads it on the driver); a
support check imports what it needs when it is called.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass


def _runs_anywhere(device) -> str | None:
    return None


def _cuda_only(device) -> str | None:
    return None if device.type == "cuda" else "fp16 runs on CUDA only (CPUs have no fast fp16 matmul)"


def _native_bf16(device) -> str | None:
    from harness.deploy.capabilities import bf16_supported

    ok, reason = bf16_supported(device)
    return None if ok else reason


def _cpu_only(device) -> str | None:
    return None if device.type == "cpu" else "PyTorch's dynamic int8 quantization runs on the CPU only"


def _onnx_runtime(device) -> str | None:
    """ONNX Runtime, with the execution provider of the cell's device: on CUDA its CPU provider
    would be compared with GPU eager, which says nothing about either."""
    if importlib.util.find_spec("onnxruntime") is None:
        return 'onnxruntime is not installed (pip install -e ".[deploy]")'
    if device.type == "cuda":
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "this onnxruntime has no CUDA execution provider (pip install onnxruntime-gpu)"
    return None


@dataclass(frozen=True)
class BackendInfo:
    name: str
    exact: bool  # computes in fp32 as eager does: its outputs must agree with eager's
    what: str
    unsupported: Callable[[object], str | None]  # device → why it cannot run here, or None


CATALOG: tuple[BackendInfo, ...] = (
    BackendInfo("eager", True, "the trained fp32 PyTorch module, as evaluated", _runs_anywhere),
    BackendInfo("bf16", False, "autocast to bfloat16 (CUDA, or a CPU with AVX512-BF16/AMX)", _native_bf16),
    BackendInfo("fp16", False, "autocast to float16 (CUDA only: CPUs have no fast fp16 matmul)", _cuda_only),
    BackendInfo("compile", True, "torch.compile(dynamic=True); compilation is timed apart", _runs_anywhere),
    BackendInfo(
        "int8", False, "dynamic int8 quantization of linear (per-channel) and recurrent layers", _cpu_only
    ),
    BackendInfo(
        "onnx", True, "exported to ONNX, run by ONNX Runtime (the device's execution provider)", _onnx_runtime
    ),
    BackendInfo(
        "onnx-int8", False, "that ONNX model through ONNX Runtime's dynamic int8 quantizer", _onnx_runtime
    ),
)
BY_NAME = {backend.name: backend for backend in CATALOG}
NAMES = tuple(BY_NAME)


def unsupported_reason(name: str, device) -> str | None:
    """Why this machine cannot run backend `name` at all, or None where it can."""
    return BY_NAME[name].unsupported(device)
