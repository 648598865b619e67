"""Base models for the training engine: the catalog, finding a model, and loading it.

Importing this package is torch-free, so the API and the spec resolver can list models and
check methods cheaply. `load_model` and `load_tokenizer` are re-exported lazily: torch and
transformers are imported on first use of either, not before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tuneyard.training.models.catalog import (
    SMOLLM2_135M,
    TINY_LLAMA,
    BaseModelEntry,
    builtin_defaults,
    get_builtin,
    heal_learning_rate,
    is_builtin,
    list_builtins,
    size_defaults,
)
from tuneyard.training.models.methods import check_method_supported
from tuneyard.training.models.source import ModelSource, resolve_model_source

if TYPE_CHECKING:
    from tuneyard.training.models.loading import load_model, load_tokenizer

_LAZY = ("load_model", "load_tokenizer")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from tuneyard.training.models import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SMOLLM2_135M",
    "TINY_LLAMA",
    "BaseModelEntry",
    "ModelSource",
    "builtin_defaults",
    "check_method_supported",
    "get_builtin",
    "heal_learning_rate",
    "is_builtin",
    "list_builtins",
    "load_model",
    "load_tokenizer",
    "resolve_model_source",
    "size_defaults",
]
