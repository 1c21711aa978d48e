"""The adapter registry: one decorator adds a model family.

```python
@register_adapter("cnn")
class CNNAdapter(Adapter):
    '''One line that `harness list models` shows.'''
    Params = CNNParams
    def tokenizer(self, train, settings): ...
    def build(self, info): ...
```

A suite names the adapter and gives its parameters; the adapter's `Params`
(a pydantic model that forbids unknown keys) validates them before any cell
runs. Adapters outside this package register through the `harness.models`
entry-point group (see docs/architecture.md).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ValidationError

from harness.errors import InputError

if TYPE_CHECKING:
    from torch import nn

    from harness.batching import Encoded
    from harness.config import ModelSpec, TaskSpec, TrainingSettings
    from harness.tasks.data import Examples
    from harness.train import TrainStats

ENTRY_POINT_GROUP = "harness.models"
BUILTIN_MODULES = (
    "harness.models.cnn",
    "harness.models.rnn",
    "harness.models.transformer",
    "harness.models.hf",
    "harness.models.tfidf",
)

_ADAPTERS: dict[str, type[Adapter]] = {}
_loaded = False


@dataclass(frozen=True)
class TaskInfo:
    """What a model must know of the task and tokenizer to build its layers."""

    num_labels: int  # 1 means regression: the model returns one score per example
    is_pair: bool
    max_seq_length: int
    vocab_size: int
    pad_token_id: int


class Adapter(ABC):
    """A model family: how to tokenize for it and how to build it for a task."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    seeded: ClassVar[bool] = True  # False: the seed changes nothing, so a suite runs one of its seeds
    # The two widths a suite's `budget` sizes (harness/sizing.py): the embedding's first, then
    # the width of what reads it. None: the model cannot be sized.
    width_fields: ClassVar[tuple[str, str] | None] = None

    def __init__(self, params: BaseModel):
        self.params = params
        self.notes: list[str] = []  # what the user should know of this cell's model, into its record

    @classmethod
    def description(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0]

    def width_multiple(self, field: str) -> int:
        """The step a width takes when sized (a transformer's d_model: a multiple of its heads)."""
        return 1

    def with_widths(self, widths: dict[str, int]) -> Adapter:
        """This adapter with some width parameters replaced (validated as the suite's are)."""
        return type(self)(self.Params.model_validate({**self.params.model_dump(), **widths}))

    def unsupported_task(self, task: TaskSpec) -> str | None:
        """Why this model cannot run on `task` (checked while planning), or None."""
        return None

    @abstractmethod
    def tokenizer(self, train: Examples, training: TrainingSettings):
        """A `transformers` tokenizer (fast) for this model, given the task's training rows."""

    @abstractmethod
    def build(self, info: TaskInfo) -> nn.Module:
        """A module mapping a batch dict (`input_ids`, `attention_mask`, `token_type_ids`) to
        logits of shape (B, num_labels), or scores of shape (B,) for regression."""


class FittedAdapter(Adapter):
    """A model fitted in one call (scikit-learn's way), not trained by optimizer steps: the cell
    builds it, calls `fit` where others train, then evaluates and measures it like any model.
    Training settings of the step loop (learning rate, epochs, batches, AMP, early stopping)
    do not apply to it."""

    @abstractmethod
    def fit(self, model: nn.Module, train: Encoded, seed: int) -> TrainStats:
        """Fit `model` (as `build` made it, on the CPU) to the training rows, in place."""


def register_adapter(name: str):
    def decorate(cls: type[Adapter]) -> type[Adapter]:
        if name in _ADAPTERS and _ADAPTERS[name] is not cls:
            raise ValueError(f"adapter {name!r} is registered twice")
        cls.name = name
        _ADAPTERS[name] = cls
        return cls

    return decorate


def load_adapters() -> dict[str, type[Adapter]]:
    """The built-in adapters and those of installed packages (entry-point group `harness.models`)."""
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            entry.load()  # importing the module runs its @register_adapter
        _loaded = True
    return dict(sorted(_ADAPTERS.items()))


def get_adapter(spec: ModelSpec) -> Adapter:
    cls = load_adapters()[spec.adapter]
    return cls(cls.Params.model_validate(spec.params))


def resolve_model_spec(
    spec: ModelSpec, where: Path | str, field: str, params_field: str | None = None
) -> ModelSpec:
    """The spec with every adapter parameter spelled out, defaults included; a clear error if
    the adapter or a parameter is unknown (at `params_field`, by default `<field>.params`).
    Cells carry the resolved form, so their config hash (what `--resume` trusts) changes
    when an adapter's default does."""
    adapters = load_adapters()
    if spec.adapter not in adapters:
        raise InputError(
            where,
            f"unknown model adapter {spec.adapter!r}",
            f"use one of {', '.join(adapters)} (harness list models)",
            f"{field}.adapter",
        )
    try:
        params = adapters[spec.adapter].Params.model_validate(spec.params)
    except ValidationError as error:
        first = error.errors()[0]
        name = ".".join(str(p) for p in first["loc"])
        allowed = ", ".join(adapters[spec.adapter].Params.model_fields)
        problem = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
        raise InputError(
            where, problem, f"{spec.adapter} takes: {allowed}", f"{params_field or field + '.params'}.{name}"
        ) from None
    fields = adapters[spec.adapter].Params.model_fields
    resolved = {  # a None default means "as before this parameter existed": old hashes still match
        name: value
        for name, value in params.model_dump(mode="json").items()
        if not (value is None and fields[name].default is None)
    }
    return spec.model_copy(update={"params": resolved})
