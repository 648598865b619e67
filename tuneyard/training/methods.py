"""Fine-tuning methods, registered by name: what becomes trainable and how it is saved.

A method turns a loaded base model into the model to train, and restores its trainable
weights from a checkpoint. Users pick a name from this registry; nothing is imported by
a path that came from a request. The names, parameters and requirements are declared in
`tuneyard.spec.methods`; a test holds this registry to exactly those names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from tuneyard.errors import UnsupportedError, UserError
from tuneyard.spec import Hyperparams
from tuneyard.spec.methods import METHODS, LoraParams, params_of


class Method(Protocol):
    name: str

    def load_options(self, bf16: bool) -> dict[str, Any]:
        """Extra `from_pretrained` arguments the base must be loaded with ({} for none)."""

    def prepare(self, model: Any, hp: Hyperparams, bf16: bool) -> Any:
        """Return the model to train (trainable parameters set)."""

    def save(self, model: Any, folder: Path, weights: dict[str, torch.Tensor] | None = None) -> None:
        """Write the trainable weights in the standard layout (`save_pretrained`): the model's own, or
        `weights`, its whole state dict gathered from the ranks where the model holds shards (fsdp)."""

    def restore(self, model: Any, weights_dir: Path) -> None:
        """Load the trainable weights written by `save`."""


_METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is already registered")
    if method.name not in METHODS:
        raise ValueError(f"method {method.name!r} is not declared in tuneyard.spec.methods")
    _METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    """The implementation of `name`; UnsupportedError (a user error, never retried) if there is none."""
    try:
        return _METHODS[name]
    except KeyError:
        raise UnsupportedError(f"method {name!r} has no implementation in this runner", method=name) from None


def registered() -> tuple[str, ...]:
    return tuple(_METHODS)


def _freeze_in_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Keep the frozen base in `dtype` once, instead of re-casting fp32 weights every step."""
    for param in model.parameters():
        if not param.requires_grad:
            param.data = param.data.to(dtype)


class LoraMethod:
    name = "lora"

    def load_options(self, bf16: bool) -> dict[str, Any]:
        return {}

    def prepare(self, model: Any, hp: Hyperparams, bf16: bool) -> Any:
        peft_model = _add_lora(model, params_of(hp, LoraParams))
        if bf16:
            _freeze_in_dtype(peft_model, torch.bfloat16)
        return peft_model

    def save(self, model: Any, folder: Path, weights: dict[str, torch.Tensor] | None = None) -> None:
        if weights is not None:  # the spec refuses fsdp with an adapter (tuneyard.spec.distributed)
            raise UnsupportedError(f"method {self.name} is not saved from sharded weights", method=self.name)
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


def _add_lora(model: Any, params: LoraParams) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=params.lora_rank,
        lora_alpha=params.lora_alpha,  # type: ignore[arg-type]  # peft annotates int; floats work
        lora_dropout=params.lora_dropout,
        target_modules=params.lora_target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    peft_model: Any = get_peft_model(model, config)
    _check_every_target_used(params.lora_target_modules, list(peft_model.base_model.targeted_module_names))
    return peft_model


def _check_every_target_used(targets: str | list[str], targeted: list[str]) -> None:
    """peft fails only when no name matches; a misspelt name beside good ones would be dropped silently.
    The API refuses it for the architectures it knows (tuneyard.spec.module_names); this is the rest."""
    if isinstance(targets, str):
        return  # "all-linear"
    unused = [name for name in targets if not any(t == name or t.endswith(f".{name}") for t in targeted)]
    if unused:
        raise UserError(f"hyperparams.lora_target_modules: {', '.join(map(repr, unused))} matches no module of "
                        f"the base model; it adapts {', '.join(sorted({t.rsplit('.', 1)[-1] for t in targeted}))}",
                        field="hyperparams.lora_target_modules")


class QLoraMethod(LoraMethod):
    """LoRA beside a base quantized to 4-bit NF4 by bitsandbytes (CUDA only).

    The quantization happens as the base loads (`load_options`); `prepare` refuses a base that
    was loaded without it, as a user error rather than a silent plain LoRA.
    """

    name = "qlora"

    def load_options(self, bf16: bool) -> dict[str, Any]:
        from transformers import BitsAndBytesConfig

        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float32,
        )
        return {"quantization_config": config}

    def prepare(self, model: Any, hp: Hyperparams, bf16: bool) -> Any:
        from peft import prepare_model_for_kbit_training

        if not getattr(model, "is_loaded_in_4bit", False):
            raise UnsupportedError("method 'qlora' needs the base model loaded in 4 bits, and this runner "
                                   "loaded it unquantized; use method 'lora'", method=self.name)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=hp.gradient_checkpointing)
        return _add_lora(model, params_of(hp, LoraParams))


class DpoMethod(LoraMethod):
    """A LoRA adapter, trained by the DPO recipe (`recipes/dpo.py`) on preference pairs. LoRA because
    the base with the adapter switched off (`disable_adapter`) is then DPO's frozen reference policy
    for free: no second copy of the model in memory."""

    name = "dpo"


class FullMethod:
    name = "full"

    def load_options(self, bf16: bool) -> dict[str, Any]:
        return {}

    def prepare(self, model: Any, hp: Hyperparams, bf16: bool) -> Any:
        model.requires_grad_(True)
        return model

    def save(self, model: Any, folder: Path, weights: dict[str, torch.Tensor] | None = None) -> None:
        model.save_pretrained(folder, safe_serialization=True, state_dict=weights)

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
register(QLoraMethod())
register(DpoMethod())

