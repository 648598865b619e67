"""Fine-tuning methods, registered by name: what becomes trainable and how it is saved.

A method turns a loaded base model into the model to train, and restores its trainable
weights from a checkpoint. Users pick a name from this registry; nothing is imported by
a path that came from a request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from tuneyard.spec import Hyperparams


class Method(Protocol):
    name: str

    def prepare(self, model: Any, hp: Hyperparams, bf16: bool) -> Any:
        """Return the model to train (trainable parameters set)."""

    def save(self, model: Any, folder: Path) -> None:
        """Write the trainable weights in the standard layout (`save_pretrained`)."""

    def restore(self, model: Any, weights_dir: Path) -> None:
        """Load the trainable weights written by `save`."""


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    return _METHODS[name]


def _freeze_in_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Keep the frozen base in `dtype` once, instead of re-casting fp32 weights every step."""
    for param in model.parameters():
        if not param.requires_grad:
            param.data = param.data.to(dtype)


class LoraMethod:
    name = "lora"

    def prepare(self, model: Any, hp: Hyperparams, bf16: bool) -> Any:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=hp.lora_rank,
            lora_alpha=hp.lora_alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
            lora_dropout=hp.lora_dropout,
            target_modules=hp.lora_target_modules,
            bias="none",
            task_type="CAUSAL_LM",
        )
        peft_model = get_peft_model(model, config)
        if bf16:
            _freeze_in_dtype(peft_model, torch.bfloat16)
        return peft_model

    def save(self, model: Any, folder: Path) -> None:
        # save_embedding_layers=False: the embeddings are not adapted, and peft would otherwise
        # ask the hub about the base model's name on every save to find out.
        model.save_pretrained(folder, safe_serialization=True, save_embedding_layers=False)

    def restore(self, model: Any, weights_dir: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(weights_dir / "adapter_model.safetensors")
        result: Any = set_peft_model_state_dict(model, weights)
        if result.unexpected_keys:
            raise RuntimeError(f"checkpoint adapter has unexpected keys: {result.unexpected_keys[:5]}")


class FullMethod:
    name = "full"

    def prepare(self, model: Any, hp: Hyperparams, bf16: bool) -> Any:
        model.requires_grad_(True)
        return model

    def save(self, model: Any, folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)

    def restore(self, model: Any, weights_dir: Path) -> None:
        from safetensors.torch import load_file

        weights: dict[str, torch.Tensor] = {}
        for shard in sorted(weights_dir.glob("*.safetensors")):  # one file, or the shards of a large model
            weights.update(load_file(shard))
        missing, unexpected = model.load_state_dict(weights, strict=False)
        _check_only_tied_missing(model, missing, unexpected)


def _check_only_tied_missing(model: Any, missing: list[str], unexpected: list[str]) -> None:
    # save_pretrained drops weights tied to another (lm_head tied to the embeddings).
    tied = set(getattr(model, "_tied_weights_keys", None) or {})
    really_missing = [k for k in missing if k not in tied]
    if really_missing or unexpected:
        raise RuntimeError(f"checkpoint weights do not match: missing {really_missing[:5]}, extra {unexpected[:5]}")


register(LoraMethod())
register(FullMethod())

