"""The module names of common decoder architectures, known from config.json alone, without torch.

LoRA's `lora_target_modules` names modules of the base model, and a name that matches nothing
(or matches a block LoRA cannot adapt) is only found out once the runner has loaded the weights.
The API imports no torch, so it cannot build the model to look; for the architectures in this
table it does not need to: the names follow from `model_type` and `num_hidden_layers`. A test
builds each one on torch's meta device and holds the table equal to what transformers makes.

Names are matched as peft matches a list of `target_modules` (its documented rule): a module is
targeted when its full name equals a given name or ends with "." + that name. The spec takes a
single string other than "all-linear" as a one-name list, so peft's regex form is never used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["linear", "embedding", "norm", "block", "other"]
"""What a module is, as far as LoRA is concerned: peft adapts linear and embedding layers only."""

ADAPTABLE: frozenset[Kind] = frozenset({"linear", "embedding"})
_WHAT: dict[Kind, str] = {
    "linear": "a linear layer", "embedding": "an embedding", "norm": "a norm layer", "block": "a block of layers",
    "other": "a module without weights",
}

_TOP: dict[str, Kind] = {
    "": "block", "model": "block", "model.embed_tokens": "embedding", "model.layers": "block",
    "model.norm": "norm", "model.rotary_emb": "other", "lm_head": "linear",
}
_LLAMA_LAYER: dict[str, Kind] = {
    "": "block", "self_attn": "block", "self_attn.q_proj": "linear", "self_attn.k_proj": "linear",
    "self_attn.v_proj": "linear", "self_attn.o_proj": "linear", "mlp": "block", "mlp.gate_proj": "linear",
    "mlp.up_proj": "linear", "mlp.down_proj": "linear", "mlp.act_fn": "other",
    "input_layernorm": "norm", "post_attention_layernorm": "norm",
}
_QWEN3_LAYER: dict[str, Kind] = {**_LLAMA_LAYER, "self_attn.q_norm": "norm", "self_attn.k_norm": "norm"}
_GEMMA2_LAYER: dict[str, Kind] = {
    **_LLAMA_LAYER, "pre_feedforward_layernorm": "norm", "post_feedforward_layernorm": "norm",
}

LAYER_MODULES: Mapping[str, Mapping[str, Kind]] = {
    "llama": _LLAMA_LAYER,
    "mistral": _LLAMA_LAYER,
    "qwen2": _LLAMA_LAYER,
    "qwen3": _QWEN3_LAYER,
    "gemma": _LLAMA_LAYER,
    "gemma2": _GEMMA2_LAYER,
}
"""Each decoder layer's modules (relative to `model.layers.<i>`) by config.json's `model_type`."""


@dataclass(frozen=True)
class ModuleLayout:
    """The modules of one base model: every full name and its kind."""

    model_type: str
    modules: Mapping[str, Kind]

    def adaptable_names(self) -> list[str]:
        """The last name part of each module LoRA can adapt, in table order (what users write)."""
        seen: dict[str, None] = {}
        for name, kind in self.modules.items():
            if kind in ADAPTABLE:
                seen.setdefault(name.rsplit(".", 1)[-1], None)
        return list(seen)


def layout_for(model_type: str, num_layers: int) -> ModuleLayout | None:
    """The modules of a `model_type` decoder with `num_layers` layers; None for a type not in the table."""
    layer = LAYER_MODULES.get(model_type)
    if layer is None or num_layers < 0:
        return None
    modules: dict[str, Kind] = dict(_TOP)
    for i in range(num_layers):
        for suffix, kind in layer.items():
            modules[f"model.layers.{i}" + (f".{suffix}" if suffix else "")] = kind
    return ModuleLayout(model_type, modules)


def layers_to_assume(targets: str | list[str]) -> int:
    """A layer count for a model whose count is not known: enough for every index the targets name,
    so that only the names are judged, never the indices."""
    names = [targets] if isinstance(targets, str) else targets
    indices = [int(n) for name in names for n in re.findall(r"(?:^|\.)(\d+)(?=\.|$)", name)]
    return max(indices, default=0) + 1


def target_problems(targets: str | list[str], layout: ModuleLayout) -> list[str]:
    """What is wrong with `lora_target_modules` on this layout ([] when LoRA would accept it).

    Stricter than peft in one way: peft fails only when no name matches, so a misspelt name beside
    a good one is silently ignored; here every name must match a module.
    """
    if targets == "all-linear":
        return []
    names = [targets] if isinstance(targets, str) else targets
    problems = []
    for name in names:
        matched = [full for full in layout.modules if full == name or full.endswith(f".{name}")]
        if not matched:
            problems.append(f"{name!r} matches no module of this {layout.model_type} model")
            continue
        refused = [full for full in matched if layout.modules[full] not in ADAPTABLE]
        if refused:
            what = _WHAT[layout.modules[refused[0]]]
            problems.append(f"{name!r} matches {refused[0] or '(the whole model)'}, {what} LoRA cannot adapt "
                            "(only linear and embedding layers)")
    return problems
