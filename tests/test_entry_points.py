"""An adapter from outside the package registers through the `harness.models` entry-point group.

The test lays out what `pip install` would leave in site-packages: a module and a
`*.dist-info` folder whose `entry_points.txt` names it under `[harness.models]`.
With that folder on `sys.path`, `load_adapters()` must import the module (whose
`@register_adapter` runs) and list the adapter beside the built-in ones.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from harness.config import ModelSpec
from harness.models import registry

MODULE = "harness_external_bow_test"
ADAPTER = "external-bow"

EXTERNAL_MODULE = f'''
"""A third-party adapter: bag of embeddings (mean over real tokens) → linear."""

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from harness.models.registry import Adapter, register_adapter


class BowParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dim: int = 8


class BagOfEmbeddings(nn.Module):
    def __init__(self, info, dim):
        super().__init__()
        self.embed = nn.Embedding(info.vocab_size, dim)
        self.head = nn.Linear(dim, info.num_labels)

    def forward(self, batch):
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (self.embed(batch["input_ids"]) * mask).sum(1) / mask.sum(1)
        return self.head(pooled)


@register_adapter("{ADAPTER}")
class BowAdapter(Adapter):
    """Bag of embeddings from an installed package (entry-point test)."""

    Params = BowParams

    def tokenizer(self, train, training):
        raise NotImplementedError

    def build(self, info):
        return BagOfEmbeddings(info, self.params.dim)
'''


def install_fake_distribution(site) -> None:
    """What `pip install harness-external-bow` would write: the module and its dist-info."""
    (site / f"{MODULE}.py").write_text(textwrap.dedent(EXTERNAL_MODULE))
    dist_info = site / "harness_external_bow-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: harness-external-bow\nVersion: 0.1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\nbow = {MODULE}\n")


@pytest.fixture
def forget_external_module():
    yield
    sys.modules.pop(MODULE, None)


def test_external_adapter_registers_through_the_entry_point_group(tmp_path, forget_external_module):
    builtin = set(registry.load_adapters())
    assert ADAPTER not in builtin
    install_fake_distribution(tmp_path)

    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(tmp_path))  # also invalidates the import caches
        patch.setattr(registry, "_ADAPTERS", dict(registry._ADAPTERS))  # a copy, restored after
        patch.setattr(registry, "_loaded", False)  # so that the entry points are read again

        adapters = registry.load_adapters()
        assert ADAPTER in adapters
        assert builtin <= set(adapters)  # the built-in ones are still there
        assert adapters[ADAPTER].__module__ == MODULE
        assert (
            adapters[ADAPTER].description()
            == "Bag of embeddings from an installed package (entry-point test)."
        )

        # a suite can name it and pass parameters; unknown ones are refused as for built-ins
        spec = ModelSpec(adapter=ADAPTER, params={"dim": 4})
        registry.resolve_model_spec(spec, "suite.yaml", "models.0")
        with pytest.raises(Exception, match="unknown parameter"):
            registry.resolve_model_spec(ModelSpec(adapter=ADAPTER, params={"dims": 4}), "s.yaml", "m")

        info = registry.TaskInfo(
            num_labels=3, is_pair=False, max_seq_length=16, vocab_size=50, pad_token_id=0
        )
        model = registry.get_adapter(spec).build(info)
        ids = torch.tensor([[2, 7, 9, 3, 0], [2, 5, 3, 0, 0]])
        batch = {
            "input_ids": ids,
            "attention_mask": (ids != 0).long(),
            "token_type_ids": torch.zeros_like(ids),
        }
        logits = model(batch)
        assert logits.shape == (2, 3) and torch.isfinite(logits).all()
        logits.sum().backward()  # a working module: gradients reach its parameters
        assert model.embed.weight.grad is not None

    # monkeypatch restored the registry: the external adapter is gone again
    assert ADAPTER not in registry.load_adapters()
    assert set(registry.load_adapters()) == builtin
