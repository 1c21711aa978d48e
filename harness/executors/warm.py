"""What every cell's process imports, imported once by the fork server (see `child.py`).

Each process the server forks starts with these modules in memory instead of importing them
afresh: torch, pandas, datasets, the tokenizers of transformers, scikit-learn's metrics, and
torch._dynamo (which the first optimizer imports). Only what every cell imports is here:
whatever sits in the server's memory is resident in each forked process too and counts in its
peak, so the Hugging Face model classes, large and slow to import, are imported by the cells
that use them.

Importing starts no thread pool that a fork would break: nothing here runs a torch op.
"""

import datasets  # noqa: F401
import scipy.io  # noqa: F401  (datasets patches its loadmat on every load)
import scipy.stats  # noqa: F401
import sklearn.metrics  # noqa: F401
import torch._dynamo  # noqa: F401
import torch.utils.flop_counter  # noqa: F401
from transformers import PreTrainedTokenizerFast  # noqa: F401
from transformers.utils import logging  # noqa: F401

import harness.cell  # noqa: F401
