"""What a cell costs, one small module per concern (as optimum-benchmark's `trackers/`):

- `memory`: peak resident set of the process and CUDA peak allocated/reserved, per phase;
- `speed`: examples/s of whole evaluation passes, and batch-1 latency;
- `work`: parameters, and forward FLOPs per example from each model's formula;
- `machine`: what ran it (CPU model, device name, package versions).

Clocks are read only after synchronising the device. A figure that was not measured is None.
"""
