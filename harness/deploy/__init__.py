"""What it costs to ship: the trained model under the inference backends people deploy with.

| module | one job |
|---|---|
| `capabilities.py` | what the CPU/GPU can do (bf16, AMX, VNNI), detected and recorded |
| `backends.py` | eager, bf16, fp16, compile, int8, onnx, onnx-int8: each a module taking a batch dict |
| `phase.py` | each backend on the real evaluation rows: checked against eager; metrics, speed, memory, size |
"""
