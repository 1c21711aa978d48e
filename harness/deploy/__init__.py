"""What it costs to ship: the trained model under the inference backends people deploy with.

| module | one job |
|---|---|
| `capabilities.py` | what the CPU/GPU can do (bf16, AMX, VNNI), detected and recorded |
| `catalog.py` | the backends declared once: name, exactness, what it is, whether this machine runs it |
| `backends.py` | each catalog backend's builder: a module taking a batch dict, and its artefact's size |
| `phase.py` | each backend on the real evaluation rows: checked against eager; metrics, speed, memory, size |
"""
