"""Inference backends: the trained model as people deploy it, each a module taking a batch dict.

Which backends exist, which compute as eager does and which this machine can run is declared
once, in `catalog.py` (`harness list backends` prints it); here each registers its builder
against its name (`@builds`). Every builder returns a `Deployed`: the module and the size of the
artefact one would ship (bytes on disk).
"""

from __future__ import annotations

import copy
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from harness.deploy.capabilities import int8_engine
from harness.deploy.catalog import NAMES

Builder = Callable[[nn.Module, dict, torch.device, Path], "Deployed"]
BACKENDS: dict[str, Builder] = {}


def builds(name: str) -> Callable[[Builder], Builder]:
    """Register the builder of catalog backend `name`."""

    def register(build: Builder) -> Builder:
        BACKENDS[name] = build
        return build

    return register


INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class Deployed:
    module: nn.Module  # batch dict → outputs, like the trained model
    size_bytes: int  # the artefact: a state dict, or an .onnx file


def state_dict_bytes(model: nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


class Autocast(nn.Module):
    """Runs the wrapped model under autocast to `dtype`, outputs back in fp32."""

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype):
        super().__init__()
        self.model, self.device_type, self.dtype = model, device.type, dtype

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=self.dtype):
            return self.model(batch).float()


class Positional(nn.Module):
    """The batch dict as positional tensors, which is what ONNX export traces."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids) -> torch.Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        return self.model(batch)


class OnnxRuntime(nn.Module):
    """An ONNX Runtime session behind the batch-dict interface, on the cell's device: the CUDA
    execution provider for a CUDA cell (the catalog skips ONNX there without it), else the CPU's."""

    def __init__(self, path: Path, threads: int, device: torch.device):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        provider = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
        self.session = ort.InferenceSession(str(path), options, providers=[provider])
        self.inputs = [i.name for i in self.session.get_inputs()]  # unused inputs are pruned

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {name: batch[name].cpu().numpy() for name in self.inputs}
        return torch.from_numpy(self.session.run(None, feed)[0])


@builds("eager")
def _eager(model: nn.Module, example: dict, device: torch.device, workdir: Path) -> Deployed:
    return Deployed(model, state_dict_bytes(model))


def _autocast(dtype: torch.dtype):
    def build(model: nn.Module, example: dict, device: torch.device, workdir: Path) -> Deployed:
        shipped = copy.deepcopy(model).to(dtype)  # what one would ship: half-size weights
        return Deployed(Autocast(model, device, dtype), state_dict_bytes(shipped))

    return build


@builds("compile")
def _compile(model: nn.Module, example: dict, device: torch.device, workdir: Path) -> Deployed:
    return Deployed(torch.compile(model, dynamic=True), state_dict_bytes(model))


@builds("int8")
def _int8(model: nn.Module, example: dict, device: torch.device, workdir: Path) -> Deployed:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        from torch.ao.quantization import (
            default_dynamic_qconfig,
            per_channel_dynamic_qconfig,
            quantize_dynamic,
        )

        # One int8 scale per output row of each linear layer, not one per matrix: a few
        # large rows then no longer crush the resolution of all the others (on MiniLM-L6's
        # SST-2 model: -1.15 points with one scale per matrix). Recurrent layers keep one.
        qconfigs = {
            nn.Linear: per_channel_dynamic_qconfig,
            nn.LSTM: default_dynamic_qconfig,
            nn.GRU: default_dynamic_qconfig,
        }
        # Weights are packed for the engine set while quantizing, and keep it after: the
        # global setting is restored, and the record says which engine (capabilities).
        default_engine = torch.backends.quantized.engine
        torch.backends.quantized.engine = int8_engine()
        try:
            quantized = quantize_dynamic(copy.deepcopy(model).cpu().eval(), qconfigs, dtype=torch.qint8)
        finally:
            torch.backends.quantized.engine = default_engine
    return Deployed(quantized, state_dict_bytes(quantized))


def export_onnx(model: nn.Module, example: dict, path: Path) -> Path:
    """The model as ONNX with dynamic batch and length axes (TorchScript exporter, opset 17)."""
    was_training = model.training
    model.eval()
    args = tuple(example[name].cpu() for name in INPUTS)
    axes = {name: {0: "batch", 1: "length"} for name in INPUTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Positional(copy.deepcopy(model).cpu().eval()),
            args,
            str(path),
            input_names=list(INPUTS),
            output_names=["outputs"],
            dynamic_axes={**axes, "outputs": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    model.train(was_training)
    return path


def _onnx(quantize: bool):
    def build(model: nn.Module, example: dict, device: torch.device, workdir: Path) -> Deployed:
        path = export_onnx(model, example, workdir / "model.onnx")
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic
            from onnxruntime.quantization.registry import IntegerOpsRegistry

            # Every op it can quantize but convolutions: its ConvInteger is slower than its fp32
            # Conv (the cnn on SST-2 dev, 2 threads: 3,185 ex/s with, 6,697 without, fp32 6,998)
            ops = sorted(set(IntegerOpsRegistry) - {"Conv"})
            quantized = workdir / "model-int8.onnx"
            root = logging.getLogger()
            level = root.level
            root.setLevel(logging.ERROR)  # its advice to pre-process is logged on the root logger
            try:
                quantize_dynamic(
                    str(path), str(quantized), weight_type=QuantType.QInt8, op_types_to_quantize=ops
                )
            finally:
                root.setLevel(level)
            path = quantized
        return Deployed(OnnxRuntime(path, torch.get_num_threads(), device), path.stat().st_size)

    return build


builds("bf16")(_autocast(torch.bfloat16))
builds("fp16")(_autocast(torch.float16))
builds("onnx")(_onnx(quantize=False))
builds("onnx-int8")(_onnx(quantize=True))
if set(BACKENDS) != set(NAMES):  # a catalog entry without a builder, or the reverse
    raise ImportError(f"backends without a builder or a catalog entry: {set(BACKENDS) ^ set(NAMES)}")


def workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="harness-deploy-")
