"""Base models for the training engine: the catalog, finding a model, and loading it.

Everything importable from here is torch-free, so the API and the spec resolver can list
models and check methods cheaply. Loading lives in `tuneyard.training.models.loading`
(`load_model`, `load_tokenizer`), which imports torch and transformers.
"""

from __future__ import annotations

from tuneyard.training.models.catalog import (
    SMOLLM2_135M,
    TINY_LLAMA,
    BaseModelEntry,
    builtin_defaults,
    get_builtin,
    is_builtin,
    list_builtins,
    size_defaults,
)
from tuneyard.training.models.methods import check_method_supported
from tuneyard.training.models.source import ModelSource, resolve_model_source

__all__ = [
    "SMOLLM2_135M",
    "TINY_LLAMA",
    "BaseModelEntry",
    "ModelSource",
    "builtin_defaults",
    "check_method_supported",
    "get_builtin",
    "is_builtin",
    "list_builtins",
    "resolve_model_source",
    "size_defaults",
]
